//! Drives real container engines (podman, containerd + ctr) against a chosen OCI runtime binary,
//! so the same acceptance scenario can run against runc (the anchor: if it fails there, the test
//! or the machine is wrong) and against nanoclaw (if it fails only there, nanoclaw is wrong).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// podman's default rlimits exceed this machine's hard nofile limit (20000); these fit under it.
pub const PODMAN_ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A unique, short name for a container or namespace of this test process.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, returning its output; panics with the command line if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `podman --runtime <runtime>`; the runtime path must be absolute.
pub fn podman(runtime: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--runtime").arg(runtime);
    c
}

/// Removes a podman container by name when dropped (best effort), so a failed assertion does
/// not leave it behind.
pub struct PodmanContainer {
    pub name: String,
    runtime: PathBuf,
}

impl PodmanContainer {
    pub fn new(runtime: &Path, prefix: &str) -> Self {
        Self {
            name: unique_name(prefix),
            runtime: runtime.to_path_buf(),
        }
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = podman(&self.runtime)
            .args(["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `command_line` (a shell command) on a fresh pseudo-terminal with `script`, feeding
/// `input` to it; returns (exit code, everything the terminal showed).
pub fn run_in_pty(command_line: &str, input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("script")
        .args([
            "--quiet",
            "--return",
            "--command",
            command_line,
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run script: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        // Give the program time to put the terminal in place before typing, as a person would.
        std::thread::sleep(Duration::from_millis(700));
        let _ = stdin.write_all(input.as_bytes());
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = wait_output_with_timeout(child, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits for `child` to finish (killing it after `timeout`) and collects its output.
pub fn wait_output_with_timeout(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output();
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    out.unwrap_or_else(|e| panic!("waiting for child {pid}: {e}"))
}

/// A private containerd: its own socket, root, state and config under one temporary directory,
/// stopped (and its directory removed) on drop.
pub struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    pub namespace: String,
}

impl Containerd {
    /// Starts containerd and waits until it answers on its socket. The CRI plugin is disabled:
    /// the tests drive containerd through `ctr`, whose `--runc-binary` sets the runc shim's
    /// `BinaryName` option for the task.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(None, unique_name("claw"))
    }

    /// Starts containerd with its CRI plugin (Kubernetes' API on the same socket), the
    /// plugin's settings being `cri_toml(dir)` (TOML lines under
    /// `[plugins."io.containerd.grpc.v1.cri"]`, `dir` being this containerd's directory). CRI
    /// works in the `k8s.io` namespace, which `ctr()` then uses.
    pub fn start_cri(cri_toml: impl FnOnce(&Path) -> String) -> std::io::Result<Self> {
        Self::start_with(Some(Box::new(cri_toml)), "k8s.io".to_string())
    }

    #[allow(clippy::type_complexity)]
    fn start_with(
        cri: Option<Box<dyn FnOnce(&Path) -> String + '_>>,
        namespace: String,
    ) -> std::io::Result<Self> {
        // Short path: unix socket paths are limited to 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("clawctd-")
            .tempdir_in("/tmp")?;
        let d = dir.path();
        let plugins = match cri {
            None => "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_string(),
            Some(f) => format!("[plugins.\"io.containerd.grpc.v1.cri\"]\n{}\n", f(d)),
        };
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n{plugins}",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("c.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config)?;
        let log = std::fs::File::create(d.join("containerd.log"))?;
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let me = Self {
            namespace,
            dir,
            daemon,
        };
        let up = wait_until(Duration::from_secs(20), || {
            me.ctr()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !up {
            return Err(std::io::Error::other(format!(
                "containerd did not come up; its log:\n{}",
                std::fs::read_to_string(me.dir.path().join("containerd.log")).unwrap_or_default()
            )));
        }
        Ok(me)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// `ctr -a <socket> -n <namespace>`.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace);
        c
    }

    /// The runc shim's default `--root` for this namespace: where the runtime keeps its state.
    pub fn runtime_root(&self) -> PathBuf {
        Path::new("/run/containerd/runc").join(&self.namespace)
    }

    /// Builds a busybox OCI image with umoci and imports it as `image_ref`.
    pub fn import_busybox(&self, image_ref: &str) -> std::io::Result<()> {
        self.import_busybox_with(image_ref, &["--config.cmd", "/bin/sh"])
    }

    /// [`Self::import_busybox`] with other `umoci config` arguments.
    pub fn import_busybox_with(&self, image_ref: &str, config: &[&str]) -> std::io::Result<()> {
        let work = self.dir.path().join(format!("image-{}", unique_name("i")));
        std::fs::create_dir_all(&work)?;
        let tar = build_busybox_oci_tar_with(&work, config)?;
        let out = self
            .ctr()
            .args(["images", "import", "--index-name", image_ref])
            .arg(&tar)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "ctr images import: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // A failed test may leave tasks running: remove every container of the namespace
        // through containerd first, so their shims and processes stop with it.
        if let Ok(out) = self.ctr().args(["containers", "ls", "--quiet"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                for args in [
                    &["tasks", "rm", "--force", id][..],
                    &["containers", "rm", id],
                ] {
                    let _ = self
                        .ctr()
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // The shim's per-namespace runtime root; empty once every task was deleted.
        let _ = std::fs::remove_dir(self.runtime_root());
        // ctr's default cgroups path is /<namespace>/<id>: the runtime removes <id> on delete,
        // the (then empty) namespace directory stays in every hierarchy, as with runc.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.namespace));
            }
        }
        // containerd's overlay snapshots and shim state may still be mounted under its root.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = self.dir.path().to_string_lossy().into_owned();
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|t| t.starts_with(&prefix))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = Command::new("umount").args(["-l", t]).status();
            }
        }
    }
}

/// Makes an OCI image layout holding one busybox layer (cmd /bin/sh) and tars it; returns the
/// tar's path. Uses umoci (Debian package, installed by scripts/install-deps).
pub fn build_busybox_oci_tar(work: &Path) -> std::io::Result<PathBuf> {
    build_busybox_oci_tar_with(work, &["--config.cmd", "/bin/sh"])
}

/// [`build_busybox_oci_tar`] with other `umoci config` arguments (entrypoint, cmd).
pub fn build_busybox_oci_tar_with(work: &Path, config: &[&str]) -> std::io::Result<PathBuf> {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let image = format!("{}:latest", layout.display());
    let step = |args: &[&str]| -> std::io::Result<()> {
        let out = Command::new("umoci").args(args).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "umoci {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    step(&["init", "--layout", &layout.to_string_lossy()])?;
    step(&["new", "--image", &image])?;
    step(&["unpack", "--image", &image, &bundle.to_string_lossy()])?;
    crate::populate_busybox_rootfs(&bundle.join("rootfs"))?;
    step(&["repack", "--image", &image, &bundle.to_string_lossy()])?;
    let mut args = vec!["config", "--image", &image, "--config.env", "PATH=/bin"];
    args.extend(config);
    step(&args)?;
    let tar = work.join("busybox-oci.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(tar)
}

/// Cgroup directories (any hierarchy under /sys/fs/cgroup, up to 4 levels deep) whose name
/// contains `needle`: what a deleted container must not leave behind.
pub fn cgroup_dirs_named(needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, needle, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), needle, 4, &mut out);
    out
}

/// A podman-compose project in a temporary directory, with a local image imported from a
/// busybox rootfs (no registry); `down`, its network and its image are removed on drop.
pub struct ComposeProject {
    dir: tempfile::TempDir,
    /// The project name (`-p`); containers are `<name>_<service>_1`.
    pub name: String,
    image: String,
    runtime: PathBuf,
}

impl ComposeProject {
    pub fn new(runtime: &Path, rootfs: &Path, compose_yaml: impl Fn(&str) -> String) -> Self {
        let name = unique_name("clawcompose");
        let image = format!("localhost/{name}:1");
        let dir = tempfile::Builder::new()
            .prefix("claw-compose-")
            .tempdir()
            .unwrap();
        run_ok(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -c . | podman import --change CMD=/bin/sh - {image}",
            rootfs.display()
        )));
        std::fs::write(dir.path().join("compose.yml"), compose_yaml(&image)).unwrap();
        Self {
            dir,
            name,
            image,
            runtime: runtime.to_path_buf(),
        }
    }

    /// `podman-compose -p <name> --podman-args '--runtime <runtime>' <args>` in the project
    /// directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman-compose");
        c.current_dir(self.dir.path())
            .arg("--podman-args")
            .arg(format!("--runtime {}", self.runtime.display()))
            .args(["-p", &self.name])
            .args(args);
        c
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let quiet = |c: &mut Command| {
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        quiet(&mut self.command(&["down"]));
        quiet(Command::new("podman").args(["network", "rm", &format!("{}_default", self.name)]));
        quiet(Command::new("podman").args(["rmi", "--force", &self.image]));
    }
}
