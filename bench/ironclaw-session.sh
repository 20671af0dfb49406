#!/usr/bin/env bash
# IronClaw KBS session reuse, one process, anchor in the same run: a fresh enclave
# runs examples/wasm/secret-hmac `hmac-lines` over three requests against a broker on
# 127.0.0.1 (HTTPS); the module times every get_secret with the guest clock. Anchor: the first
# call of the same launch (auth -> attest -> fetch, what every call cost before the shim kept
# its session). Also: whole run with one vs three secrets (interleaved), host calls per launch.
# Usage: bench/ironclaw-session.sh [LAUNCHES=30]
# Needs /dev/kvm. Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-cli --example session_bench >&2
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET/release/examples/session_bench" "${1:-30}"
