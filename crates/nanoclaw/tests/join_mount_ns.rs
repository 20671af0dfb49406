//! A mount namespace given by `linux.namespaces[].path` is joined, and the rootfs is set up
//! inside it (runc's behaviour); a path that is missing, not a namespace, the wrong type, the
//! runtime's own mount namespace, or one the rootfs is not visible in is refused with an error
//! naming the field and leaves nothing behind.
//!
//! The joined namespace is held by `unshare --mount --propagation private … sleep`, a copy of
//! the test's mount table (so the bundle path resolves there too); [`Holder`] kills it on drop,
//! also when an assertion fails.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use claw_testsupport::bundle::{require_user, user_ids, Bundle, Runtime};
use common::*;
use serde_json::{json, Value};

/// A sleeping process in its own namespaces, killed and reaped on drop.
struct Holder {
    child: Child,
}

impl Holder {
    /// `unshare <flags> sh -c '<setup>; echo ready; exec sleep 1000'`; returns once `ready`
    /// was printed (the namespaces exist and `setup` ran in them).
    fn spawn(flags: &[&str], setup: &str, as_user: Option<(u32, u32)>) -> Self {
        let script = format!("{setup}\necho ready; exec sleep 1000");
        let mut cmd = Command::new("unshare");
        cmd.args(flags)
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some((uid, gid)) = as_user {
            cmd.uid(uid).gid(gid).current_dir("/");
        }
        let mut child = cmd.spawn().expect("spawn unshare");
        let mut out = child.stdout.take().expect("holder stdout");
        let holder = Self { child };
        let mut buf = [0u8; 6];
        out.read_exact(&mut buf).expect("holder ready");
        assert_eq!(&buf, b"ready\n");
        holder
    }

    /// A private mount namespace that is a copy of the test's.
    fn mount_ns() -> Self {
        Self::spawn(&["--mount", "--propagation", "private"], "true", None)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/proc/<pid>/ns/<name>`.
    fn ns_path(&self, name: &str) -> String {
        format!("/proc/{}/ns/{name}", self.pid())
    }

    /// What `readlink` shows for the holder's namespace, e.g. `mnt:[4026532257]`.
    fn ns_link(&self, name: &str) -> String {
        let link = std::fs::read_link(self.ns_path(name)).expect("readlink holder ns");
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).expect("readlink own ns");
        assert_ne!(
            link, ours,
            "the holder did not get its own {name} namespace"
        );
        link.display().to_string()
    }

    /// The holder's mount table (mount points and fs types), as seen from its namespace.
    fn mountinfo(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).expect("mountinfo")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `spec` with the mount namespace entry joined by `path`; returns its index.
fn join_mount(spec: &mut Value, path: &str) -> usize {
    let list = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    let i = list
        .iter()
        .position(|n| n["type"] == "mount")
        .expect("default spec has a mount namespace");
    list[i]["path"] = json!(path);
    i
}

/// Mount point and fs type of each mount in a mountinfo text.
fn mount_points(info: &str) -> Vec<(String, String)> {
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            let fstype = post.split(' ').next()?;
            Some((mp.to_string(), fstype.to_string()))
        })
        .collect()
}

#[test]
fn joined_mount_namespace_hosts_the_rootfs() {
    if !root("joined_mount_namespace_hosts_the_rootfs") {
        return;
    }
    let holder = Holder::mount_ns();
    let want = holder.ns_link("mnt");
    let bundle = Bundle::busybox().expect("bundle");
    std::fs::write(
        bundle.rootfs().join("claw-marker"),
        "from the bundle rootfs\n",
    )
    .unwrap();
    let mut spec = sh("readlink /proc/self/ns/mnt; cat /claw-marker; \
         touch /x 2>/dev/null && echo rw || echo ro; \
         awk '{ for (i = 7; $i != \"-\"; i++); print $5, $(i+1) }' /proc/self/mountinfo");
    join_mount(&mut spec, &holder.ns_path("mnt"));
    spec["root"]["readonly"] = json!(true);
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "size=1m"]}),
    );
    let ran = run_in(bundle, &spec);
    // Exit 0, no state left, and no mount under the bundle in the test's own namespace:
    // nothing of the setup propagated out of the joined one.
    let out = ran.ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(want.as_str()), "{out}");
    assert_eq!(lines.next(), Some("from the bundle rootfs"), "{out}");
    assert_eq!(lines.next(), Some("ro"), "root.readonly: {out}");
    let mounts: Vec<&str> = lines.collect();
    for m in [
        "/ ",
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/scratch tmpfs",
    ] {
        assert!(
            mounts.iter().any(|l| l.starts_with(m)),
            "{m:?} missing from the container's mounts: {out}"
        );
    }
    // The setup happened in the held namespace itself, not in a copy: its mount table now
    // has the container's mounts (they outlive the container, as with runc).
    let held = mount_points(&holder.mountinfo());
    assert!(
        held.iter().any(|(mp, t)| mp == "/scratch" && t == "tmpfs"),
        "held namespace: {held:?}"
    );
}

#[test]
fn exec_and_delete_in_a_joined_mount_namespace() {
    if !root("exec_and_delete_in_a_joined_mount_namespace") {
        return;
    }
    let holder = Holder::mount_ns();
    let want = holder.ns_link("mnt");
    let bundle = Bundle::busybox().expect("bundle");
    std::fs::write(
        bundle.rootfs().join("claw-marker"),
        "exec sees the rootfs\n",
    )
    .unwrap();
    let mut spec = spec_with_args(&["sleep", "1000"]);
    join_mount(&mut spec, &holder.ns_path("mnt"));
    bundle.write_config(&spec).unwrap();
    let runtime = Runtime::new(NANOCLAW).unwrap();
    let id = "joined";
    // The init keeps its stdio: give it /dev/null, not pipes `output()` would wait on.
    let status = runtime
        .command(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run --detach");
    // Delete even if an assertion below fails.
    struct Delete<'a>(&'a Runtime, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = self.0.command(["delete", "--force", self.1]).output();
        }
    }
    let _delete = Delete(&runtime, id);
    assert!(status.success(), "run --detach failed");
    let state: Value =
        serde_json::from_slice(&runtime.command(["state", id]).output().unwrap().stdout)
            .expect("state json");
    let init = state["pid"].as_i64().expect("init pid") as i32;
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/ns/mnt"))
            .unwrap()
            .display()
            .to_string(),
        want,
        "the init is not in the held mount namespace"
    );

    // The container's cgroup exists while it runs (and the leak check below can see it).
    assert!(
        !leftover_cgroups(runtime.root(), id).is_empty(),
        "no cgroup found for the running container"
    );

    let out = runtime
        .command(["exec", id, "sh", "-c"])
        .arg("readlink /proc/self/ns/mnt; cat /claw-marker; ls /proc | grep -c '^[0-9]'")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exec: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(want.as_str()), "{text}");
    assert_eq!(lines.next(), Some("exec sees the rootfs"), "{text}");
    // The container's own procfs (new pid namespace): a handful of processes, not the host's.
    let n: usize = lines.next().unwrap_or("x").parse().expect("count");
    assert!(n <= 4, "exec sees {n} processes: {text}");

    let del = runtime.command(["delete", "--force", id]).output().unwrap();
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
    assert!(
        !claw_testsupport::bundle::pid_alive(init),
        "init {init} survived delete"
    );
    let cgroups = leftover_cgroups(runtime.root(), id);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    // The held namespace outlives the container.
    assert!(claw_testsupport::bundle::pid_alive(holder.pid() as i32));
    let mounts = claw_testsupport::bundle::mounts_under(bundle.path());
    assert!(
        mounts.is_empty(),
        "mounts left in the test's namespace: {mounts:?}"
    );
}

/// `spec` refused in a fresh busybox bundle with `expect`, nothing left behind.
fn refused(test: &str, spec: &Value, expect: &str) {
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(spec).unwrap();
    refused_in(test, &bundle, expect);
}

#[test]
fn mount_path_that_is_a_network_namespace() {
    if !root("mount_path_that_is_a_network_namespace") {
        return;
    }
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, "/proc/self/ns/net");
    refused(
        "mount_path_that_is_a_network_namespace",
        &spec,
        &format!(
            "`linux.namespaces[{i}].path`: /proc/self/ns/net: is a network namespace, not a mount namespace"
        ),
    );
}

#[test]
fn mount_path_that_does_not_exist() {
    if !root("mount_path_that_does_not_exist") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ns");
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, missing.to_str().unwrap());
    refused(
        "mount_path_that_does_not_exist",
        &spec,
        &format!(
            "`linux.namespaces[{i}].path`: {}: ENOENT: No such file or directory",
            missing.display()
        ),
    );
}

#[test]
fn mount_path_that_is_a_regular_file() {
    if !root("mount_path_that_is_a_regular_file") {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, file.path().to_str().unwrap());
    refused(
        "mount_path_that_is_a_regular_file",
        &spec,
        &format!(
            "`linux.namespaces[{i}].path`: {}: not a namespace file",
            file.path().display()
        ),
    );
}

#[test]
fn mount_path_of_the_runtime_itself() {
    if !root("mount_path_of_the_runtime_itself") {
        return;
    }
    // Setting the rootfs up in the host's mount namespace would pivot_root the host.
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, "/proc/self/ns/mnt");
    refused(
        "mount_path_of_the_runtime_itself",
        &spec,
        &format!(
            "`linux.namespaces[{i}].path`: /proc/self/ns/mnt is the runtime's own mount namespace"
        ),
    );
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, "/proc/1/ns/mnt");
    let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    // Where pid 1 is not ours to inspect (a sandbox's init), the path cannot even be opened:
    // still refused, with that reason.
    let expect = match std::fs::read_link("/proc/1/ns/mnt") {
        Ok(pid1) if pid1 == own => " is the runtime's own mount namespace",
        Ok(_) => " is pid 1's mount namespace",
        Err(_) => ": EACCES: Permission denied",
    };
    refused(
        "mount_path_of_the_runtime_itself",
        &spec,
        &format!("`linux.namespaces[{i}].path`: /proc/1/ns/mnt{expect}"),
    );
}

#[test]
fn mount_join_from_a_new_user_namespace() {
    if !root("mount_join_from_a_new_user_namespace") {
        return;
    }
    let holder = Holder::mount_ns();
    let before = holder.mountinfo();
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, &holder.ns_path("mnt"));
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    refused(
        "mount_join_from_a_new_user_namespace",
        &spec,
        &format!(
            "`linux.namespaces[{i}].path`: a mount namespace cannot be joined from a new user namespace"
        ),
    );
    assert_eq!(holder.mountinfo(), before, "the held namespace was changed");
}

#[test]
fn rootfs_not_visible_in_the_joined_namespace() {
    if !root("rootfs_not_visible_in_the_joined_namespace") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    // In the held namespace an empty tmpfs hides the bundle: root.path does not resolve there.
    let holder = Holder::spawn(
        &["--mount", "--propagation", "private"],
        &format!("mount -t tmpfs none '{}'", bundle.path().display()),
        None,
    );
    let before = holder.mountinfo();
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, &holder.ns_path("mnt"));
    bundle.write_config(&spec).unwrap();
    let rootfs = std::fs::canonicalize(bundle.rootfs()).unwrap();
    refused_in(
        "rootfs_not_visible_in_the_joined_namespace",
        &bundle,
        &format!(
            "root.path: {} is not a directory in the joined mount namespace (linux.namespaces[{i}].path)",
            rootfs.display()
        ),
    );
    // Checked before anything was mounted there.
    assert_eq!(holder.mountinfo(), before, "the held namespace was changed");
}

#[test]
fn rootless_cannot_join_a_foreign_mount_namespace() {
    let test = "rootless_cannot_join_a_foreign_mount_namespace";
    if !root(test) || !require_user(test, "clawtest") {
        return;
    }
    let (uid, gid) = user_ids("clawtest").expect("clawtest ids");
    // The user's own user namespace (it may join that one) ...
    let own = Holder::spawn(&["--user", "--map-root-user"], "true", Some((uid, gid)));
    // ... and a user+mount namespace of the same user that the first does not own: setns
    // into it needs CAP_SYS_ADMIN over its owner, which the joined user namespace lacks.
    let foreign = Holder::spawn(
        &["--user", "--map-root-user", "--mount"],
        "true",
        Some((uid, gid)),
    );
    let before = foreign.mountinfo();
    let runtime = Runtime::as_user(NANOCLAW, uid, gid).expect("runtime as clawtest");
    let bundle = Bundle::busybox().expect("bundle");
    bundle.chown_recursive(uid, gid).expect("chown bundle");
    let mut spec = sh("echo SHOULD-NOT-RUN");
    let i = join_mount(&mut spec, &foreign.ns_path("mnt"));
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user", "path": own.ns_path("user")}));
    // The rootless runtime cannot make a cgroup: leave linux.resources out.
    if let Some(linux) = spec["linux"].as_object_mut() {
        linux.remove("resources");
    }
    bundle.write_config(&spec).unwrap();
    std::os::unix::fs::chown(bundle.path().join("config.json"), Some(uid), Some(gid)).unwrap();
    let out = runtime
        .run(bundle.path(), &claw_testsupport::engines::unique_name("rl"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "accepted: {stderr}");
    assert!(out.stdout.is_empty(), "the process ran");
    assert!(
        stderr.contains(&format!(
            "linux.namespaces[{i}].path: setns into the mount namespace: EPERM"
        )),
        "{stderr}"
    );
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
    let leaked = runtime_processes(runtime.root());
    assert!(leaked.is_empty(), "processes left: {leaked:?}");
    let cgroups = leftover_cgroups(runtime.root(), "rl");
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert_eq!(
        foreign.mountinfo(),
        before,
        "the foreign namespace was changed"
    );
}

#[test]
fn rootless_joins_a_mount_namespace_of_its_own_user_namespace() {
    let test = "rootless_joins_a_mount_namespace_of_its_own_user_namespace";
    if !root(test) || !require_user(test, "clawtest") {
        return;
    }
    let (uid, gid) = user_ids("clawtest").expect("clawtest ids");
    // The user's user namespace (root mapped to the user) and a mount namespace it owns.
    let holder = Holder::spawn(
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ],
        "true",
        Some((uid, gid)),
    );
    let want = holder.ns_link("mnt");
    let runtime = Runtime::as_user(NANOCLAW, uid, gid).expect("runtime as clawtest");
    let bundle = Bundle::busybox().expect("bundle");
    bundle.chown_recursive(uid, gid).expect("chown bundle");
    let out = runtime
        .command(["spec", "--rootless", "--bundle"])
        .arg(bundle.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "readlink /proc/self/ns/mnt; id -u; cat /claw-marker"
    ]);
    spec["process"]["terminal"] = json!(false);
    join_mount(&mut spec, &holder.ns_path("mnt"));
    // Join the holder's user namespace instead of creating one (its maps are already set).
    for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "user" {
            ns["path"] = json!(holder.ns_path("user"));
        }
    }
    let linux = spec["linux"].as_object_mut().unwrap();
    linux.remove("uidMappings");
    linux.remove("gidMappings");
    std::fs::write(bundle.rootfs().join("claw-marker"), "rootless rootfs\n").unwrap();
    bundle.write_config(&spec).unwrap();
    std::os::unix::fs::chown(bundle.path().join("config.json"), Some(uid), Some(gid)).unwrap();
    let out = runtime
        .run(bundle.path(), &claw_testsupport::engines::unique_name("rl"))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, format!("{want}\n0\nrootless rootfs\n"));
    assert!(
        runtime.leftover_state().is_empty(),
        "{:?}",
        runtime.leftover_state()
    );
    let mounts = claw_testsupport::bundle::mounts_under(bundle.path());
    assert!(
        mounts.is_empty(),
        "mounts left in the test's namespace: {mounts:?}"
    );
}
