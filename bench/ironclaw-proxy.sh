#!/usr/bin/env bash
# `ironclaw proxy` (examples/wasm/llm-proxy: the LLM API key proxy, TLS to the upstream from
# inside the enclave) against a direct rustls client → upstream TLS connection, in one run
# (crates/ironclaw-cli/examples/proxy_bench.rs): first request after start (attestation +
# key fetch + TLS handshake in the enclave), p50/p99 and requests/s of small JSON requests at
# 1 and 16 keep-alive clients, streamed throughput of one chunked response. Upstream and
# key broker run on 127.0.0.1 with their own test certificates.
# Usage: bench/ironclaw-proxy.sh [SECONDS=5] [MIB=16] [RUNS=1] [SUITE=chacha20|aes128gcm|aes256gcm]
# (SUITE: the one TLS 1.3 suite the upstream speaks.)
# Needs /dev/kvm. Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
MIB=${2:-16}
RUNS=${3:-1}
SUITE=${4:-chacha20}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-cli --bin ironclaw --example proxy_bench >&2
for run in $(seq "$RUNS"); do
  echo "# run $run: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg), TLS 1.3 suite: $SUITE"
  "$TARGET/release/examples/proxy_bench" "$TARGET/release/ironclaw" "$SECS" "$MIB" "$SUITE"
  echo
done
