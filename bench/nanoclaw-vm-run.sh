#!/usr/bin/env bash
# `run` of /bin/true on the Debian 12 test VM (systemd as PID 1, pure cgroup v2, qemu TCG;
# scripts/vm/README.md): nanoclaw, crun and runc each with the systemd cgroup driver
# (`--systemd-cgroup`, cgroupsPath `system.slice:claw:bench`, a transient scope per run) and
# with cgroupfs (cgroupsPath `/claw-bench`), in one hyperfine run in one boot.
# Usage: bench/nanoclaw-vm-run.sh [RUNS=30]   (needs root; builds the static nanoclaw)
#
# Absolute times are the emulated machine's (TCG is ~10-30x slower than the host): only the
# ratios in one run mean something. A runtime that refuses a driver is reported, not timed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
NANOCLAW=${NANOCLAW:-$(scripts/build-nanoclaw)}

WORK=$(mktemp -d /tmp/claw-bench-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -L "$NANOCLAW" "$WORK/nanoclaw"
cat >"$WORK/job.sh" <<'JOB'
set -euo pipefail
RUNS=$1
install -m 0755 /mnt/claw/nanoclaw /usr/local/bin/nanoclaw
B=/tmp/bundle
mkdir -p $B/rootfs/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox $B/rootfs/bin/
ln -s busybox $B/rootfs/bin/true
(cd $B && runc spec)
# runc spec's default, with /bin/true and no terminal; the cgroup path per driver.
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' $B/config.json
grep -q '"/bin/true"' $B/config.json
for d in systemd cgroupfs; do
  cp -a $B /tmp/bundle-$d
  if [ $d = systemd ]; then p='system.slice:claw:bench'; else p='/claw-bench'; fi
  sed -i "s#\"linux\": {#\"linux\": {\n\t\t\"cgroupsPath\": \"$p\",#" /tmp/bundle-$d/config.json
done
args=()
for rt in nanoclaw crun runc; do
  bin=$(command -v $rt)
  for d in systemd cgroupfs; do
    flag=""; [ $d = systemd ] && flag=--systemd-cgroup
    cmd="$bin --root /run/bench-$rt-$d $flag run --bundle /tmp/bundle-$d bench"
    if out=$($cmd 2>&1); then
      args+=(-n "$rt-$d" "$cmd")
    else
      echo "not timed: $rt-$d: $out" | tee -a /mnt/claw/out/refused.txt
    fi
  done
done
echo "runtimes: $(runc --version | head -1); $(crun --version | head -1); $(nanoclaw --version | head -1)"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json /mnt/claw/out/result.json \
  --export-markdown /mnt/claw/out/result.md "${args[@]}"
JOB
OUT="$WORK/out"
if ! scripts/vm/run -t 1500 -o "$OUT" -f "$WORK/nanoclaw" "$WORK/job.sh" "$RUNS"; then
  trap - EXIT
  rm -f "$WORK/nanoclaw"
  echo "nanoclaw-vm-run: the VM job failed; logs kept in $OUT" >&2
  exit 1
fi
echo
cat "$OUT/result.md"
echo
jq -r '.results as $r
  | [ ["nanoclaw-systemd", "crun-systemd"], ["nanoclaw-systemd", "runc-systemd"],
      ["nanoclaw-cgroupfs", "crun-cgroupfs"], ["nanoclaw-cgroupfs", "runc-cgroupfs"],
      ["nanoclaw-systemd", "nanoclaw-cgroupfs"], ["crun-systemd", "crun-cgroupfs"],
      ["runc-systemd", "runc-cgroupfs"] ][]
  | . as [$a, $b]
  | ([$r[] | select(.command == $a) | .median] | first) as $ma
  | ([$r[] | select(.command == $b) | .median] | first) as $mb
  | select($ma != null and $mb != null)
  | "\($a) / \($b) (median): \($ma / $mb * 1000 | round / 1000)"' "$OUT/result.json"
