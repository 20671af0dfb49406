#!/usr/bin/env bash
# NanoClaw cgroup cost, side by side with runc and crun in one run (hyperfine):
#   1. `run` of /bin/true with limits (memory + swap, pids, cpu shares/quota, the default device
#      rules): the cgroup step is on the critical path of every container start;
#   2. `update --memory X --memory-swap X` of a running container (alternating two values so
#      every call really writes).
# Usage: bench/nanoclaw-cgroups.sh [RUNS=50]
# Needs root. Builds nanoclaw in release mode unless $NANOCLAW names a binary.
#
# crun 1.8 refuses this host's hybrid cgroup layout ("drop all controllers from cgroupv2"), and
# DESIGN.md's tweak (hugetlb moved to a v1 mount) stops working once any cgroup2 child has used
# hugetlb. As in nanoclaw-run.sh, the whole script therefore re-runs itself in a private mount
# namespace where the cgroup2 mount is detached: all three runtimes see the same pure cgroup v1
# layout, and the host is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
if [ -z "${CLAW_BENCH_PRIVATE_NS:-}" ]; then
  exec env CLAW_BENCH_PRIVATE_NS=1 unshare --mount --propagation private -- \
    bash -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' "$0" "$@"
fi
if [ -z "${NANOCLAW:-}" ]; then
  NANOCLAW=$(scripts/build-nanoclaw)   # the shipped static-pie build
fi
RUNC=$(command -v runc)
CRUN=$(command -v crun)
WORK=$(mktemp -d /tmp/claw-bench-cg.XXXXXX)
cleanup() {
  for rt in "$NANOCLAW" "$RUNC" "$CRUN"; do
    "$rt" --root "$WORK/root-$(basename "$rt")" delete --force upd >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/bundle/rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$WORK/bundle/rootfs/bin/"
for a in true sleep sh; do ln -s busybox "$WORK/bundle/rootfs/bin/$a"; done
(cd "$WORK/bundle" && "$RUNC" spec)
jq '.process.terminal = false | .process.args = ["/bin/true"]
    | .linux.resources.memory = {"limit": 67108864, "swap": 67108864}
    | .linux.resources.pids = {"limit": 64}
    | .linux.resources.cpu = {"shares": 512, "quota": 50000, "period": 100000}' \
  "$WORK/bundle/config.json" > "$WORK/c.json"
mv "$WORK/c.json" "$WORK/bundle/config.json"
cp -a "$WORK/bundle" "$WORK/bundle-sleep"
jq '.process.args = ["/bin/sleep", "100000"]' "$WORK/bundle/config.json" > "$WORK/bundle-sleep/config.json"

echo "== run of /bin/true with memory, pids and cpu limits ($RUNS runs each)"
for rt in "$NANOCLAW" "$RUNC" "$CRUN"; do
  n=$(basename "$rt")
  hyperfine -N -w 3 -r "$RUNS" --export-json "$WORK/run-$n.json" \
    "$rt --root $WORK/root-$n run --bundle $WORK/bundle r-$n" >/dev/null
done

echo "== update --memory of a running container ($RUNS runs each)"
for rt in "$NANOCLAW" "$RUNC" "$CRUN"; do
  n=$(basename "$rt"); r="$WORK/root-$n"
  "$rt" --root "$r" run -d --bundle "$WORK/bundle-sleep" upd >/dev/null 2>&1 </dev/null
  hyperfine -N -w 2 -r "$RUNS" --export-json "$WORK/upd-$n.json" \
    "$rt --root $r update --memory 134217728 --memory-swap 134217728 upd" \
    "$rt --root $r update --memory 100663296 --memory-swap 100663296 upd" >/dev/null
  "$rt" --root "$r" delete --force upd >/dev/null 2>&1 || true
done

python3 - "$WORK" <<'PY'
import json, sys, statistics
w = sys.argv[1]
def med(path, idx=None):
    res = json.load(open(path))["results"]
    times = [t for r in res for t in r["times"]]
    return statistics.median(times) * 1e3
rows = [("run /bin/true with limits", "run"), ("update --memory (live)", "upd")]
print("| operation | nanoclaw (ms) | runc (ms) | crun (ms) | nanoclaw/runc | nanoclaw/crun |")
print("|---|---|---|---|---|---|")
for label, key in rows:
    n, r, c = (med(f"{w}/{key}-{x}.json") for x in ("nanoclaw", "runc", "crun"))
    print(f"| {label} | {n:.2f} | {r:.2f} | {c:.2f} | {n/r:.2f} | {n/c:.2f} |")
PY
