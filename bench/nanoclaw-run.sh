#!/usr/bin/env bash
# NanoClaw `run` of /bin/true, side by side with runc and crun in one hyperfine run.
# Usage: bench/nanoclaw-run.sh [RUNS=200]   (needs root; builds the release nanoclaw)
#
# All three runtimes get the same bundle: a busybox rootfs and `runc spec`'s default config
# (terminal off, args /bin/true), each with its own --root and a fixed id (a foreground `run`
# deletes the container when the process exits, so the id is free for the next iteration).
#
# crun 1.8 refuses this host's hybrid cgroup layout ("drop all controllers from cgroupv2").
# DESIGN.md's tweak (move hugetlb to a v1 mount) only works while no v2 cgroup ever enabled
# hugetlb; once a runtime delegated it (nanoclaw-cgroups enables every v2 controller, podman
# too), dying hugetlb csses keep it busy until reboot. So this script runs hyperfine in a
# private mount namespace where the cgroup2 mount at /sys/fs/cgroup/unified is detached: all
# three runtimes then see the same pure cgroup v1 layout, and the host is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }

if [ -z "${NANOCLAW:-}" ]; then
  NANOCLAW=$(scripts/build-nanoclaw)   # the shipped static-pie build
fi
RUNC=$(command -v runc)
CRUN=$(command -v crun)

WORK=$(mktemp -d /tmp/claw-bench-run.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/bundle/rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$WORK/bundle/rootfs/bin/"
ln -s busybox "$WORK/bundle/rootfs/bin/true"
(cd "$WORK/bundle" && "$RUNC" spec)
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$WORK/bundle/config.json" > "$WORK/c.json"
mv "$WORK/c.json" "$WORK/bundle/config.json"

B="$WORK/bundle"
CMD=(hyperfine -N --warmup 20 --runs "$RUNS" \
  --export-markdown "$WORK/result.md" --export-json "$WORK/result.json" \
  -n nanoclaw "$NANOCLAW --root $WORK/root-nanoclaw run --bundle $B bench" \
  -n crun "$CRUN --root $WORK/root-crun run --bundle $B bench" \
  -n runc "$RUNC --root $WORK/root-runc run --bundle $B bench")
unshare --mount --propagation private -- sh -c \
  'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "${CMD[@]}" >&2

echo
cat "$WORK/result.md"
echo
jq -r '.results as $r | ($r[] | select(.command=="nanoclaw") | .median) as $n
  | $r[] | select(.command!="nanoclaw")
  | "nanoclaw / \(.command) (median): \($n / .median * 1000 | round / 1000)"' "$WORK/result.json"
