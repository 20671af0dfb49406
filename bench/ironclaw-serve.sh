#!/usr/bin/env bash
# IronClaw service throughput and latency against the same Rust program run natively, in
# one run: examples/wasm/sign-service (HTTP/1.1 POST /sign, HMAC-SHA256 of a 64-byte body)
#   - enclave: `ironclaw serve sign-service.wasm` (a poll_oneoff event loop in the enclave);
#   - native: the same crate built for the host (same request handling, a thread per
#     connection: the anchor).
# For 1, 16 and 64 keep-alive clients (crates/ironclaw/examples/serve_bench.rs, every answer
# checked): requests/s, p50 and p99 latency, ratios enclave/native, VM exits per request
# (`ironclaw serve --stats`), and the idle service's RSS (host process, which includes the
# touched guest RAM).
# Usage: bench/ironclaw-serve.sh [SECONDS=5]
# Needs /dev/kvm. Builds in release mode. IRONCLAW=path runs another `ironclaw` binary (an
# older build, to compare two shims in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-cli --bin ironclaw >&2
cargo build --release --locked -p ironclaw --example serve_bench >&2
cargo build --release --locked --manifest-path examples/wasm/Cargo.toml -p sign-service \
  --target-dir "$TARGET/sign-service-native" >&2
NATIVE="$TARGET/sign-service-native/release/sign-service"
WASM="$TARGET/ironclaw-guest/examples/sign-service.wasm"
BENCH="$TARGET/release/examples/serve_bench"
LOG=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$LOG"' EXIT

wait_addr() { # FILE -> prints IP:PORT once "listening on tcp:IP:PORT" appears
  for _ in $(seq 200); do
    a=$(grep -o 'listening on tcp:[0-9.:]*' "$1" | head -1 | sed 's/listening on tcp://') || true
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.05
  done
  echo "no listening line in $1:" >&2; cat "$1" >&2; exit 1
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
SIGN_KEY=bench-key "$NATIVE" 127.0.0.1:0 2>"$LOG/native" &
NATIVE_PID=$!
"${IRONCLAW:-$TARGET/release/ironclaw}" serve --stats --listen tcp:127.0.0.1:0 --env SIGN_KEY=bench-key \
  "$WASM" 2>"$LOG/enclave" &
ENCLAVE_PID=$!
NA=$(wait_addr "$LOG/native")
EA=$(wait_addr "$LOG/enclave")
sleep 0.5
echo "idle service RSS: $(grep VmRSS /proc/$ENCLAVE_PID/status | awk '{print $2}') kB (ironclaw serve, 64 MiB guest)," \
  "native $(grep VmRSS /proc/$NATIVE_PID/status | awk '{print $2}') kB"
echo
echo "| clients | enclave req/s | native req/s | enclave/native req/s | enclave p50 / p99 [ms] | native p50 / p99 [ms] | added p50 [ms] |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
total=0
for c in 1 16 64; do
  e=$("$BENCH" "$EA" "$c" "$SECS")
  n=$("$BENCH" "$NA" "$c" "$SECS")
  get() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
  total=$((total + $(get "$e" requests) + c))
  awk -v c="$c" -v er="$(get "$e" rps)" -v nr="$(get "$n" rps)" \
      -v e50="$(get "$e" p50_ms)" -v e99="$(get "$e" p99_ms)" \
      -v n50="$(get "$n" p50_ms)" -v n99="$(get "$n" p99_ms)" \
      'BEGIN { printf "| %d | %d | %d | %.3f | %.3f / %.3f | %.3f / %.3f | %.3f |\n", c, er, nr, er/nr, e50, e99, n50, n99, e50-n50 }'
done
kill -TERM "$ENCLAVE_PID"
wait "$ENCLAVE_PID" || true
exits=$(grep -o 'exits=[0-9]*' "$LOG/enclave" | cut -d= -f2)
echo
echo "VM exits: $exits for $total requests ($(awk -v x="$exits" -v r="$total" 'BEGIN{printf "%.2f", x/r}') per request, including accepts and start-up)"
