#!/usr/bin/env bash
# IronClaw broker throughput and load on loopback, one process per part, anchors
# measured in the same run:
#   - releases per second at 1, 4, 16 clients, fresh TLS connection per release and keep-alive;
#     anchor: the same clients doing a keep-alive request answered 404;
#   - one legitimate client's full session latency alone (anchor) and while 127.0.0.2 runs a
#     slowloris (256 trickling connections) and an /auth flood;
#   - CLIENTS concurrent legitimate clients, one loopback address each, full sessions for SECONDS.
# Usage: bench/ironclaw-broker-load.sh [SECONDS=5] [CLIENTS=1000] [LOAD_SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p ironclaw-broker --example kbs_load >&2
BIN="$TARGET/release/examples/kbs_load"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
echo "## releases per second"
"$BIN" releases "${1:-5}"
echo "## a legitimate client under attack"
"$BIN" attack "${1:-5}"
echo "## ${2:-1000} concurrent clients"
"$BIN" load "${2:-1000}" "${3:-60}"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
