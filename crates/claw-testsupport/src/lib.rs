//! Shared test helpers for the claw workspace.
//!
//! Tests that need root, KVM, a host tool or the shared attestation fixtures must not pass
//! without testing when the machine lacks it. They call one of the `require_*` functions, which
//! apply the [`SkipPolicy`] of the environment:
//! - under CI (`CI` set, non-empty, not `false`/`0`) a missing requirement fails the test with a
//!   panic naming what was missing: a CI machine that lost root or KVM goes red, not green;
//! - elsewhere the skip is reported on stderr and appended as one line
//!   (`binary::test: reason`) to the file named by `CLAW_SKIP_LOG` (`scripts/test` sets it and
//!   prints the count and the lines at the end, since libtest hides the output of passing
//!   tests), and the function returns `false` so the test returns early.

pub mod bundle;
pub mod engines;
pub mod net;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the file skipped tests append a line to.
pub const SKIP_LOG_ENV: &str = "CLAW_SKIP_LOG";

/// What a test does when the machine lacks something its real check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipPolicy {
    /// Under CI: the test fails, naming what was missing.
    Fail,
    /// Elsewhere: the skip is printed to stderr, appended to `log` when given, and the test
    /// returns early.
    Record {
        /// The skip log (`CLAW_SKIP_LOG`), one `binary::test: reason` line per skipped test.
        log: Option<PathBuf>,
    },
}

impl SkipPolicy {
    /// The policy of this process: `CI` and `CLAW_SKIP_LOG` from the environment.
    pub fn from_env() -> Self {
        Self::from_values(
            std::env::var_os("CI").as_deref(),
            std::env::var_os(SKIP_LOG_ENV).as_deref(),
        )
    }

    /// The policy for given values of `CI` and `CLAW_SKIP_LOG` (`None`: unset).
    pub fn from_values(ci: Option<&OsStr>, skip_log: Option<&OsStr>) -> Self {
        if is_ci(ci) {
            Self::Fail
        } else {
            Self::Record {
                log: skip_log.filter(|p| !p.is_empty()).map(PathBuf::from),
            }
        }
    }

    /// Reports that `test` cannot do its real check because of `reason`. Under [`Self::Fail`]
    /// this panics; under [`Self::Record`] it records the skip and returns, and the caller
    /// returns early.
    ///
    /// # Panics
    /// Under [`Self::Fail`], and when the skip log cannot be written (a skip that is not
    /// counted would be hidden again).
    #[track_caller]
    pub fn skip(&self, test: &str, reason: &str) {
        match self {
            Self::Fail => panic!(
                "{test}: cannot run its real check: {reason} (CI is set, so a missing \
                 requirement is a failure, not a skip)"
            ),
            Self::Record { log } => {
                eprintln!("\n!!!!!!!! SKIPPED: {test}: {reason} !!!!!!!!\n");
                if let Some(log) = log {
                    // One write of one line with O_APPEND: test binaries running in parallel
                    // never interleave their lines.
                    let line = format!("{}: {reason}", qualified_test_name(test))
                        .replace(['\r', '\n'], " ")
                        + "\n";
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .and_then(|mut f| f.write_all(line.as_bytes()));
                    if let Err(e) = written {
                        panic!(
                            "{test}: skipped ({reason}), but the skip log {} could not be \
                             written: {e}",
                            log.display()
                        );
                    }
                }
            }
        }
    }

    /// `true` when `available`; otherwise applies the policy ([`Self::skip`]) and returns
    /// `false`.
    #[track_caller]
    pub fn require(&self, test: &str, available: bool, missing: &str) -> bool {
        if !available {
            self.skip(test, missing);
        }
        available
    }
}

/// The name the skip log shows: `<test binary>::<test function>`. libtest runs each test on a
/// thread named after it; `label` (what the test passed) stands in when the thread has no
/// such name.
fn qualified_test_name(label: &str) -> String {
    let current = std::thread::current();
    let name = current.name().filter(|n| *n != "main").unwrap_or(label);
    let binary = std::env::args_os()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .map(|stem| match stem.rsplit_once('-') {
            // cargo names test binaries `<target>-<16 hex digits>`.
            Some((target, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                target.to_owned()
            }
            _ => stem,
        });
    match binary {
        Some(binary) => format!("{binary}::{name}"),
        None => name.to_owned(),
    }
}

/// Whether a value of `CI` means "running under CI": set, non-empty, and not `false` or `0`
/// (any case).
pub fn is_ci(value: Option<&OsStr>) -> bool {
    match value.map(|v| v.to_string_lossy()) {
        None => false,
        Some(v) => {
            let v = v.trim();
            !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
        }
    }
}

/// Reports `test` as unable to do its real check (see [`SkipPolicy::skip`]): a panic under CI,
/// a recorded skip elsewhere.
#[track_caller]
pub fn skip(test: &str, reason: &str) {
    SkipPolicy::from_env().skip(test, reason);
}

/// `true` when `available`; otherwise [`skip`]s `test` with `missing` and returns `false`.
#[track_caller]
pub fn require(test: &str, available: bool, missing: &str) -> bool {
    SkipPolicy::from_env().require(test, available, missing)
}

/// True when running as root; otherwise the test is skipped (or fails under CI).
#[track_caller]
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc_geteuid() } == 0;
    require(test, root, "needs root")
}

/// True when /dev/kvm can be opened read-write; otherwise the test is skipped (or fails
/// under CI).
#[track_caller]
pub fn require_kvm(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    match ok {
        Ok(_) => true,
        Err(e) => require(
            test,
            false,
            &format!("needs a usable /dev/kvm (opening it read-write: {e})"),
        ),
    }
}

/// True when `tool` is on PATH; otherwise the test is skipped (or fails under CI).
#[track_caller]
pub fn require_tool(test: &str, tool: &str) -> bool {
    require(
        test,
        which(tool).is_some(),
        &format!("needs `{tool}` on PATH (scripts/install-deps installs it)"),
    )
}

/// The shared attestation samples (`shared/fixtures/attestation`, see its PROVENANCE.md): the
/// first `shared/fixtures/attestation` directory found beside the repository or beside one of
/// its ancestors (so a git worktree nested below the project directory finds them too).
/// `None` after a skip when there is none (a failure under CI).
#[track_caller]
pub fn require_attestation_fixtures(test: &str) -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = find_attestation_fixtures(&repo);
    if found.is_none() {
        skip(
            test,
            &format!(
                "needs the attestation fixtures: no shared/fixtures/attestation beside {} or \
                 an ancestor (shared/ must sit beside the repository)",
                repo.display()
            ),
        );
    }
    found
}

/// The first `<ancestor>/../shared/fixtures/attestation` (holding `index.json`) walking up from
/// `start`.
pub fn find_attestation_fixtures(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    start.ancestors().find_map(|dir| {
        let candidate = dir.parent()?.join("shared/fixtures/attestation");
        candidate.join("index.json").is_file().then_some(candidate)
    })
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
