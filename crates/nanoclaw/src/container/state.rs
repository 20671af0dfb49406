//! Per-container state under `--root`: `<root>/<id>/` holds `state.json` (the OCI state plus
//! what the runtime needs to find the init again) and `exec.fifo` while the container is
//! `created`. Every command on a container holds an exclusive `flock` on the directory, so
//! commands on one container are serialized.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// The bundle's config.json as validated at create; `exec` plans from it (as runc does).
pub const CONFIG_SNAPSHOT: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },
    #[error("container with given ID already exists: {id:?} (state dir {dir})")]
    Exists { id: String, dir: PathBuf },
    #[error("container does not exist: {id:?} (no state dir under {root})")]
    NotFound { id: String, root: PathBuf },
    #[error("state of container {id:?}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state of container {id:?}: {path}: corrupt state file: {source}")]
    Corrupt {
        id: String,
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// OCI runtime-spec container status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

/// The OCI state (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`) plus the
/// runtime's private fields (prefixed so they cannot clash with future OCI fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    /// Start time of the init (field 22 of `/proc/<pid>/stat`), to tell our init from a
    /// process that reused its pid.
    #[serde(rename = "nanoclawInitStartTime", default)]
    pub init_start_time: u64,
    #[serde(rename = "nanoclawRootless", default)]
    pub rootless: bool,
    /// Host path of the root filesystem (runc's `state` shows it as `rootfs`).
    #[serde(rename = "nanoclawRootfs", default)]
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 UTC with nanoseconds (runc's `created`).
    #[serde(rename = "nanoclawCreated", default)]
    pub created: String,
    /// `--no-new-keyring` at create: exec'd processes keep the caller's session keyring too.
    #[serde(rename = "nanoclawNoNewKeyring", default)]
    pub no_new_keyring: bool,
}

/// Checks a container id like runc does: non-empty, at most 1024 bytes, `[A-Za-z0-9_+.-]`,
/// not `.` or `..` (the id becomes a directory name under --root).
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let bad = |why| {
        Err(StateError::InvalidId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("`.` and `..` are not ids");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(&b))
    {
        return bad("only A-Z a-z 0-9 _ + . - are allowed");
    }
    Ok(())
}

/// Writes `<dir>/<name>` as a 0600 file, atomically: a temp file opened `O_NOFOLLOW`, then
/// renamed. Every record of a state dir (state, config snapshot, hooks, cgroup) goes
/// through here. The error names the path it was about.
pub fn write_private_record(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), (PathBuf, std::io::Error)> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| (tmp.clone(), e))?;
    f.write_all(bytes).map_err(|e| (tmp.clone(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| (path.clone(), e))
}

/// `dir` must be a real directory (not a symlink) owned by the runtime's euid (or root) and
/// writable by nobody else.
fn check_trusted_dir(id: &str, dir: &Path) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        id: id.to_string(),
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    let euid = nix::unistd::geteuid().as_raw();
    let why = if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if meta.uid() != euid && meta.uid() != 0 {
        Some(format!(
            "is not a directory owned by uid {euid} (owner {})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by group or others (mode {:o}): state there could be forged",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("--root {why}"),
        ))),
        None => Ok(()),
    }
}

/// A locked container state directory. The lock is released on drop.
#[derive(Debug)]
pub struct StateDir {
    id: String,
    dir: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Creates `<root>/<id>` (refusing an existing id) and locks it.
    pub fn create(root: &Path, id: &str) -> Result<Self, StateError> {
        validate_id(id)?;
        let io = |path: &Path, source| StateError::Io {
            id: id.to_string(),
            path: path.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| io(root, e))?;
        // The default rootless --root may be under a shared /tmp: refuse a root directory
        // someone else owns (or a symlink to one) instead of writing state into it.
        check_trusted_dir(id, root)?;
        let dir = root.join(id);
        // 0700: the records (hook environments, the config) are the container owner's only.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists {
                    id: id.to_string(),
                    dir,
                })
            }
            Err(e) => return Err(io(&dir, e)),
        }
        match Self::lock(id, &dir) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Opens and locks the state directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Self, StateError> {
        validate_id(id)?;
        let dir = root.join(id);
        if !dir.is_dir() {
            return Err(StateError::NotFound {
                id: id.to_string(),
                root: root.to_path_buf(),
            });
        }
        // What exec and delete act on comes from these records: they must be the runtime
        // user's alone, or another user could swap in a forged state, config or cgroup record.
        check_trusted_dir(id, root)?;
        check_trusted_dir(id, &dir)?;
        Self::lock(id, &dir)
    }

    fn lock(id: &str, dir: &Path) -> Result<Self, StateError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|source| StateError::Io {
                id: id.to_string(),
                path: dir.to_path_buf(),
                source,
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
            id: id.to_string(),
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Self {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn exec_fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    pub fn config_snapshot(&self) -> PathBuf {
        self.dir.join(CONFIG_SNAPSHOT)
    }

    /// Writes a private (0600) record file atomically (see [`write_private_record`]).
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        write_private_record(&self.dir, name, bytes).map_err(|(path, source)| StateError::Io {
            id: self.id.clone(),
            path,
            source,
        })
    }

    /// Atomically replaces state.json (write to a temp file, fsync-free rename: the state dir
    /// lives on tmpfs /run and is rebuilt after a reboot anyway).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StateError::Corrupt {
            id: self.id.clone(),
            path: self.dir.join(STATE_FILE),
            source: e,
        })?;
        self.write_private(STATE_FILE, &bytes)
    }

    pub fn load(&self) -> Result<State, StateError> {
        let path = self.dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|source| StateError::Io {
            id: self.id.clone(),
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            id: self.id.clone(),
            path,
            source,
        })
    }

    /// Removes the state directory (and with it the lock file descriptor's directory).
    pub fn remove(self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| StateError::Io {
            id: self.id.clone(),
            path: self.dir.clone(),
            source,
        })
    }
}

/// Writes `--pid-file` as a bare decimal, atomically: a fresh temp file in the same directory,
/// created `O_EXCL | O_NOFOLLOW` relative to the directory's fd, then renamed over the target.
/// The directory may belong to someone else (a user-owned path given to a root runtime): a
/// symlink or file planted under the temp name is never followed or truncated.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), PidFileError> {
    write_pid_file_at(path, pid).map_err(|source| PidFileError {
        path: path.to_path_buf(),
        source,
    })
}

/// `--pid-file` could not be written.
#[derive(Debug, thiserror::Error)]
#[error("--pid-file {path:?}: {source}")]
pub struct PidFileError {
    path: PathBuf,
    source: std::io::Error,
}

fn write_pid_file_at(path: &Path, pid: i32) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let abs = std::path::absolute(path)?;
    let dir = abs.parent().unwrap_or(Path::new("/"));
    let name = abs.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "--pid-file names no file")
    })?;
    let dir_fd = nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut attempt = 0u32;
    let (tmp, fd) = loop {
        let tmp = format!(
            ".{}.{}.{attempt}.nanoclaw-tmp",
            name.to_string_lossy(),
            std::process::id()
        );
        match nix::fcntl::openat(
            &dir_fd,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => break (tmp, fd),
            Err(nix::Error::EEXIST) if attempt < 100 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let written = File::from(fd)
        .write_all(pid.to_string().as_bytes())
        .and_then(|()| {
            nix::fcntl::renameat(&dir_fd, tmp.as_str(), &dir_fd, name).map_err(Into::into)
        });
    if written.is_err() {
        let _ = nix::unistd::unlinkat(
            &dir_fd,
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}

/// The fields of `/proc/<pid>/stat` the runtime needs to recognise its init again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z (zombie), X (dead), ...
    pub state: char,
    /// Field 22: start time in clock ticks since boot; with the pid it names one process
    /// across pid reuse.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses the text of `/proc/<pid>/stat`; None when it does not have that shape. comm
    /// (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
    pub fn parse(text: &str) -> Option<Self> {
        let after = text.get(text.rfind(')')? + 1..)?;
        let mut fields = after.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Fields 4..=21 lie between the state and the start time.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcStat { state, start_time })
    }

    /// Reads `/proc/<pid>/stat`; None if the process is gone.
    pub fn read(pid: i32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// A zombie or dead process: its pid still shows in /proc, but it runs nothing.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Start time (clock ticks since boot) of `pid`; None if the process is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    ProcStat::read(pid).map(|s| s.start_time)
}

/// True when `pid` is alive, not a zombie, and is the process recorded with `start_time`.
pub fn init_alive(pid: i32, start_time: u64) -> bool {
    ProcStat::read(pid).is_some_and(|s| !s.is_dead() && s.start_time == start_time)
}

/// Default --root: /run/nanoclaw for root; for rootless, $XDG_RUNTIME_DIR/nanoclaw or
/// `/tmp/nanoclaw-<uid>` (like runc).
pub fn default_root(euid: u32) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/nanoclaw");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("nanoclaw"),
        _ => PathBuf::from(format!("/tmp/nanoclaw-{euid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory someone else controls: symlinks planted under the target name and under
    /// the temp names this process would try first must not be followed.
    #[test]
    fn proc_stat_counts_fields_after_the_last_parenthesis() {
        // comm "a) b (c" holds spaces and both parentheses.
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987_654
            })
        );
        let zombie = ProcStat::parse("7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5").unwrap();
        assert!(zombie.is_dead());
        for bad in [
            "",
            "42 (x",
            "42 (x) S 1 2",
            "42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -3",
        ] {
            assert_eq!(ProcStat::parse(bad), None, "{bad:?}");
        }
        let me = ProcStat::read(std::process::id() as i32).unwrap();
        assert!(!me.is_dead());
        assert_eq!(
            process_start_time(std::process::id() as i32),
            Some(me.start_time)
        );
    }

    #[test]
    fn pid_file_is_bare_decimal() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pid");
        write_pid_file(&f, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "4242");
    }

    #[test]
    fn pid_file_never_follows_planted_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        for attempt in 0..3 {
            let planted = dir.path().join(format!(
                ".x.pid.{}.{attempt}.nanoclaw-tmp",
                std::process::id()
            ));
            std::os::unix::fs::symlink(&victim, planted).unwrap();
        }
        std::os::unix::fs::symlink(&victim, dir.path().join("x.pid")).unwrap();
        write_pid_file(&dir.path().join("x.pid"), 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(dir.path().join("x.pid")).unwrap();
        assert!(meta.is_file(), "the symlink was replaced by a file");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.pid")).unwrap(),
            "4242"
        );
    }

    #[test]
    fn state_root_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateDir::create(dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        assert!(!dir.path().join("x").exists());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let made = StateDir::create(dir.path(), "x").unwrap();
        drop(made);
        std::fs::set_permissions(dir.path().join("x"), std::fs::Permissions::from_mode(0o757))
            .unwrap();
        let e = StateDir::open(dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
    }
}
