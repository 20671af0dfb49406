#!/usr/bin/env bash
# Runs inside the test VM (scripts/vm/run; scripts/test-vm passes it): the engines with their
# default configuration driving runc (the control) and nanoclaw (/mnt/claw/nanoclaw).
#
#   engine-scenarios.sh [SCENARIO]...    (default: all)
#
# Writes one line per scenario and runtime to /mnt/claw/out/results.tsv:
#   scenario <TAB> runtime <TAB> PASS|FAIL <TAB> the first failed check
# and each run's full log to /mnt/claw/out/logs/<scenario>.<runtime>.log. Each check looks at
# what the container sees (its cgroup files) or what systemd and the engine report.
set -uo pipefail
OUT=/mnt/claw/out
mkdir -p "$OUT/logs"
: >"$OUT/results.tsv"
IMG=localhost/claw-busybox # a local name: nothing is pulled (the VM has no network)
MEM=67108864 # --memory 64m
PIDS=32
CLAW_UID=1000

install -m 0755 /mnt/claw/nanoclaw /usr/local/bin/nanoclaw
runtime_path() {
  case $1 in
    runc) command -v runc ;;
    nanoclaw) echo /usr/local/bin/nanoclaw ;;
    crun) command -v crun ;;
  esac
}

# --- checks ----------------------------------------------------------------------------
fail() {
  echo "FAIL: $*"
  exit 1
}
# Runs a command with a time limit, echoing it; its output goes to the log.
run() {
  echo "+ $*" >&2
  timeout 180 "$@"
}
# `expect DESCRIPTION WANT COMMAND...`: COMMAND's trimmed stdout must be WANT.
expect() {
  local what=$1 want=$2 got
  shift 2
  echo "+ $*"
  got=$(timeout 180 "$@" 2>&1) || fail "$what: \`$*\` failed: $(echo "$got" | tail -n 3 | tr '\n' ' ')"
  got=$(echo "$got" | tr -d '\r' | sed 's/[[:space:]]*$//')
  echo "$got"
  [ "$got" = "$want" ] || fail "$what: want '$want', got '$(echo "$got" | head -c 300 | tr '\n' ' ')'"
}
# `ok DESCRIPTION COMMAND...`: COMMAND must succeed.
ok() {
  local what=$1 got
  shift
  echo "+ $*"
  got=$(timeout 180 "$@" 2>&1) || fail "$what: \`$*\`: $(echo "$got" | tail -n 3 | tr '\n' ' ')"
  echo "$got"
}
cgroup_of_pid() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
# The container's cgroup must be inside a systemd scope named UNIT that systemd reports active
# (`systemctl` given as the remaining arguments, e.g. `systemctl --user` for rootless).
expect_scope() {
  local pid=$1 unit=$2 cg
  shift 2
  cg=$(cgroup_of_pid "$pid")
  echo "container init $pid is in cgroup $cg"
  case $cg in
    */"$unit" | */"$unit"/*) ;;
    *) fail "cgroup: init is in $cg, not in systemd scope $unit" ;;
  esac
  expect "systemd unit $unit" active "$@" show -p ActiveState --value "$unit"
  [ -d "/sys/fs/cgroup$cg" ] || fail "cgroup: /sys/fs/cgroup$cg does not exist"
  echo "$cg" >/tmp/claw-last-cgroup
}
# After removal the scope and its cgroup are gone.
expect_scope_gone() {
  local unit=$1 cg
  shift
  cg=$(cat /tmp/claw-last-cgroup 2>/dev/null || true)
  local state
  state=$("$@" show -p ActiveState --value "$unit" 2>/dev/null || true)
  case $state in active | activating | deactivating) fail "after removal: $unit is still $state" ;; esac
  [ -z "$cg" ] || [ ! -d "/sys/fs/cgroup$cg" ] || fail "after removal: /sys/fs/cgroup$cg still exists"
  rm -f /tmp/claw-last-cgroup
}
limits_seen_by() { # CMD... (an exec into the container)
  expect "memory.max inside the container" "$MEM" "$@" cat /sys/fs/cgroup/memory.max
  expect "pids.max inside the container" "$PIDS" "$@" cat /sys/fs/cgroup/pids.max
}

# --- the image ---------------------------------------------------------------------------
# Runs a command as the ordinary user `claw` with the environment of its login session (its
# runtime dir and user bus from lingering), as a script so that `timeout` can run it too.
write_as_claw() {
  cat >/usr/local/bin/as_claw <<SH
#!/bin/sh
cd / && exec runuser -u claw -- env -i HOME=/home/claw USER=claw LOGNAME=claw \\
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR=/run/user/$CLAW_UID \\
  DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$CLAW_UID/bus "\$@"
SH
  chmod 0755 /usr/local/bin/as_claw
}
prepare_images() {
  local root=/tmp/claw-bb a
  rm -rf "$root" && mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc,root}
  cp /bin/busybox "$root/bin/"
  for a in $(/bin/busybox --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  tar -C "$root" -cf /tmp/claw-bb.tar . || return 1
  chmod 0644 /tmp/claw-bb.tar
  run podman import -q /tmp/claw-bb.tar "$IMG" || return 1
  run docker import /tmp/claw-bb.tar "$IMG" || return 1
  run docker save -o /tmp/claw-bb-docker.tar "$IMG" || return 1
  run ctr -n claw images import /tmp/claw-bb-docker.tar || return 1
  write_as_claw
  # The user manager of the lingering user may still be starting.
  for _ in $(seq 60); do [ -S /run/user/$CLAW_UID/bus ] && break; sleep 1; done
  run as_claw podman import -q /tmp/claw-bb.tar "$IMG" || return 1
}

# --- bundles for the runtime alone (no jq in the VM: runc spec's config edited with sed) ----
# `make_bundle DIR ARGS [RESOURCES]`: the busybox rootfs and runc spec's config, with no
# terminal, the process args ARGS (JSON list items, e.g. '"sleep", "600"') and RESOURCES
# (JSON members ending in a comma) added to its `resources` (which holds the device rules).
# The result is DIR/config.base; `use_cgroups_path` makes config.json from it.
make_bundle() {
  local b=$1 args=$2 res=${3:-}
  rm -rf "$b" && mkdir -p "$b/rootfs"
  tar -C "$b/rootfs" -xf /tmp/claw-bb.tar || fail "unpacking the busybox rootfs"
  (cd "$b" && runc spec) || fail "runc spec"
  sed -i -e 's#"terminal": true#"terminal": false#' -e "s#\"sh\"\$#$args#" \
    -e "s#\"resources\": {#\"resources\": {$res#" "$b/config.json" || fail "editing config.json"
  grep -qF "$args" "$b/config.json" && grep -qF "{$res" "$b/config.json" ||
    fail "config.json was not edited as expected"
  mv "$b/config.json" "$b/config.base"
}
# `use_cgroups_path DIR PATH`: DIR/config.json = config.base with linux.cgroupsPath PATH.
use_cgroups_path() {
  sed -e "s#\"linux\": {#\"linux\": {\n\t\t\"cgroupsPath\": \"$2\",#" "$1/config.base" >"$1/config.json" ||
    fail "setting cgroupsPath $2"
}
# `start_detached RUNTIME ROOT FLAG BUNDLE ID`: `run -d` (FLAG: --systemd-cgroup or ""); the
# init's pid in $STARTED_PID. The init keeps the stdio it is given: /dev/null, never a pipe.
start_detached() {
  local rt=$1 root=$2 flag=$3 b=$4 id=$5
  echo "+ $rt $flag run -d $id"
  timeout 180 "$rt" --root "$root" $flag run -d --bundle "$b" "$id" </dev/null >/dev/null 2>"$b.err" ||
    fail "$id: run -d: $(tail -n 2 "$b.err" | tr '\n' ' ')"
  STARTED_PID=$("$rt" --root "$root" state "$id" | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
  [ -n "$STARTED_PID" ] && [ "$STARTED_PID" != 0 ] ||
    fail "$id: state has no pid: $("$rt" --root "$root" state "$id" | tr -d '\n')"
}

# For scenarios run with `for driver in systemd cgroupfs`: `start_with_driver RUNTIME PREFIX
# DRIVER` starts /tmp/PREFIX-bundle-RUNTIME as PREFIX-RUNTIME-DRIVER (cgroupsPath
# system.slice:claw:ID or /claw/ID) and sets STARTED_ID, DRIVER_FLAG, STARTED_PID, STARTED_CG.
start_with_driver() {
  local b=/tmp/$2-bundle-$1 path
  STARTED_ID=$2-$1-$3
  if [ "$3" = systemd ]; then
    path=system.slice:claw:$STARTED_ID DRIVER_FLAG=--systemd-cgroup
  else
    path=/claw/$STARTED_ID DRIVER_FLAG=""
  fi
  use_cgroups_path "$b" "$path"
  start_detached "$(runtime_path "$1")" "/run/$2-$1" "$DRIVER_FLAG" "$b" "$STARTED_ID"
  STARTED_CG=/sys/fs/cgroup$(cgroup_of_pid "$STARTED_PID")
}
# Removes what a scenario run with `for driver in systemd cgroupfs` may have left:
# `clean_both_drivers RUNTIME PREFIX` (ids PREFIX-RUNTIME-DRIVER, bundle /tmp/PREFIX-bundle-RUNTIME).
clean_both_drivers() {
  local rt
  rt=$(runtime_path "$1")
  "$rt" --root "/run/$2-$1" --systemd-cgroup delete -f "$2-$1-systemd" >/dev/null 2>&1
  "$rt" --root "/run/$2-$1" delete -f "$2-$1-cgroupfs" >/dev/null 2>&1
  rm -rf "/tmp/$2-bundle-$1" "/tmp/$2-bundle-$1.err"
}

# --- scenarios ----------------------------------------------------------------------------
# podman as root, default cgroup manager (systemd): run/exec/stop/rm with limits.
sc_podman_rootful() {
  local rt
  rt=$(runtime_path "$1")
  expect "podman's cgroup manager (default)" systemd podman info --format '{{.Host.CgroupManager}}'
  expect "podman run --rm sees its memory limit" "$MEM" \
    podman --runtime "$rt" run --rm --memory 64m "$IMG" cat /sys/fs/cgroup/memory.max
  local id pid
  id=$(run podman --runtime "$rt" run -d --name "pr-$1" --memory 64m --pids-limit $PIDS "$IMG" sleep 600) ||
    fail "podman run -d: $id"
  echo "$id"
  pid=$(podman inspect -f '{{.State.Pid}}' "$id")
  limits_seen_by podman exec "pr-$1"
  expect_scope "$pid" "libpod-$id.scope" systemctl
  expect "podman exec output" hello podman exec "pr-$1" echo hello
  ok "podman stop" podman stop -t 2 "pr-$1"
  expect "state after stop" exited podman inspect -f '{{.State.Status}}' "pr-$1"
  ok "podman rm" podman rm "pr-$1"
  expect_scope_gone "libpod-$id.scope" systemctl
}
clean_podman_rootful() { podman rm -f "pr-$1" >/dev/null 2>&1; }

# The same with --cgroup-manager=cgroupfs: nanoclaw's own v2 driver on this host.
sc_podman_cgroupfs() {
  local rt
  rt=$(runtime_path "$1")
  ok "podman run -d" podman --cgroup-manager=cgroupfs --runtime "$rt" run -d --name "pc-$1" \
    --cap-add MKNOD --memory 64m --pids-limit $PIDS "$IMG" sleep 600
  limits_seen_by podman --cgroup-manager=cgroupfs exec "pc-$1"
  kmsg_write_denied "kmsg write under the default rules" podman --cgroup-manager=cgroupfs exec "pc-$1"
  ok "podman stop" podman --cgroup-manager=cgroupfs stop -t 2 "pc-$1"
  ok "podman rm" podman --cgroup-manager=cgroupfs rm "pc-$1"
}
clean_podman_cgroupfs() { podman --cgroup-manager=cgroupfs rm -f "pc-$1" >/dev/null 2>&1; }

# podman as an ordinary user (lingering, its systemd user instance and bus).
sc_podman_rootless() {
  local rt id pid
  rt=$(runtime_path "$1")
  expect "rootless podman's cgroup manager (default)" systemd as_claw podman info --format '{{.Host.CgroupManager}}'
  id=$(as_claw timeout 180 podman --runtime "$rt" run -d --name "pu-$1" --memory 64m --pids-limit $PIDS "$IMG" sleep 600 2>&1) ||
    fail "rootless podman run -d: $(echo "$id" | tail -n 3 | tr '\n' ' ')"
  echo "$id"
  pid=$(as_claw podman inspect -f '{{.State.Pid}}' "pu-$1")
  limits_seen_by as_claw podman exec "pu-$1"
  expect_scope "$pid" "libpod-$id.scope" as_claw systemctl --user
  ok "podman stop" as_claw podman stop -t 2 "pu-$1"
  ok "podman rm" as_claw podman rm "pu-$1"
  expect_scope_gone "libpod-$id.scope" as_claw systemctl --user
}
clean_podman_rootless() { as_claw podman rm -f "pu-$1" >/dev/null 2>&1; }

# docker with its defaults (systemd cgroup driver on v2); nanoclaw from daemon.json runtimes.
sc_docker() {
  local id pid
  expect "docker's cgroup driver (default)" systemd docker info --format '{{.CgroupDriver}}'
  expect "docker run --rm sees its memory limit" "$MEM" \
    docker run --rm --runtime "$1" --memory 64m "$IMG" cat /sys/fs/cgroup/memory.max
  id=$(run docker run -d --runtime "$1" --name "d-$1" --memory 64m --pids-limit $PIDS "$IMG" sleep 600) ||
    fail "docker run -d: $id"
  echo "$id"
  pid=$(docker inspect -f '{{.State.Pid}}' "$id")
  limits_seen_by docker exec "d-$1"
  expect_scope "$pid" "docker-$id.scope" systemctl
  expect "docker stats memory limit" 64MiB sh -c "docker stats --no-stream --format '{{.MemUsage}}' d-$1 | sed 's#.*/ *##'"
  ok "docker stop" docker stop -t 2 "d-$1"
  expect "exit state after stop" exited docker inspect -f '{{.State.Status}}' "d-$1"
  ok "docker rm" docker rm "d-$1"
  expect_scope_gone "docker-$id.scope" systemctl
}
clean_docker() { docker rm -f "d-$1" >/dev/null 2>&1; }

# containerd's ctr with the runc shim's options SystemdCgroup=true and BinaryName=the runtime
# (--runc-systemd-cgroup, --runc-binary; ctr ignores --runtime-config-path for runc.v2).
sc_ctr() {
  local ref=$IMG:latest id="ctr-$1" pid
  run ctr -n claw run -d --runtime io.containerd.runc.v2 --runc-binary "$(runtime_path "$1")" \
    --runc-systemd-cgroup --cgroup "system.slice:claw:$id" --memory-limit $MEM "$ref" "$id" sleep 600 ||
    fail "ctr run with SystemdCgroup=true failed"
  pid=$(ctr -n claw task ls | awk -v id="$id" '$1 == id { print $2 }')
  [ -n "$pid" ] || fail "ctr task ls does not list $id"
  expect "ctr task status" RUNNING sh -c "ctr -n claw task ls | awk '\$1 == \"$id\" { print \$3 }'"
  expect_scope "$pid" "claw-$id.scope" systemctl
  # ctr's default spec mounts no cgroupfs in the container: the limit is read from the host.
  expect "memory.max of the container's cgroup" "$MEM" cat "/sys/fs/cgroup$(cat /tmp/claw-last-cgroup)/memory.max"
  expect "ctr task exec output" hello ctr -n claw task exec --exec-id e1 "$id" echo hello
  ok "ctr task kill" ctr -n claw task kill -s KILL "$id"
  for _ in $(seq 30); do
    [ "$(ctr -n claw task ls | awk -v id="$id" '$1 == id { print $3 }')" = STOPPED ] && break
    sleep 1
  done
  expect "ctr task status after kill" STOPPED sh -c "ctr -n claw task ls | awk '\$1 == \"$id\" { print \$3 }'"
  ok "ctr task rm" ctr -n claw task rm "$id"
  ok "ctr container rm" ctr -n claw container rm "$id"
  expect_scope_gone "claw-$id.scope" systemctl
}
clean_ctr() {
  ctr -n claw task kill -s KILL "ctr-$1" >/dev/null 2>&1
  sleep 1
  ctr -n claw task rm -f "ctr-$1" >/dev/null 2>&1
  ctr -n claw container rm "ctr-$1" >/dev/null 2>&1
}

# The runtime alone, `--systemd-cgroup run` of a process that exits at once, 20 times with stdio
# on /dev/null (as hyperfine runs it): systemd removes the emptied scope while the runtime is still
# cleaning up; every run must exit 0 and leave no scope behind.
sc_short_lived() {
  local rt b=/tmp/sl-bundle-$1 i out
  rt=$(runtime_path "$1")
  make_bundle "$b" '"/bin/true"'
  use_cgroups_path "$b" "system.slice:claw:sl-$1"
  for i in $(seq 20); do
    echo "+ $rt --systemd-cgroup run sl-$1 (run $i)"
    out=$(timeout 60 "$rt" --root "/run/sl-$1" --systemd-cgroup run --bundle "$b" "sl-$1" </dev/null 2>&1 >/dev/null) ||
      fail "run $i of 20: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
  done
  expect_scope_gone "claw-sl-$1.scope" systemctl
}
clean_short_lived() {
  "$(runtime_path "$1")" --root "/run/sl-$1" delete -f "sl-$1" >/dev/null 2>&1
  rm -rf "/tmp/sl-bundle-$1"
}

# The runtime's own cgroup v2 work under the systemd driver, without an engine: limits from
# linux.resources, update, pause/resume (cgroup.freeze), ps, events --stats, an OOM kill
# counted in memory.events, kill and delete (scope gone). Each value is read from the cgroup.
sc_runtime_v2() {
  local rt b=/tmp/v2-bundle-$1 id="v2-$1" pid cg
  rt=$(runtime_path "$1")
  make_bundle "$b" '"sleep", "600"' \
    "\"memory\": {\"limit\": $MEM}, \"pids\": {\"limit\": $PIDS}, \"cpu\": {\"quota\": 50000, \"period\": 100000},"
  use_cgroups_path "$b" "system.slice:claw:$id"
  start_detached "$rt" "/run/v2-$1" --systemd-cgroup "$b" "$id"; pid=$STARTED_PID
  cg=/sys/fs/cgroup$(cgroup_of_pid "$pid")
  echo "$cg" | grep -q "/claw-$id.scope" || fail "init not in claw-$id.scope: $cg"
  expect "memory.max" "$MEM" cat "$cg/memory.max"
  expect "pids.max" "$PIDS" cat "$cg/pids.max"
  expect "cpu.max" "50000 100000" cat "$cg/cpu.max"
  ok "update" "$rt" --root "/run/v2-$1" --systemd-cgroup update --memory 33554432 --pids-limit 16 "$id"
  expect "memory.max after update" 33554432 cat "$cg/memory.max"
  expect "pids.max after update" 16 cat "$cg/pids.max"
  expect "MemoryMax of the unit after update" 33554432 systemctl show -p MemoryMax --value "claw-$id.scope"
  ok "pause" "$rt" --root "/run/v2-$1" --systemd-cgroup pause "$id"
  expect "cgroup.freeze while paused" 1 cat "$cg/cgroup.freeze"
  ok "state while paused" sh -c "'$rt' --root /run/v2-$1 state $id | grep -q '\"status\": *\"paused\"'"
  ok "resume" "$rt" --root "/run/v2-$1" --systemd-cgroup resume "$id"
  expect "cgroup.freeze after resume" 0 cat "$cg/cgroup.freeze"
  expect "ps lists the init" "$pid" sh -c "'$rt' --root /run/v2-$1 ps --format json $id | tr -d '[] '"
  ok "events --stats" sh -c "'$rt' --root /run/v2-$1 events --stats $id | grep -q '\"pids\":{[^}]*\"current\":1[,}]'"
  # A process that outgrows memory.max is OOM-killed; memory.events counts it.
  "$rt" --root "/run/v2-$1" exec "$id" sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done' >/dev/null 2>&1
  ok "memory.events counts the OOM kill" sh -c "[ \$(sed -n 's/^oom_kill //p' $cg/memory.events) -ge 1 ]"
  ok "kill" "$rt" --root "/run/v2-$1" kill "$id" KILL
  for _ in $(seq 50); do "$rt" --root "/run/v2-$1" state "$id" | grep -q stopped && break; sleep 0.2; done
  ok "delete" "$rt" --root "/run/v2-$1" --systemd-cgroup delete "$id"
  [ ! -d "$cg" ] || fail "after delete: $cg still exists"
  expect_scope_gone "claw-$id.scope" systemctl
}
clean_runtime_v2() {
  "$(runtime_path "$1")" --root "/run/v2-$1" --systemd-cgroup delete -f "v2-$1" >/dev/null 2>&1
  rm -rf "/tmp/v2-bundle-$1" "/tmp/v2-bundle-$1.err"
}

# Every linux.resources field a pure v2 host without RDMA hardware can take, set by the runtime
# alone with the systemd driver and with cgroupfs, each read back from the container's cgroup
# file (runc's conversions: shares 512 -> cpu.weight 20, blkio weight 500 -> io.weight 4950;
# OCI swap is memory+swap). The throttle names the VM's root disk.
sc_resources_v2() {
  local rt b=/tmp/res-bundle-$1 id pid cg driver flag dev res
  rt=$(runtime_path "$1")
  dev=$(cat /sys/block/vda/dev) || fail "no /sys/block/vda/dev"
  res="\"memory\": {\"limit\": $MEM, \"reservation\": 33554432, \"swap\": 134217728},"
  res="$res \"cpu\": {\"shares\": 512, \"quota\": 50000, \"period\": 100000, \"cpus\": \"0\", \"mems\": \"0\"},"
  res="$res \"pids\": {\"limit\": $PIDS},"
  res="$res \"blockIO\": {\"weight\": 500, \"throttleReadBpsDevice\": [{\"major\": ${dev%:*}, \"minor\": ${dev#*:}, \"rate\": 1048576}],"
  res="$res \"throttleWriteIOPSDevice\": [{\"major\": ${dev%:*}, \"minor\": ${dev#*:}, \"rate\": 100}]},"
  res="$res \"hugepageLimits\": [{\"pageSize\": \"2MB\", \"limit\": 4194304}],"
  res="$res \"unified\": {\"memory.high\": \"50331648\"},"
  make_bundle "$b" '"sleep", "600"' "$res"
  for driver in systemd cgroupfs; do
    start_with_driver "$1" res "$driver"
    id=$STARTED_ID flag=$DRIVER_FLAG pid=$STARTED_PID cg=$STARTED_CG
    expect "$driver: memory.max" "$MEM" cat "$cg/memory.max"
    expect "$driver: memory.low" 33554432 cat "$cg/memory.low"
    expect "$driver: memory.swap.max" "$MEM" cat "$cg/memory.swap.max"
    expect "$driver: memory.high (unified)" 50331648 cat "$cg/memory.high"
    expect "$driver: cpu.weight" 20 cat "$cg/cpu.weight"
    expect "$driver: cpu.max" "50000 100000" cat "$cg/cpu.max"
    expect "$driver: cpuset.cpus" 0 cat "$cg/cpuset.cpus"
    expect "$driver: cpuset.mems" 0 cat "$cg/cpuset.mems"
    expect "$driver: pids.max" "$PIDS" cat "$cg/pids.max"
    if [ -e "$cg/io.bfq.weight" ]; then
      expect "$driver: io.bfq.weight" "default 500" sh -c "head -n 1 $cg/io.bfq.weight"
    else
      expect "$driver: io.weight" "default 4950" sh -c "head -n 1 $cg/io.weight"
    fi
    expect "$driver: io.max" "$dev rbps=1048576 wbps=max riops=max wiops=100" cat "$cg/io.max"
    expect "$driver: hugetlb.2MB.max" 4194304 cat "$cg/hugetlb.2MB.max"
    ok "$driver: delete --force" "$rt" --root "/run/res-$1" $flag delete --force "$id"
    [ ! -d "$cg" ] || fail "$driver: after delete: $cg still exists"
  done
}
clean_resources_v2() { clean_both_drivers "$1" res; }

# The BPF device filter on pure v2 under podman's defaults (systemd driver). Root in the
# container with CAP_MKNOD may create any node (the default rules allow mknod) but opens only
# what the rules allow. 1:11 is /dev/kmsg: writing a line there is harmless. Then a
# daemon-reload, after which systemd attaches its own filter (from the unit's DevicePolicy and
# DeviceAllow) next to the runtime's: the container's access must not change.
KMSG_WRITE='rm -f /tmp/k; mknod /tmp/k c 1 11 || exit 7; echo claw-device-test >/tmp/k && echo open-ok'
KMSG_DENIED="can't create /tmp/k: Operation not permitted"
kmsg_write_denied() { # DESCRIPTION COMMAND... (a shell command in the container follows)
  local what=$1
  shift
  expect "$what" "$KMSG_DENIED" sh -c \
    "$(printf '%q ' "$@") sh -c '$KMSG_WRITE' 2>&1 | grep -o \"$KMSG_DENIED\" | head -n 1"
}
sc_devices() {
  local rt id pid unit
  rt=$(runtime_path "$1")
  kmsg_write_denied "kmsg write under the default rules" podman --runtime "$rt" run --rm --cap-add MKNOD "$IMG"
  expect "kmsg write with --device-cgroup-rule 'c 1:11 w'" open-ok podman --runtime "$rt" run --rm \
    --cap-add MKNOD --device-cgroup-rule 'c 1:11 w' "$IMG" sh -c "$KMSG_WRITE"
  id=$(run podman --runtime "$rt" run -d --cap-add MKNOD --name "dv-$1" "$IMG" sleep 600) || fail "podman run -d: $id"
  pid=$(podman inspect -f '{{.State.Pid}}' "$id")
  unit="libpod-$id.scope"
  expect_scope "$pid" "$unit" systemctl
  expect "the unit's DevicePolicy" strict systemctl show -p DevicePolicy --value "$unit"
  for when in before after; do
    expect "/dev/null write $when daemon-reload" ok podman exec "dv-$1" sh -c 'echo x >/dev/null && echo ok'
    expect "/dev/zero read $when daemon-reload" 4 podman exec "dv-$1" sh -c 'head -c 4 /dev/zero | wc -c'
    kmsg_write_denied "kmsg write $when daemon-reload" podman exec "dv-$1"
    [ $when = after ] || ok "daemon-reload" systemctl daemon-reload
  done
  ok "podman rm -f" podman rm -f -t 0 "dv-$1"
  expect_scope_gone "$unit" systemctl
}
clean_devices() { podman rm -f -t 0 "dv-$1" >/dev/null 2>&1; }

# `delete --force` of a container without its own PID namespace whose processes keep forking:
# killing the init does not take the others with it, so the runtime must kill the whole cgroup
# (cgroup.kill on this kernel) and remove it. With the systemd driver and with cgroupfs.
sc_cgroup_kill() {
  local rt b=/tmp/kill-bundle-$1 id pid cg pids p driver flag
  rt=$(runtime_path "$1")
  make_bundle "$b" '"sleep", "600"' '"pids": {"limit": 64},'
  perl -0pi -e 's/\{\s*"type": "pid"\s*\},?//' "$b/config.base" || fail "dropping the pid namespace"
  grep -q '"type": "pid"' "$b/config.base" && fail "config.json still has a pid namespace"
  for driver in systemd cgroupfs; do
    start_with_driver "$1" kill "$driver"
    id=$STARTED_ID flag=$DRIVER_FLAG pid=$STARTED_PID cg=$STARTED_CG
    "$rt" --root "/run/kill-$1" exec -d "$id" sh -c 'while :; do sleep 600 & sleep 0.05; done' \
      </dev/null >/dev/null 2>&1 || fail "$driver: exec -d of the forking loop"
    for _ in $(seq 50); do [ "$(wc -l <"$cg/cgroup.procs")" -ge 8 ] && break; sleep 0.2; done
    pids=$(cat "$cg/cgroup.procs")
    echo "$driver: $(echo "$pids" | wc -l) processes in $cg"
    [ "$(echo "$pids" | wc -l)" -ge 8 ] || fail "$driver: the forking loop did not start"
    ok "$driver: delete --force" "$rt" --root "/run/kill-$1" $flag delete --force "$id"
    [ ! -d "$cg" ] || fail "$driver: after delete --force: $cg still exists ($(wc -l <"$cg/cgroup.procs") processes)"
    for p in $pids; do
      [ ! -d "/proc/$p" ] || fail "$driver: process $p ($(tr '\0' ' ' <"/proc/$p/cmdline")) survived delete --force"
    done
    [ $driver = cgroupfs ] || expect_scope_gone "claw-$id.scope" systemctl
  done
}
clean_cgroup_kill() { clean_both_drivers "$1" kill; }

# podman container checkpoint/restore (CRIU on the stock kernel): the counter continues.
sc_checkpoint() {
  local rt n1 n2
  rt=$(runtime_path "$1")
  ok "podman run -d" podman --runtime "$rt" run -d --name "ck-$1" "$IMG" \
    sh -c 'i=0; while :; do i=$((i+1)); echo $i >/tmp/n; sleep 0.2; done'
  sleep 3
  criu_step checkpoint "$1" dump.log
  expect "state after checkpoint" exited podman inspect -f '{{.State.Status}}' "ck-$1"
  criu_step restore "$1" restore.log
  expect "state after restore" running podman inspect -f '{{.State.Status}}' "ck-$1"
  n1=$(podman exec "ck-$1" cat /tmp/n) || fail "exec after restore: $n1"
  sleep 2
  n2=$(podman exec "ck-$1" cat /tmp/n) || fail "exec after restore: $n2"
  echo "counter after restore: $n1, 2 s later: $n2"
  [ "$n1" -gt 5 ] || fail "the restored process started over (counter $n1)"
  [ "$n2" -gt "$n1" ] || fail "the restored process does not run (counter $n1 then $n2)"
  ok "podman rm -f" podman rm -f -t 0 "ck-$1"
}
# `podman container checkpoint|restore`; on failure CRIU's own log goes into this log too.
criu_step() {
  local verb=$1 out dir
  echo "+ podman container $verb ck-$2"
  out=$(timeout 180 podman container "$verb" "ck-$2" 2>&1) && return 0
  dir=/var/lib/containers/storage/overlay-containers/$(podman inspect -f '{{.Id}}' "ck-$2")/userdata
  echo "--- $dir/$3"
  tail -n 60 "$dir/$3" 2>/dev/null
  fail "podman container $verb: $out"
}
clean_checkpoint() { podman rm -f -t 0 "ck-$1" >/dev/null 2>&1; }

# --- driver --------------------------------------------------------------------------------
ALL=(podman_rootful podman_rootless docker ctr checkpoint podman_cgroupfs short_lived runtime_v2 resources_v2 devices cgroup_kill)
RUNTIMES=(runc nanoclaw)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL[@]}")

{
  echo "kernel $(uname -r); PID 1 $(cat /proc/1/comm); /sys/fs/cgroup $(stat -fc %T /sys/fs/cgroup)"
  echo "systemd $(systemctl --version | head -1)"
  podman --version; docker --version; containerd --version; runc --version | head -1
  crun --version | head -1; criu --version | head -1; nanoclaw --version 2>&1 | head -1
  echo "apparmor: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)"
} | tee "$OUT/facts.txt"
if [ "$(cat /proc/1/comm)" != systemd ] || [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  echo "the VM is not the host under test (systemd as PID 1 on pure cgroup v2)"
  exit 3
fi
prepare_images >"$OUT/logs/prepare.log" 2>&1 || {
  cat "$OUT/logs/prepare.log"
  echo "preparing the images failed"
  exit 3
}

for sc in "${scenarios[@]}"; do
  for rt in "${RUNTIMES[@]}"; do
    log="$OUT/logs/$sc.$rt.log"
    s0=$SECONDS
    ("sc_$sc" "$rt") >"$log" 2>&1
    rc=$?
    "clean_$sc" "$rt"
    secs=$((SECONDS - s0))
    if [ $rc -eq 0 ]; then res=PASS why=""; else res=FAIL why=$(grep -m1 '^FAIL: ' "$log" | cut -c7- | head -c 400); fi
    [ $rc -eq 0 ] || [ -n "$why" ] || why="exited $rc: $(tail -n 1 "$log" | head -c 300)"
    printf '%s\t%s\t%s\t%s\n' "$sc" "$rt" "$res" "$why" >>"$OUT/results.tsv"
    printf '%-16s %-9s %s (%s s) %s\n' "$sc" "$rt" "$res" "$secs" "$why"
  done
done
