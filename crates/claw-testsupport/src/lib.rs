//! Shared test helpers for the claw workspace.
//!
//! Tests that need root, KVM or a host tool must not silently pass when the machine lacks it:
//! they call one of the `require_*` functions, which print a loud `SKIPPED:` line to stderr and
//! return `false` so the test can return early. On the project's own machines every requirement
//! holds and the tests run.

pub mod bundle;
pub mod engines;
pub mod net;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Prints the loud skip line every skipped test uses.
pub fn skip(test: &str, reason: &str) {
    eprintln!("\n!!!!!!!! SKIPPED: {test}: {reason} !!!!!!!!\n");
}

/// True when running as root; otherwise reports the test as skipped.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc_geteuid() } == 0;
    if !root {
        skip(test, "needs root");
    }
    root
}

/// True when /dev/kvm can be opened read-write; otherwise reports the test as skipped.
pub fn require_kvm(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        skip(test, "needs a usable /dev/kvm");
    }
    ok
}

/// True when `tool` is on PATH; otherwise reports the test as skipped.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let ok = which(tool).is_some();
    if !ok {
        skip(
            test,
            &format!("needs `{tool}` on PATH (scripts/install-deps installs it)"),
        );
    }
    ok
}

/// Finds an executable on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A minimal busybox root filesystem in a temporary directory: /bin with every busybox applet
/// linked, plus the empty directories a container runtime mounts onto. Removed on drop.
pub struct BusyboxRootfs {
    dir: tempfile::TempDir,
}

impl BusyboxRootfs {
    /// Builds the rootfs from Debian's busybox-static (`/bin/busybox`).
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("claw-rootfs-").tempdir()?;
        populate_busybox_rootfs(dir.path())?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Fills `root` with a busybox userland. Used by tests and by scripts that build the demo rootfs.
pub fn populate_busybox_rootfs(root: &Path) -> std::io::Result<()> {
    let busybox = which("busybox")
        .filter(|p| is_static(p))
        .or_else(|| Some(PathBuf::from("/bin/busybox")))
        .filter(|p| p.is_file())
        .ok_or_else(|| std::io::Error::other("busybox-static is not installed"))?;
    for d in [
        "bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "mnt",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(&busybox, root.join("bin/busybox"))?;
    let out = Command::new(&busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

fn is_static(path: &Path) -> bool {
    // A dynamically linked busybox would not run inside a rootfs without its libc.
    std::fs::read(path)
        .map(|bytes| !bytes.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"))
        .unwrap_or(false)
}
