#!/usr/bin/env bash
# IronClaw attestation, one process, anchors in the same run:
#   - from inside a fresh enclave: examples/wasm/secret-hmac fetches its key from a broker on
#     127.0.0.1 (auth -> attest -> fetch through the shim's KBS client, HTTPS) and HMAC-signs
#     its input; host-observed breakdown per step; anchor: hmac-stdin with the key given as an
#     argument (same work, no attestation), interleaved;
#   - broker throughput: 16 concurrent clients on loopback doing full auth + attest (kvm
#     evidence) + fetch sessions; anchor: the same clients doing one keep-alive HTTPS request.
# Usage: bench/ironclaw-attestation.sh [LAUNCHES=50] [SECONDS=5]
# Needs /dev/kvm. Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-cli --example attest_bench >&2
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET/release/examples/attest_bench" "${1:-50}" "${2:-5}"
