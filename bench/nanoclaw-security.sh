#!/usr/bin/env bash
# NanoClaw security profile cost, side by side with runc and crun in one hyperfine run:
# `run` of busybox /bin/true with runc's default spec plus nanoclaw's default seccomp profile
# (Docker's coverage, ~370 syscalls on x86_64/x86/x32), and the same spec without linux.seccomp.
# Every runtime gets the identical config.json, so each pays for its own seccomp compiler.
# nanoclaw's numbers also include its CVE-2019-5736 defence (re-exec from a read-only clone).
#
#   bench/nanoclaw-security.sh [RUNS]        (root; NANOCLAW=path to use a prebuilt binary)
#
# crun 1.8 refuses this host's hybrid cgroup layout; as in nanoclaw-lifecycle.sh it runs in a
# private mount namespace with the cgroup2 mount removed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-40}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
if [ -z "${NANOCLAW:-}" ]; then
  NANOCLAW=$(scripts/build-nanoclaw)   # the shipped static-pie build
fi
RUNC=$(command -v runc)
CRUN=$(command -v crun)

WORK=$(mktemp -d /tmp/claw-bench-sec.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/full/rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$WORK/full/rootfs/bin/"
ln -s busybox "$WORK/full/rootfs/bin/true"
(cd "$WORK/full" && "$NANOCLAW" spec)
jq '.process.args = ["/bin/true"]' "$WORK/full/config.json" > "$WORK/c.json"
mv "$WORK/c.json" "$WORK/full/config.json"
cp -a "$WORK/full" "$WORK/noseccomp"
jq 'del(.linux.seccomp)' "$WORK/full/config.json" > "$WORK/noseccomp/config.json"
echo "profile: $(jq '[.linux.seccomp.syscalls[].names | length] | add' "$WORK/full/config.json") syscall names, $(jq -c .linux.seccomp.architectures "$WORK/full/config.json")"

crun_cmd() { # $1 = bundle
  echo "unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec $CRUN --root $WORK/root-crun run --bundle $WORK/$1 b'"
}
hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/result.json" \
  -n "nanoclaw seccomp" "$NANOCLAW --root $WORK/root-n run --bundle $WORK/full b" \
  -n "runc seccomp" "$RUNC --root $WORK/root-runc run --bundle $WORK/full b" \
  -n "crun seccomp" "$(crun_cmd full)" \
  -n "nanoclaw no-seccomp" "$NANOCLAW --root $WORK/root-n run --bundle $WORK/noseccomp b" \
  -n "runc no-seccomp" "$RUNC --root $WORK/root-runc run --bundle $WORK/noseccomp b" \
  -n "crun no-seccomp" "$(crun_cmd noseccomp)"
jq -r '.results[] | "\(.command)\t\(.median * 1000 | floor) ms median\t\(.mean * 1000 | floor) ms mean"' "$WORK/result.json"
