#!/usr/bin/env bash
# IronClaw launch latency, side by side with the bare KVM floor in one run:
#   - floor: create VM + guest RAM + vCPU (same 64-bit CPL3 setup), run a guest whose first
#     instruction exits, tear down;
#   - a trivial module (examples/wasm/hello.wat) and the Rust HMAC example
#     (examples/wasm/hmac-stdin): cold launch -> first output, launch -> exit, and with
#     teardown, plus the breakdown (VM create, load, measure, shim start, compile, run,
#     teardown). Interleaved: floor, trivial, Rust, floor, ...
# Then the same trivial module through the CLI (`ironclaw run`, a whole process per launch)
# with hyperfine, for the end-to-end number a user sees.
# Usage: bench/ironclaw-launch.sh [ITERATIONS=200]
# Needs /dev/kvm. Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-cli --bin ironclaw -p ironclaw --example launch_bench >&2
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET/release/ironclaw" check
echo
"$TARGET/release/examples/launch_bench" "$N"
if command -v hyperfine >/dev/null 2>&1; then
  echo
  echo "CLI, whole process per launch (hyperfine):"
  # Named by paths relative to the repository, so the table reads the same on every machine.
  rel=${TARGET#"$PWD/"}
  hyperfine -N --warmup 5 --runs "$N" --export-markdown /dev/stdout \
    -n "$rel/release/ironclaw run $rel/ironclaw-guest/examples/hello.wasm" \
    "$TARGET/release/ironclaw run $TARGET/ironclaw-guest/examples/hello.wasm" 2>/dev/null | grep '^|'
fi
