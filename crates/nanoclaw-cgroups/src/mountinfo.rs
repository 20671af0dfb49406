//! `/proc/<pid>/mountinfo` lines (proc(5)): the one parser of the workspace, used for the cgroup
//! layout here and for the container's mounts in nanoclaw. Never panics: a line without the
//! documented shape is `None`.
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! id pa mm   root  mountpoint opts  optional.. - fstype source super-options
//! ```

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The fields of one mountinfo line that the runtime reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Field 4: the directory of the filesystem that forms this mount's root (text: cgroup
    /// paths are compared as strings).
    pub root: String,
    /// Field 5: where it is mounted, as this process sees it.
    pub mountpoint: PathBuf,
    /// The filesystem type after the ` - ` separator (`cgroup2`, `tmpfs`, ...).
    pub fstype: String,
    /// The per-superblock options (for a v1 cgroup hierarchy: its controllers).
    pub super_opts: String,
}

/// Parses one line.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (pre, post) = line.split_once(" - ")?;
    let mut pre = pre.split(' ').skip(3);
    let root = unescape(pre.next()?).to_string_lossy().into_owned();
    let mountpoint = unescape(pre.next()?);
    let mut post = post.split(' ');
    let fstype = post.next()?.to_string();
    let _source = post.next()?;
    let super_opts = post.next().unwrap_or("").to_string();
    Some(MountInfo {
        root,
        mountpoint,
        fstype,
        super_opts,
    })
}

/// Every well-formed line of `/proc/self/mountinfo`.
pub fn read_self() -> std::io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// Undoes the octal escapes of space, tab, newline and backslash (`\040`), byte for byte: a
/// path that is not UTF-8 stays the same path.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| c == b'\\' && d.iter().all(|x| (b'0'..=b'7').contains(x)))
            .map(|d| d.iter().fold(0u32, |a, x| a * 8 + u32::from(x - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/a\\04"), PathBuf::from("/a\\04"));
        assert_eq!(unescape("\\777x"), PathBuf::from("\\777x"));
        assert_eq!(
            unescape("/\\377"),
            PathBuf::from(OsString::from_vec(vec![b'/', 0xff]))
        );
    }

    #[test]
    fn fields_with_optional_fields_and_escapes() {
        let m = parse_line(
            "36 35 98:0 /sub /mnt/a\\040b rw,noatime shared:1 master:2 - cgroup cgroup rw,cpu,cpuacct",
        )
        .unwrap();
        assert_eq!(m.root, "/sub");
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/a b"));
        assert_eq!(m.fstype, "cgroup");
        assert_eq!(m.super_opts, "rw,cpu,cpuacct");
        for bad in ["", "garbage", "1 2 - x", "1 2 3 / - ext4 src rw"] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_sees_its_root() {
        assert!(read_self()
            .unwrap()
            .iter()
            .any(|m| m.mountpoint == std::path::Path::new("/")));
    }
}
