#!/usr/bin/env bash
# A/B of nanoclaw builds in the Debian 12 test VM (scripts/vm/README.md): `run` of /bin/true
# with each given build and with crun, under cgroupfs and the systemd driver, in one boot.
# Usage: bench/nanoclaw-vm-ab.sh RUNS BIN...   (needs root; BINs are static nanoclaw builds,
#        named by their file name, e.g. /tmp/a/nc-base /tmp/b/nc-new; DRIVERS="cgroupfs systemd")
#
# Why not hyperfine (bench/nanoclaw-vm-run.sh): it times all runs of one command, then all of
# the next, so on a shared host a change of load between them (TCG turns host load straight
# into guest time) moves the ratios by more than the effect measured. Here every round runs
# each command once, in an order rotated per round, so load drift hits all of them alike; the
# result is each command's median and the median of its per-round ratio to crun. A run that
# exits non-zero is counted and reported, never timed as if it had worked.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
[ $# -ge 2 ] || { sed -n 2,5p "$0" >&2; exit 2; }
RUNS=$1
shift
WORK=$(mktemp -d /tmp/claw-bench-vm-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
files=()
for b in "$@"; do
  name=$(basename "$b")
  case $name in nc-*) ;; *) name=nc-$name ;; esac
  [ ! -e "$WORK/$name" ] || { echo "nanoclaw-vm-ab: two builds named $name: give them distinct file names" >&2; exit 2; }
  cp -L "$b" "$WORK/$name"
  files+=(-f "$WORK/$name")
done
cat >"$WORK/job.sh" <<'JOB'
set -uo pipefail
RUNS=$1
DRIVERS=$2
B=/tmp/bundle
mkdir -p $B/rootfs/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox $B/rootfs/bin/
ln -s busybox $B/rootfs/bin/true
(cd $B && runc spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' $B/config.json
for d in systemd cgroupfs; do
  cp -a $B /tmp/bundle-$d
  if [ $d = systemd ]; then p='system.slice:claw:bench'; else p='/claw-bench'; fi
  sed -i "s#\"linux\": {#\"linux\": {\n\t\t\"cgroupsPath\": \"$p\",#" /tmp/bundle-$d/config.json
done
bins=()
for f in /mnt/claw/nc-*; do
  install -m 0755 "$f" /usr/local/bin/$(basename $f)
  bins+=($(basename $f))
done
bins+=(crun)
n=${#bins[@]}
echo "load in the VM before: $(cut -d' ' -f1-3 /proc/loadavg)"
for d in $DRIVERS; do
  f=""; [ $d = systemd ] && f=--systemd-cgroup
  for b in "${bins[@]}"; do
    for i in 1 2 3; do $b --root /run/ab-$b $f run --bundle /tmp/bundle-$d bench >/dev/null 2>&1; done
  done
  for i in $(seq $RUNS); do
    for k in $(seq 0 $((n - 1))); do
      b=${bins[$(((k + i) % n))]}
      t0=${EPOCHREALTIME/./}
      $b --root /run/ab-$b $f run --bundle /tmp/bundle-$d bench >/dev/null 2>&1
      rc=$?
      t1=${EPOCHREALTIME/./}
      echo "$d $i $b $((t1 - t0)) $rc" >>/mnt/claw/out/ab.txt
    done
  done
done
JOB
OUT="$WORK/out"
echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg)"
if ! scripts/vm/run -q -t 1500 -o "$OUT" "${files[@]}" "$WORK/job.sh" "$RUNS" "${DRIVERS:-cgroupfs systemd}"; then
  trap - EXIT
  echo "nanoclaw-vm-ab: the VM job failed; logs kept in $OUT" >&2
  exit 1
fi
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep load "$OUT/job.log" || true
# Per driver and command: median ms, failures; then the median of the per-round ratio to crun.
awk '
  function median(arr, m,   i, j, t) {
    for (i = 2; i <= m; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
    return (m % 2) ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2
  }
  $5 != 0 { fail[$1 " " $3]++; next }
  { t[$1, $2, $3] = $4 / 1000; cmds[$1 " " $3] = 1; rounds[$1, $2] = 1; drv[$1] = 1 }
  END {
    for (d in drv) {
      print d
      for (c in cmds) {
        split(c, p, " "); if (p[1] != d) continue
        m = 0; r = 0
        for (k in t) { split(k, q, SUBSEP); if (q[1] == d && q[3] == p[2]) { v[++m] = t[k]; if ((d, q[2], "crun") in t) ratio[++r] = t[k] / t[d, q[2], "crun"] } }
        line = sprintf("  %-12s median %7.1f ms (n=%d, failed %d)", p[2], median(v, m), m, fail[c] + 0)
        if (p[2] != "crun" && r > 0) line = line sprintf("   / crun, median of per-round ratios: %.3f", median(ratio, r))
        print line
        delete v; delete ratio
      }
    }
  }' "$OUT/ab.txt"
