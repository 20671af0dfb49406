//! Which cgroup hierarchies this host has, detected at run time from /proc/self/mountinfo,
//! /proc/cgroups and /proc/self/cgroup.
//!
//! Three shapes exist in the field: pure cgroup v2 (one `cgroup2` mount owning every controller —
//! most production hosts), pure v1 (one `cgroup` mount per controller or group of controllers),
//! and hybrid (v1 controller mounts *plus* a `cgroup2` mount, usually at /sys/fs/cgroup/unified,
//! that owns whatever controllers no v1 hierarchy took — on the project's machines only
//! `hugetlb`). Nothing is assumed: each hierarchy's controllers are read from the kernel, and the
//! managers use, per resource, the hierarchy that actually has the controller.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{CgroupError, Result};

/// The overall shape of the host's cgroup setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only a cgroup2 hierarchy.
    Unified,
    /// Only v1 hierarchies.
    Legacy,
    /// v1 hierarchies and a cgroup2 hierarchy side by side.
    Hybrid,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Unified => "unified (cgroup v2)",
            Mode::Legacy => "legacy (cgroup v1)",
            Mode::Hybrid => "hybrid (cgroup v1 controllers + cgroup2)",
        })
    }
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1Hierarchy {
    /// Controllers bound to it, e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The cgroup (inside the hierarchy) that the mount shows as its root; "/" unless the mount
    /// was made inside a cgroup namespace or is a bind of a sub-cgroup.
    pub mount_root: String,
    /// The cgroup this process is in, in this hierarchy.
    pub own: String,
}

impl V1Hierarchy {
    /// The key under which this hierarchy's directory is recorded ("cpu,cpuacct", "name=systemd").
    pub fn key(&self) -> String {
        self.controllers.join(",")
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The mounted cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unified {
    pub mountpoint: PathBuf,
    pub mount_root: String,
    /// Controllers the hierarchy offers at its mount root (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// This process' cgroup in the v2 hierarchy ("0::" line of /proc/self/cgroup).
    pub own: String,
}

impl Unified {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub mode: Mode,
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<Unified>,
    /// Controllers the kernel has but no hierarchy mounts (e.g. net_cls on this machine).
    pub unmounted: Vec<String>,
}

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUPS: &str = "/proc/cgroups";
const SELF_CGROUP: &str = "/proc/self/cgroup";

/// Controllers a v1 mount can carry; used when /proc/cgroups is unavailable.
const KNOWN_V1: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl Layout {
    /// Detects the layout of the running host.
    pub fn detect() -> Result<Self> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
        let mountinfo = read(MOUNTINFO)?;
        // /proc/cgroups is optional on recent kernels (CONFIG_CGROUP_V1 off): fall back.
        let proc_cgroups = std::fs::read_to_string(PROC_CGROUPS).unwrap_or_default();
        let self_cgroup = read(SELF_CGROUP)?;
        Self::from_sources(&mountinfo, &proc_cgroups, &self_cgroup, |mnt| {
            std::fs::read_to_string(mnt.join("cgroup.controllers")).map_err(|source| {
                CgroupError::Read {
                    path: mnt.join("cgroup.controllers"),
                    source,
                }
            })
        })
    }

    /// Builds the layout from the text of mountinfo, /proc/cgroups and /proc/self/cgroup; the
    /// closure reads `cgroup.controllers` of the cgroup2 mount. Separate for tests.
    pub fn from_sources(
        mountinfo: &str,
        proc_cgroups: &str,
        self_cgroup: &str,
        read_controllers: impl Fn(&Path) -> Result<String>,
    ) -> Result<Self> {
        let mut known: BTreeSet<String> = BTreeSet::new();
        let mut enabled: BTreeSet<String> = BTreeSet::new();
        for line in proc_cgroups.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [name, _hier, _num, en] = f.as_slice() {
                known.insert((*name).to_string());
                if *en == "1" {
                    enabled.insert((*name).to_string());
                }
            }
        }
        if known.is_empty() {
            known.extend(KNOWN_V1.iter().map(|s| s.to_string()));
            enabled = known.clone();
        }

        let own = parse_self_cgroup(self_cgroup);
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut unified: Option<Unified> = None;
        for m in mountinfo.lines().filter_map(crate::mountinfo::parse_line) {
            match m.fstype.as_str() {
                "cgroup2" if unified.is_none() => {
                    let own_v2 = own
                        .iter()
                        .find(|(id, _, _)| id == "0")
                        .map(|(_, _, p)| p.clone());
                    let controllers = read_controllers(&m.mountpoint)?
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    unified = Some(Unified {
                        mountpoint: m.mountpoint,
                        mount_root: m.root,
                        controllers,
                        own: own_v2.unwrap_or_else(|| "/".to_string()),
                    });
                }
                "cgroup" => {
                    let mut controllers: Vec<String> = m
                        .super_opts
                        .split(',')
                        .filter(|o| known.contains(*o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    controllers.sort();
                    if v1.iter().any(|h| h.controllers == controllers) {
                        continue; // a second mount of the same hierarchy
                    }
                    let set: BTreeSet<&str> = controllers.iter().map(String::as_str).collect();
                    let own_path = own
                        .iter()
                        .find(|(_, ctrls, _)| {
                            let s: BTreeSet<&str> = ctrls.split(',').collect();
                            s == set
                        })
                        .map(|(_, _, p)| p.clone())
                        .ok_or_else(|| CgroupError::OwnCgroup {
                            hierarchy: controllers.join(","),
                            path: PathBuf::from(SELF_CGROUP),
                        })?;
                    v1.push(V1Hierarchy {
                        controllers,
                        mountpoint: m.mountpoint,
                        mount_root: m.root,
                        own: own_path,
                    });
                }
                _ => {}
            }
        }
        let mode = match (v1.is_empty(), unified.is_some()) {
            (true, true) => Mode::Unified,
            (false, false) => Mode::Legacy,
            (false, true) => Mode::Hybrid,
            (true, false) => {
                return Err(CgroupError::NoCgroupFs {
                    mountinfo: PathBuf::from(MOUNTINFO),
                })
            }
        };
        let unmounted = enabled
            .iter()
            .filter(|c| !v1.iter().any(|h| h.has(c)) && !unified.as_ref().is_some_and(|u| u.has(c)))
            .cloned()
            .collect();
        Ok(Layout {
            mode,
            v1,
            unified,
            unmounted,
        })
    }

    /// The v1 hierarchy carrying `controller`, if one is mounted.
    pub fn v1_for(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }

    /// Where `controller` can be used: a v1 hierarchy first (that is where the kernel bound it),
    /// else the cgroup2 hierarchy when it offers it.
    pub fn has_controller(&self, controller: &str) -> bool {
        self.v1_for(controller).is_some()
            || self.unified.as_ref().is_some_and(|u| u.has(controller))
    }

    /// A human-readable summary for `nanoclaw check`: one `(label, value)` pair per line.
    pub fn report(&self) -> Vec<(String, String)> {
        let mut out = vec![("cgroup mode".to_string(), self.mode.to_string())];
        for h in &self.v1 {
            out.push((
                format!("cgroup v1 {}", h.key()),
                format!("{} (own cgroup {})", h.mountpoint.display(), h.own),
            ));
        }
        if let Some(u) = &self.unified {
            let ctrls = if u.controllers.is_empty() {
                "none".to_string()
            } else {
                u.controllers.join(" ")
            };
            out.push((
                "cgroup v2".to_string(),
                format!(
                    "{} controllers: {} (own cgroup {})",
                    u.mountpoint.display(),
                    ctrls,
                    u.own
                ),
            ));
        }
        if !self.unmounted.is_empty() {
            out.push((
                "cgroup controllers not mounted".to_string(),
                self.unmounted.join(" "),
            ));
        }
        let devices = if self.v1_for("devices").is_some() {
            "v1 devices controller"
        } else if self.unified.is_some() {
            "cgroup2 BPF device program"
        } else {
            "unavailable"
        };
        out.push(("cgroup device control".to_string(), devices.to_string()));
        out
    }
}

/// Parses /proc/self/cgroup into `(hierarchy id, controllers, path)` triples.
pub fn parse_self_cgroup(content: &str) -> Vec<(String, String, String)> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            Some((
                it.next()?.to_string(),
                it.next()?.to_string(),
                it.next()?.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t1\t1\t1
cpuacct\t2\t1\t1
memory\t4\t26\t1
net_cls\t0\t1\t1
hugetlb\t0\t1\t1
";
    const SELF: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn detects_hybrid_with_nested_memory_cgroup() {
        let l = Layout::from_sources(HYBRID_MOUNTINFO, PROC_CGROUPS, SELF, |_| {
            Ok("hugetlb\n".into())
        })
        .unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.v1.len(), 4);
        assert_eq!(l.v1_for("memory").unwrap().own, "/process_api/abc");
        assert_eq!(
            l.v1_for("name=systemd").unwrap().mountpoint,
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert!(l.unified.as_ref().unwrap().has("hugetlb"));
        assert!(l.has_controller("hugetlb"));
        assert!(!l.has_controller("pids"));
        assert_eq!(l.unmounted, vec!["net_cls".to_string()]);
    }

    #[test]
    fn detects_pure_v2() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::from_sources(mi, "", "0::/user.slice/session-1.scope\n", |_| {
            Ok("cpuset cpu io memory pids".into())
        })
        .unwrap();
        assert_eq!(l.mode, Mode::Unified);
        assert!(l.has_controller("memory"));
        assert_eq!(l.unified.unwrap().own, "/user.slice/session-1.scope");
    }

    #[test]
    fn no_cgroupfs_is_an_error() {
        let e = Layout::from_sources("1 0 0:1 / / rw - ext4 /dev/vda rw\n", "", "", |_| {
            Ok(String::new())
        });
        assert!(matches!(e, Err(CgroupError::NoCgroupFs { .. })));
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        let mi = format!("garbage\n\\\n1 2 - x\n{HYBRID_MOUNTINFO}");
        let l = Layout::from_sources(&mi, PROC_CGROUPS, SELF, |_| Ok(String::new())).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
    }
}
