#!/usr/bin/env bash
# NanoClaw lifecycle benchmark, side by side with runc and crun in one run:
#   1. throughput: create + start + wait + delete of N containers in a row (/bin/true);
#   2. density: `run -d` of M containers running `sleep`, then the memory they leave behind.
# Usage: bench/nanoclaw-lifecycle.sh [N=100] [M=50]
# Needs root. Builds nanoclaw in release mode (target/release/nanoclaw or $NANOCLAW).
#
# "wait" is a real wait: the driver makes itself a child subreaper (prctl), so each container's
# init is reparented to it when the runtime exits, and waitpid() returns when /bin/true exits.
# Memory per container = (sum of PSS of every process left running for the M containers, init
# included, plus any runtime process left behind: shim, monitor, daemon) / M. (MemAvailable
# deltas were tried for kernel objects and were noise on a shared 2-core machine.)
#
# crun 1.8 refuses this host's hybrid cgroup layout ("cgroups in hybrid mode not supported").
# Moving hugetlb to a v1 mount (DESIGN.md) only works while no cgroup2 child uses it, which is
# not the case once other tests ran; so crun runs in a private mount namespace where the
# cgroup2 mount is unmounted (it then manages the same v1 controllers as runc, minus hugetlb).
# nanoclaw and runc run on the untouched layout.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
M=${2:-50}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }

if [ -z "${NANOCLAW:-}" ]; then
  NANOCLAW=$(scripts/build-nanoclaw)   # the shipped static-pie build
fi
RUNC=$(command -v runc)
CRUN=$(command -v crun)

WORK=$(mktemp -d /tmp/claw-bench-lc.XXXXXX)
cleanup() {
  for rt in "$NANOCLAW" "$RUNC"; do
    for id in $("$rt" --root "$WORK/root-$(basename "$rt")" list -q 2>/dev/null); do
      "$rt" --root "$WORK/root-$(basename "$rt")" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified &&
    for id in $("$0" --root "$1" list -q); do "$0" --root "$1" delete --force "$id"; done' \
    "$CRUN" "$WORK/root-crun" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Bundle: busybox rootfs, runc's default spec, no terminal.
mkdir -p "$WORK/bundle/rootfs"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$WORK/bundle/rootfs/bin/"
for a in true sleep sh; do ln -s busybox "$WORK/bundle/rootfs/bin/$a"; done
(cd "$WORK/bundle" && "$RUNC" spec)
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$WORK/bundle/config.json" > "$WORK/c.json"
mv "$WORK/c.json" "$WORK/bundle/config.json"
cp -a "$WORK/bundle" "$WORK/bundle-sleep"
jq '.process.args = ["/bin/sleep", "100000"]' "$WORK/bundle/config.json" > "$WORK/bundle-sleep/config.json"

cat > "$WORK/driver.py" <<'PY'
import ctypes, os, subprocess, sys, time
rt, mode, work, n, m = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
name = os.path.basename(rt)
root = f"{work}/root-{name}"
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
dn = subprocess.DEVNULL
def call(*args):
    subprocess.run([rt, "--root", root, *args], stdin=dn, stdout=dn, stderr=dn, check=True)
def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
if mode == "cycle":
    pidfile = f"{work}/{name}.pid"
    t0 = time.perf_counter()
    for i in range(n):
        cid = f"bench-{i}"
        call("create", "--bundle", f"{work}/bundle", "--pid-file", pidfile, cid)
        pid = int(open(pidfile).read().strip())
        call("start", cid)
        os.waitpid(pid, 0)
        call("delete", cid)
        reap_all()
    dt = time.perf_counter() - t0
    print(f"{name} cycle {n} {dt:.3f} {dt / n * 1000:.2f}")
else:
    before_children = set(int(p) for p in os.listdir("/proc") if p.isdigit())
    pids = []
    t0 = time.perf_counter()
    for i in range(m):
        cid = f"dense-{i}"
        pidfile = f"{work}/{name}-{i}.pid"
        call("run", "--detach", "--bundle", f"{work}/bundle-sleep", "--pid-file", pidfile, cid)
        pids.append(int(open(pidfile).read().strip()))
    dt = time.perf_counter() - t0
    time.sleep(1)
    reap_all()
    # Everything new that is still alive and ours: the inits, and any runtime helper left.
    after = set(int(p) for p in os.listdir("/proc") if p.isdigit())
    left = []
    for p in sorted(after - before_children):
        try:
            ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        # The inits, and anything a runtime left running: as a subreaper we inherit it.
        if p in pids or ppid == os.getpid():
            left.append(p)
    pss = sum(pss_kb(p) for p in left)
    print(f"{name} density {m} {dt:.3f} {dt / m * 1000:.2f} procs_left={len(left)} pss_kb_per_ctr={pss / m:.0f}")
    for i in range(m):
        call("delete", "--force", f"dense-{i}")
    reap_all()
PY
driver() { # driver RUNTIME MODE  (MODE = cycle | density)
  python3 "$WORK/driver.py" "$1" "$2" "$WORK" "$N" "$M"
}
# crun in a private mount namespace without the cgroup2 mount: there it sees a pure v1 host
# (the hybrid layout it refuses is only a mount), and the host's layout stays untouched.
driver_crun() {
  unshare --mount --propagation private sh -c \
    'umount /sys/fs/cgroup/unified && exec python3 "$0" "$@"' "$WORK/driver.py" "$CRUN" "$1" "$WORK" "$N" "$M"
}

echo "# nanoclaw lifecycle benchmark: N=$N create+start+wait+delete, M=$M run -d (sleep)"
echo "# $(date -u +%FT%TZ) $(nproc) cores; $("$RUNC" --version | head -1); $("$CRUN" --version | head -1)"
echo "# runtime mode count total_s ms_per_container [density extras]"
results=()
for rt in "$NANOCLAW" "$RUNC"; do
  results+=("$(driver "$rt" cycle)")
  results+=("$(driver "$rt" density)")
done
results+=("$(driver_crun cycle)")
results+=("$(driver_crun density)")
printf '%s\n' "${results[@]}"

python3 - "${results[@]}" <<'PY'
import sys
rows = {}
for line in sys.argv[1:]:
    f = line.split()
    rows[(f[0], f[1])] = float(f[4])
for mode in ("cycle", "density"):
    n = rows.get(("nanoclaw", mode))
    for anchor in ("runc", "crun"):
        a = rows.get((anchor, mode))
        if n and a:
            print(f"ratio {mode} nanoclaw/{anchor} = {n / a:.2f}")
PY
