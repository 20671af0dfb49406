//! Reading and writing cgroupfs interface files. Every error names the file and the value, so the
//! caller never has to guess which limit the kernel refused.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Result};

/// Writes `value` to `dir/file` in one write(2), as the kernel expects for cgroupfs files.
pub fn write(dir: &Path, file: &str, value: impl AsRef<str>) -> Result<()> {
    let path = dir.join(file);
    let value = value.as_ref();
    write_path(&path, value)
}

/// Writes `value` to `path` (see [`write()`]).
pub fn write_path(path: &Path, value: &str) -> Result<()> {
    let res = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads `dir/file` as a string.
pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Reads `dir/file` if it exists; `Ok(None)` when the kernel does not offer that file.
pub fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Reads a single unsigned number; "max" reads as `u64::MAX`.
pub fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let content = read(dir, file)?;
    parse_u64(&dir.join(file), content.trim())
}

/// Like [`read_u64`] but missing files read as `None`.
pub fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    match read_opt(dir, file)? {
        Some(c) => parse_u64(&dir.join(file), c.trim()).map(Some),
        None => Ok(None),
    }
}

pub fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse::<u64>().map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        content: s.to_string(),
        reason: e.to_string(),
    })
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...) into pairs. Lines that do
/// not have that shape are skipped; values that are not numbers are an error naming the file.
pub fn read_keyed(dir: &Path, file: &str) -> Result<Vec<(String, u64)>> {
    let path = dir.join(file);
    let content = read(dir, file)?;
    parse_keyed(&path, &content)
}

pub fn parse_keyed(path: &Path, content: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for line in content.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        out.push((k.to_string(), parse_u64(path, v)?));
    }
    Ok(out)
}

/// Looks up `key` in the output of [`read_keyed`].
pub fn keyed(pairs: &[(String, u64)], key: &str) -> Option<u64> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// The pids listed in `dir/cgroup.procs`. A cgroup that is gone has none: `ENOENT` when it was
/// removed before the open, `ENODEV` when it was removed between the open and the read (systemd
/// removes a transient scope as soon as its last process exits).
pub fn procs(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    let content = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::Read { path, source }),
    };
    content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<i32>().map_err(|e| CgroupError::Parse {
                path: path.clone(),
                content: l.to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Creates `path` and every missing ancestor below `root` (which must exist), calling `init` on
/// each directory this call created, parent first (cpuset needs its parent's cpus/mems copied in).
pub fn mkdir_all(
    root: &Path,
    path: &Path,
    mut init: impl FnMut(&Path) -> Result<()>,
) -> Result<()> {
    let rel = path.strip_prefix(root).map_err(|_| CgroupError::BadPath {
        path: path.display().to_string(),
        reason: format!("not below hierarchy mount {}", root.display()),
    })?;
    let mut cur = PathBuf::from(root);
    for comp in rel.components() {
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => init(&cur)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => init(&cur)?,
            Err(source) => return Err(CgroupError::Mkdir { path: cur, source }),
        }
    }
    Ok(())
}
