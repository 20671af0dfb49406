//! Where a container's cgroup lives: `linux.cgroupsPath` resolved against the host layout.
//!
//! runc's semantics, which engines rely on:
//! - an absolute cgroupsPath is relative to the root of each hierarchy;
//! - a relative cgroupsPath is placed under the runtime's own cgroup (on v1), or under the parent
//!   of the runtime's own cgroup on cgroup2 (the runtime's own cgroup holds processes, so by the
//!   "no internal processes" rule it could not delegate controllers to a child);
//! - no cgroupsPath: the container id, as a relative path.
//!
//! The path is untrusted input: `..`, NUL and systemd-style `slice:prefix:name` are refused, so a
//! config can never name a directory outside the hierarchy it is meant for.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CgroupError, Result};
use crate::layout::Layout;

/// A parsed, checked cgroupsPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupsPath {
    pub absolute: bool,
    pub components: Vec<String>,
}

impl CgroupsPath {
    /// Parses `linux.cgroupsPath`, falling back to the container id when it is absent or empty.
    pub fn parse(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self> {
        let raw = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => {
                p.to_str().ok_or_else(|| CgroupError::BadPath {
                    path: p.display().to_string(),
                    reason: "not valid UTF-8".into(),
                })?
            }
            _ => container_id,
        };
        let bad = |reason: &str| CgroupError::BadPath {
            path: raw.to_string(),
            reason: reason.to_string(),
        };
        if raw.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        if raw.contains(':') && !raw.starts_with('/') {
            return Err(bad("systemd-style \"slice:prefix:name\" paths need the systemd cgroup driver (--systemd-cgroup)"));
        }
        let mut components = Vec::new();
        for c in Path::new(raw).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => components.push(
                    n.to_str()
                        .ok_or_else(|| bad("not valid UTF-8"))?
                        .to_string(),
                ),
                Component::ParentDir => return Err(bad("\"..\" is not allowed")),
                Component::Prefix(_) => return Err(bad("unexpected path prefix")),
            }
        }
        if components.is_empty() {
            return Err(bad(
                "names the hierarchy root; a container needs its own cgroup",
            ));
        }
        Ok(CgroupsPath {
            absolute: raw.starts_with('/'),
            components,
        })
    }

    fn join_onto(&self, base: &str) -> String {
        let mut s = if self.absolute {
            String::new()
        } else {
            base.trim_end_matches('/').to_string()
        };
        for c in &self.components {
            s.push('/');
            s.push_str(c);
        }
        s
    }
}

/// A cgroup directory in one hierarchy, with that hierarchy's mount point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HierarchyDir {
    pub mountpoint: PathBuf,
    pub dir: PathBuf,
}

/// A container's cgroup directories, resolved once at create time and persisted with the
/// container state: `delete` must find the same directories even when it runs in another cgroup
/// (a relative path depends on the caller's own cgroup).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// v1 hierarchies, keyed by their controller list ("cpu,cpuacct", "memory", "name=systemd").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, HierarchyDir>,
    /// The cgroup2 directory (pure v2, or the unified part of a hybrid host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<HierarchyDir>,
    /// Under the systemd driver: the transient unit that owns `unified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<crate::systemd::UnitSpec>,
}

impl CgroupPaths {
    /// True when no directory is recorded (a rootless container without cgroup access).
    pub fn is_empty(&self) -> bool {
        self.v1.is_empty() && self.unified.is_none()
    }

    /// Every directory, v1 first.
    pub fn dirs(&self) -> impl Iterator<Item = &HierarchyDir> {
        self.v1.values().chain(self.unified.iter())
    }

    /// The v1 directory of the hierarchy that has `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == controller))
            .map(|(_, d)| d.dir.as_path())
    }

    /// Resolves `path` against every hierarchy of `layout`.
    pub fn resolve(layout: &Layout, path: &CgroupsPath) -> Result<Self> {
        let mut out = CgroupPaths::default();
        for h in &layout.v1 {
            let cg = path.join_onto(&h.own);
            out.v1.insert(
                h.key(),
                HierarchyDir {
                    mountpoint: h.mountpoint.clone(),
                    dir: dir_for(&h.mountpoint, &h.mount_root, &cg)?,
                },
            );
        }
        if let Some(u) = &layout.unified {
            let parent = Path::new(&u.own)
                .parent()
                .and_then(Path::to_str)
                .unwrap_or("/")
                .to_string();
            let cg = path.join_onto(&parent);
            out.unified = Some(HierarchyDir {
                mountpoint: u.mountpoint.clone(),
                dir: dir_for(&u.mountpoint, &u.mount_root, &cg)?,
            });
        }
        Ok(out)
    }
}

/// Maps a cgroup path inside a hierarchy to a directory below that hierarchy's mount.
pub(crate) fn dir_for(mountpoint: &Path, mount_root: &str, cgroup: &str) -> Result<PathBuf> {
    let rel = Path::new(cgroup)
        .strip_prefix(mount_root)
        .map_err(|_| CgroupError::BadPath {
            path: cgroup.to_string(),
            reason: format!(
                "not visible through the mount of {} (which shows {mount_root})",
                mountpoint.display()
            ),
        })?;
    Ok(mountpoint.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let mi = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let own = "4:memory:/process_api/abc\n1:cpu:/\n0::/svc/runtime\n";
        Layout::from_sources(mi, "", own, |_| Ok("hugetlb".into())).unwrap()
    }

    #[test]
    fn relative_goes_under_own_cgroup() {
        let p = CgroupsPath::parse(Some(Path::new("pod/c1")), "id").unwrap();
        let r = CgroupPaths::resolve(&layout(), &p).unwrap();
        assert_eq!(
            r.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc/pod/c1")
        );
        assert_eq!(
            r.v1_dir("cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/pod/c1")
        );
        // cgroup2: under the parent of the runtime's own cgroup.
        assert_eq!(
            r.unified.unwrap().dir,
            PathBuf::from("/sys/fs/cgroup/unified/svc/pod/c1")
        );
    }

    #[test]
    fn absolute_is_from_hierarchy_root() {
        let p = CgroupsPath::parse(Some(Path::new("/machine/c1")), "id").unwrap();
        let r = CgroupPaths::resolve(&layout(), &p).unwrap();
        assert_eq!(
            r.v1_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/machine/c1")
        );
        assert_eq!(
            r.unified.unwrap().dir,
            PathBuf::from("/sys/fs/cgroup/unified/machine/c1")
        );
    }

    #[test]
    fn default_is_the_container_id() {
        let p = CgroupsPath::parse(None, "box").unwrap();
        assert_eq!(
            p,
            CgroupsPath {
                absolute: false,
                components: vec!["box".into()]
            }
        );
        let p = CgroupsPath::parse(Some(Path::new("")), "box").unwrap();
        assert_eq!(p.components, vec!["box".to_string()]);
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "/../etc",
            "a/../../b",
            "/",
            "system.slice:nanoclaw:x",
            "a\0b",
        ] {
            let e = CgroupsPath::parse(Some(Path::new(bad)), "id").unwrap_err();
            assert!(matches!(e, CgroupError::BadPath { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn path_outside_a_namespaced_mount_is_refused() {
        let mi = "32 31 0:29 /docker/x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let l = Layout::from_sources(mi, "", "1:cpu:/docker/x\n", |_| Ok(String::new())).unwrap();
        let ok = CgroupPaths::resolve(&l, &CgroupsPath::parse(Some(Path::new("c")), "id").unwrap())
            .unwrap();
        assert_eq!(ok.v1_dir("cpu").unwrap(), Path::new("/sys/fs/cgroup/cpu/c"));
        let e = CgroupPaths::resolve(
            &l,
            &CgroupsPath::parse(Some(Path::new("/other")), "id").unwrap(),
        );
        assert!(matches!(e, Err(CgroupError::BadPath { .. })));
    }
}
