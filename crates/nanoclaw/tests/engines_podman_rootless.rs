//! Acceptance: rootless podman as an ordinary user (`clawtest`, made by scripts/install-deps
//! with subordinate ids). podman runs the runtime as uid 0 of its own user namespace, with
//! `$XDG_RUNTIME_DIR` pointing at a directory the user owns; the runtime must see that it is
//! rootless there (as runc's "auto" does), keep its state under `$XDG_RUNTIME_DIR/<name>`,
//! bind device nodes instead of mknod, go on without the v1 cgroups it cannot create, and
//! copy an image directory into a `--read-only` tmpfs (tmpcopyup) inside that namespace.
//!
//! Every scenario runs against runc too. `--network none`: slirp4netns cannot open
//! /dev/net/tun (mode 0600) as an ordinary user on this host, for runc as for nanoclaw.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use claw_testsupport::bundle::{require_user, user_ids};
use claw_testsupport::engines::{run, run_ok, unique_name, PODMAN_ULIMITS};
use claw_testsupport::{require_root, require_tool, which, BusyboxRootfs};

const USER: &str = "clawtest";

/// The runtime binary copied where the user can run it, and a rootfs the user owns.
struct Setup {
    uid: u32,
    gid: u32,
    runtime: PathBuf,
    _bin_dir: tempfile::TempDir,
    rootfs: BusyboxRootfs,
}

impl Setup {
    fn new(test: &str, runtime: &Path) -> Option<Self> {
        if !require_root(test) || !require_tool(test, "podman") || !require_user(test, USER) {
            return None;
        }
        let (uid, gid) = user_ids(USER)?;
        let bin_dir = tempfile::Builder::new()
            .prefix("claw-rlbin-")
            .tempdir()
            .unwrap();
        run_ok(Command::new("chmod").arg("0755").arg(bin_dir.path()));
        let name = runtime.file_name().unwrap();
        let copy = bin_dir.path().join(name);
        std::fs::copy(runtime, &copy).unwrap();
        run_ok(Command::new("chmod").arg("0755").arg(&copy));
        let rootfs = BusyboxRootfs::new().unwrap();
        std::fs::create_dir_all(rootfs.path().join("run/app")).unwrap();
        std::fs::write(rootfs.path().join("run/app/conf"), "listen 1883\n").unwrap();
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(rootfs.path()),
        );
        Some(Self {
            uid,
            gid,
            runtime: copy,
            _bin_dir: bin_dir,
            rootfs,
        })
    }

    /// `podman --runtime <copy> <args>` as the user, with a login-like environment.
    fn podman(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", format!("/home/{USER}"))
            .env("USER", USER)
            .env("LOGNAME", USER)
            .current_dir("/tmp")
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args);
        c
    }

    /// podman's runtime directory for the user when none is set: /run/user/<uid> if the user
    /// owns it, else /tmp/podman-run-<uid>. The runtime's state is `<that>/<runtime name>`.
    fn state_root(&self) -> PathBuf {
        let run_user = PathBuf::from(format!("/run/user/{}", self.uid));
        let xdg = match std::fs::metadata(&run_user) {
            Ok(m) if m.uid() == self.uid => run_user,
            _ => PathBuf::from(format!("/tmp/podman-run-{}", self.uid)),
        };
        xdg.join(self.runtime.file_name().unwrap())
    }
}

/// Removes the container (as the user) on drop.
struct Container<'a> {
    setup: &'a Setup,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .setup
            .podman(&["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn rootless_run_exec_stop_rm(runtime: &Path) {
    let Some(s) = Setup::new("rootless podman", runtime) else {
        return;
    };
    let rootfs = s.rootfs.path().to_string_lossy().into_owned();
    let mut base = vec!["--network", "none"];
    base.extend(PODMAN_ULIMITS);

    // One-shot: root in the container, the user outside; exit status back.
    let once = Container {
        setup: &s,
        name: unique_name("claw-rl-once"),
    };
    let mut args = vec!["run", "--rm", "--name", &once.name];
    args.extend(&base);
    args.extend([
        "--rootfs",
        &rootfs,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; exit 3",
    ]);
    let out = run(&mut s.podman(&args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("0"), "{stdout}");
    // uid 0 inside is the user outside.
    let first_map: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(first_map[..2], ["0", &*s.uid.to_string()], "{stdout}");

    // --read-only: the tmpfs mounts with tmpcopyup work inside podman's user namespace too.
    let ro = Container {
        setup: &s,
        name: unique_name("claw-rl-ro"),
    };
    let mut args = vec!["run", "--rm", "--read-only", "--name", &ro.name];
    args.extend(&base);
    args.extend([
        "--rootfs",
        &rootfs,
        "sh",
        "-c",
        "cat /run/app/conf; echo x > /run/new && echo WROTE; touch /etc/x 2>/dev/null || echo ROOT-RO",
    ]);
    assert_eq!(
        run_ok(&mut s.podman(&args)),
        "listen 1883\nWROTE\nROOT-RO\n"
    );

    // Detached, exec (output and exit status), stop, rm.
    let c = Container {
        setup: &s,
        name: unique_name("claw-rl-long"),
    };
    let mut args = vec!["run", "-d", "--name", &c.name];
    args.extend(&base);
    args.extend(["--rootfs", &rootfs, "sleep", "1000"]);
    run_ok(&mut s.podman(&args));
    let id = run_ok(&mut s.podman(&["inspect", "--format", "{{.Id}}", &c.name]))
        .trim()
        .to_string();
    let state_dir = s.state_root().join(&id);
    assert!(
        state_dir.is_dir(),
        "the runtime's state is not at {}",
        state_dir.display()
    );
    let seen = run_ok(&mut s.podman(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; id -u",
    ]));
    assert_eq!(seen, "sleep 1000 \n0\n");
    let failed = run(&mut s.podman(&["exec", &c.name, "sh", "-c", "exit 5"]));
    assert_eq!(failed.status.code(), Some(5));
    run_ok(&mut s.podman(&["stop", "--time", "1", &c.name]));
    let status = run_ok(&mut s.podman(&["inspect", "--format", "{{.State.Status}}", &c.name]));
    assert_eq!(status.trim(), "exited");
    run_ok(&mut s.podman(&["rm", &c.name]));
    assert!(
        !state_dir.exists(),
        "{} left after podman rm",
        state_dir.display()
    );
}

fn runc() -> PathBuf {
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

mod runc {
    #[test]
    fn podman_rootless_run_exec_stop_rm() {
        super::rootless_run_exec_stop_rm(&super::runc());
    }
}

fn nanoclaw() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nanoclaw"))
}

mod nanoclaw {
    #[test]
    fn podman_rootless_run_exec_stop_rm() {
        super::rootless_run_exec_stop_rm(&super::nanoclaw());
    }
}
