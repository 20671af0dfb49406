//! cgroup v2: one directory in the unified hierarchy. The first-class path (most production
//! hosts), and on a hybrid host the part of the container's cgroup that lives in the cgroup2
//! mount (whatever controllers no v1 hierarchy took, the BPF device filter, cgroup.kill).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::error::{CgroupError, Result};
use crate::manager::{self, CgroupManager, FreezerState};
use crate::oom::OomWatcher;
use crate::path::{CgroupPaths, HierarchyDir};
use crate::stats::{self, Stats};
use crate::{bpf, devices, fs};

/// A container's cgroup on a pure cgroup v2 host.
#[derive(Debug, Clone)]
pub struct V2Manager {
    paths: CgroupPaths,
    /// The unified directory; `None` only for the empty (rootless, no cgroup) manager.
    dir: Option<HierarchyDir>,
}

impl V2Manager {
    pub fn new(paths: CgroupPaths) -> Self {
        let dir = paths.unified.clone();
        V2Manager { paths, dir }
    }

    /// The cgroup directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.dir.as_path())
    }
}

/// Creates the directory and delegates controllers down to it: every ancestor from the mount
/// root to the leaf's parent gets the controllers it has written to `cgroup.subtree_control`
/// (one by one if the batch is refused, as runc does; a controller that cannot be delegated
/// shows up later as a missing interface file, with a clear error).
pub(crate) fn create_dir(h: &HierarchyDir, delegate_all: bool) -> Result<()> {
    if !delegate_all {
        return fs::mkdir_all(&h.mountpoint, &h.dir, |_| Ok(()));
    }
    if h.dir != h.mountpoint {
        enable_controllers(&h.mountpoint)?;
    }
    fs::mkdir_all(&h.mountpoint, &h.dir, |d| {
        if d == h.dir {
            Ok(())
        } else {
            enable_controllers(d)
        }
    })
}

/// Delegates one controller from the mount root down to the parent of `h.dir` (each level's
/// `cgroup.subtree_control`). `Ok(false)` when the hierarchy does not offer it at all.
pub(crate) fn delegate(h: &HierarchyDir, controller: &str) -> Result<bool> {
    let root_has = fs::read(&h.mountpoint, "cgroup.controllers")?
        .split_whitespace()
        .any(|c| c == controller);
    if !root_has {
        return Ok(false);
    }
    let Some(parent) = h.dir.parent() else {
        return Ok(false);
    };
    let Ok(rel) = parent.strip_prefix(&h.mountpoint) else {
        return Ok(false);
    };
    let mut cur = h.mountpoint.clone();
    let mut levels = vec![cur.clone()];
    for c in rel.components() {
        cur.push(c);
        levels.push(cur.clone());
    }
    for d in levels {
        let enabled = fs::read(&d, "cgroup.subtree_control")?;
        if !enabled.split_whitespace().any(|c| c == controller) {
            fs::write(&d, "cgroup.subtree_control", format!("+{controller}"))?;
        }
    }
    Ok(true)
}

fn enable_controllers(dir: &Path) -> Result<()> {
    let available = fs::read(dir, "cgroup.controllers")?;
    let enabled = fs::read(dir, "cgroup.subtree_control")?;
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if fs::write(dir, "cgroup.subtree_control", missing.join(" ")).is_err() {
        for c in &missing {
            let _ = fs::write(dir, "cgroup.subtree_control", c);
        }
    }
    Ok(())
}

fn num_or_max(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Writes `file` when the controller's interface file exists; otherwise an error that says which
/// field needs which controller.
fn write_ctl(dir: &Path, field: &str, controller: &str, file: &str, value: &str) -> Result<()> {
    if !dir.join(file).exists() {
        return Err(CgroupError::ControllerUnavailable {
            field: field.to_string(),
            controller: controller.to_string(),
            detail: format!(
                "{} has no {file}: the controller is not delegated to this cgroup",
                dir.display()
            ),
        });
    }
    fs::write(dir, file, value)
}

/// runc's conversion of OCI memory+swap to cgroup v2's swap-only `memory.swap.max`.
pub fn swap_v2(swap: i64, limit: i64) -> std::result::Result<Option<String>, String> {
    match swap {
        -1 => Ok(Some("max".into())),
        0 => Ok(None),
        _ if limit <= 0 => Err("cgroup v2 cannot limit swap without a memory limit".into()),
        _ if swap < limit => Err(format!("memory+swap {swap} is below memory.limit {limit}")),
        _ => Ok(Some((swap - limit).to_string())),
    }
}

pub(crate) fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let f = |file: &str, v: &str| write_ctl(dir, "memory", "memory", file, v);
    if let Some(swap) = m.swap() {
        let limit = m.limit().unwrap_or(0);
        match swap_v2(swap, limit) {
            Ok(Some(v)) => {
                // Lower the limit first when swap grows into it, like the kernel needs.
                if let Some(l) = m.limit() {
                    f("memory.max", &num_or_max(l))?;
                }
                f("memory.swap.max", &v)?;
            }
            Ok(None) => {}
            Err(reason) => {
                return Err(crate::validate::ValidationError {
                    field: "memory.swap".into(),
                    reason,
                }
                .into())
            }
        }
    }
    if let Some(l) = m.limit() {
        if l != 0 {
            f("memory.max", &num_or_max(l))?;
        }
    }
    if let Some(r) = m.reservation() {
        if r != 0 {
            f("memory.low", &num_or_max(r))?;
        }
    }
    Ok(())
}

/// runc's conversion of v1 cpu.shares (2..262144) to cgroup v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

pub(crate) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    let f = |file: &str, v: &str| write_ctl(dir, "cpu", "cpu", file, v);
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        f("cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if c.quota().is_some_and(|q| q != 0) || c.period().is_some_and(|p| p != 0) {
        let quota = match c.quota() {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            None => fs::read(dir, "cpu.max")?
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_string(),
        };
        let v = match c.period().filter(|p| *p != 0) {
            Some(p) => format!("{quota} {p}"),
            None => quota,
        };
        f("cpu.max", &v)?;
    }
    if let Some(b) = c.burst() {
        f("cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        f("cpu.idle", &i.to_string())?;
    }
    Ok(())
}

pub(crate) fn set_cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write_ctl(dir, "cpu.cpus", "cpuset", "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write_ctl(dir, "cpu.mems", "cpuset", "cpuset.mems", mems)?;
    }
    Ok(())
}

pub(crate) fn set_pids(dir: &Path, limit: i64) -> Result<()> {
    let v = if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    };
    write_ctl(dir, "pids.limit", "pids", "pids.max", &v)
}

/// runc's conversion of blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

pub(crate) fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    let conv = |w: u16| {
        if bfq {
            u64::from(w)
        } else {
            blkio_to_io_weight(w)
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let v = if bfq {
            conv(w).to_string()
        } else {
            format!("default {}", conv(w))
        };
        write_ctl(dir, "blockIO.weight", "io", weight_file, &v)?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            write_ctl(
                dir,
                "blockIO.weightDevice",
                "io",
                weight_file,
                &format!("{}:{} {}", d.major(), d.minor(), conv(w)),
            )?;
        }
    }
    for (list, key) in [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ] {
        for d in list.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            write_ctl(
                dir,
                "blockIO",
                "io",
                "io.max",
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.max", l.page_size());
        write_ctl(
            dir,
            "hugepageLimits",
            "hugetlb",
            &file,
            &num_or_max(l.limit()),
        )?;
    }
    Ok(())
}

pub(crate) fn set_devices(
    dir: &Path,
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> Result<()> {
    let rules = devices::normalize(rules);
    let prog = bpf::build_program(&rules);
    let fd = bpf::load(&prog)?;
    bpf::attach_replacing(dir, &fd)
}

pub(crate) fn set_rdma(
    dir: &Path,
    r: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Result<()> {
    for (dev, l) in r {
        let mut v = dev.clone();
        if let Some(h) = l.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        write_ctl(dir, "rdma", "rdma", "rdma.max", &v)?;
    }
    Ok(())
}

/// Writes `unified` key/value pairs (validated by [`crate::validate`]: plain file names only).
pub(crate) fn set_unified(dir: &Path, u: &std::collections::HashMap<String, String>) -> Result<()> {
    for (k, v) in u {
        if k.contains('/') || k.starts_with('.') {
            return Err(crate::validate::ValidationError {
                field: format!("unified[{k:?}]"),
                reason: "not a plain file name".into(),
            }
            .into());
        }
        if !dir.join(k).exists() {
            return Err(crate::validate::ValidationError {
                field: format!("unified[{k:?}]"),
                reason: format!(
                    "{} has no interface file {k} (controller not enabled for this cgroup?)",
                    dir.display()
                ),
            }
            .into());
        }
        fs::write(dir, k, v)?;
    }
    Ok(())
}

pub(crate) fn freeze_dir(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let deadline = Instant::now() + manager::FREEZE_TIMEOUT;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    loop {
        if fs::read(dir, "cgroup.events")?
            .lines()
            .any(|l| l.trim() == want)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Timeout {
                path: dir.to_path_buf(),
                what: if frozen { "freeze" } else { "thaw" },
                millis: manager::FREEZE_TIMEOUT.as_millis() as u64,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub(crate) fn hugetlb_stats(dir: &Path, st: &mut Stats) -> Result<()> {
    for size in crate::validate::host_hugepage_sizes() {
        let Some(usage) = fs::read_u64_opt(dir, &format!("hugetlb.{size}.current"))? else {
            continue;
        };
        let max = fs::read_u64_opt(dir, &format!("hugetlb.{size}.max"))?.unwrap_or(0);
        let failcnt = fs::read_opt(dir, &format!("hugetlb.{size}.events"))?
            .and_then(|c| fs::parse_keyed(&dir.join("x"), &c).ok())
            .and_then(|p| fs::keyed(&p, "max"))
            .unwrap_or(0);
        st.hugetlb.insert(
            size,
            stats::Hugetlb {
                usage,
                max,
                failcnt,
            },
        );
    }
    Ok(())
}

impl CgroupManager for V2Manager {
    fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    fn create(&self) -> Result<()> {
        match &self.dir {
            Some(h) => create_dir(h, true),
            None => Ok(()),
        }
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        match self.dir() {
            Some(d) => fs::write(d, "cgroup.procs", pid.to_string()),
            None => Ok(()),
        }
    }

    fn clone_into_cgroup(&self) -> Option<std::os::fd::OwnedFd> {
        // Any failure here only means the slower placement by add_process, which then reports
        // the real error with its path.
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(self.dir()?)
            .ok()
            .map(std::os::fd::OwnedFd::from)
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        let Some(dir) = self.dir() else { return Ok(()) };
        if let Some(m) = r.memory() {
            set_memory(dir, m)?;
        }
        if let Some(c) = r.cpu() {
            set_cpu(dir, c)?;
            set_cpuset(dir, c)?;
        }
        if let Some(p) = r.pids() {
            set_pids(dir, p.limit())?;
        }
        if let Some(b) = r.block_io() {
            set_io(dir, b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            set_hugetlb(dir, h)?;
        }
        if let Some(d) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            set_devices(dir, d)?;
        }
        if let Some(rd) = r.rdma() {
            set_rdma(dir, rd)?;
        }
        if let Some(u) = r.unified() {
            set_unified(dir, u)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        self.dir().map_or(Ok(()), |d| freeze_dir(d, true))
    }

    fn thaw(&self) -> Result<()> {
        self.dir().map_or(Ok(()), |d| freeze_dir(d, false))
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        let Some(d) = self.dir() else {
            return Ok(FreezerState::Thawed);
        };
        let frozen = fs::read_opt(d, "cgroup.freeze")?.is_some_and(|s| s.trim() == "1");
        Ok(if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        })
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(d) = self.dir() {
            manager::procs_recursive(d, &mut out)?;
        }
        Ok(out)
    }

    fn kill_all(&self) -> Result<()> {
        let Some(d) = self.dir() else { return Ok(()) };
        kill_dir(d)
    }

    fn stats(&self) -> Result<Stats> {
        let mut st = Stats::default();
        let Some(d) = self.dir() else { return Ok(st) };
        if let Some(c) = fs::read_opt(d, "cpu.stat")? {
            let p = fs::parse_keyed(&d.join("cpu.stat"), &c)?;
            let us = |k| fs::keyed(&p, k).unwrap_or(0).saturating_mul(1000);
            st.cpu.usage.total = us("usage_usec");
            st.cpu.usage.user = us("user_usec");
            st.cpu.usage.kernel = us("system_usec");
            st.cpu.throttling.periods = fs::keyed(&p, "nr_periods").unwrap_or(0);
            st.cpu.throttling.throttled_periods = fs::keyed(&p, "nr_throttled").unwrap_or(0);
            st.cpu.throttling.throttled_time = us("throttled_usec");
        }
        if let Some(u) = fs::read_u64_opt(d, "memory.current")? {
            st.memory.usage.usage = u;
            st.memory.usage.limit = fs::read_u64_opt(d, "memory.max")?.unwrap_or(u64::MAX);
            st.memory.usage.max = fs::read_u64_opt(d, "memory.peak")?.unwrap_or(0);
            if let Some(s) = fs::read_u64_opt(d, "memory.swap.current")? {
                st.memory.swap.usage = s.saturating_add(u);
                st.memory.swap.limit = fs::read_u64_opt(d, "memory.swap.max")?.unwrap_or(u64::MAX);
            }
            if let Some(c) = fs::read_opt(d, "memory.stat")? {
                st.memory.raw = fs::parse_keyed(&d.join("memory.stat"), &c)?
                    .into_iter()
                    .collect();
                st.memory.cache = st.memory.raw.get("file").copied().unwrap_or(0);
            }
            if let Some(c) = fs::read_opt(d, "memory.events")? {
                let p = fs::parse_keyed(&d.join("memory.events"), &c)?;
                st.memory.oom_kill = fs::keyed(&p, "oom_kill").unwrap_or(0);
                st.memory.usage.failcnt = fs::keyed(&p, "max").unwrap_or(0);
            }
        }
        if let Some(c) = fs::read_u64_opt(d, "pids.current")? {
            st.pids.current = c;
            st.pids.limit = fs::read_u64_opt(d, "pids.max")?
                .filter(|m| *m != u64::MAX)
                .unwrap_or(0);
        }
        if let Some(c) = fs::read_opt(d, "io.stat")? {
            st.blkio = stats::parse_io_stat(&c);
        }
        hugetlb_stats(d, &mut st)?;
        Ok(st)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        let Some(d) = self.dir() else { return Ok(0) };
        Ok(fs::keyed(&fs::read_keyed(d, "memory.events")?, "oom_kill").unwrap_or(0))
    }

    fn oom_watcher(&self) -> Result<OomWatcher> {
        match self.dir() {
            Some(d) => OomWatcher::v2(d),
            None => Ok(OomWatcher::none()),
        }
    }

    fn destroy(&self) -> Result<()> {
        match self.dir() {
            Some(d) => manager::remove_tree(d, Instant::now() + manager::EMPTY_TIMEOUT),
            None => Ok(()),
        }
    }
}

/// Kills every process below `dir`: `cgroup.kill` where the kernel has it (5.14+; race-free
/// against forks), else freeze, SIGKILL each, thaw, until empty.
pub(crate) fn kill_dir(d: &Path) -> Result<()> {
    let deadline = Instant::now() + manager::EMPTY_TIMEOUT;
    if !d.exists() {
        return Ok(());
    }
    let mut pids = Vec::new();
    manager::procs_recursive(d, &mut pids)?;
    if pids.is_empty() {
        return Ok(());
    }
    if d.join("cgroup.kill").exists() {
        fs::write(d, "cgroup.kill", "1")?;
        return manager::wait_empty(d, deadline);
    }
    loop {
        let frozen = freeze_dir(d, true).is_ok();
        let mut pids = Vec::new();
        manager::procs_recursive(d, &mut pids)?;
        signal(&pids)?;
        if frozen {
            freeze_dir(d, false)?;
        }
        if pids.is_empty()
            || manager::wait_empty(d, Instant::now() + std::time::Duration::from_millis(100))
                .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return manager::wait_empty(d, deadline);
        }
    }
}

/// SIGKILLs each pid; one that is already gone is fine.
pub(crate) fn signal(pids: &[i32]) -> Result<()> {
    for &pid in pids {
        let Some(p) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        match rustix::process::kill_process(p, rustix::process::Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                return Err(CgroupError::Signal {
                    pid,
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}

/// The unified directory of a manager, for callers that need the raw path (tests, `check`).
pub fn unified_dir(paths: &CgroupPaths) -> Option<PathBuf> {
    paths.unified.as_ref().map(|h| h.dir.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(swap_v2(-1, 100).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_v2(300, 100).unwrap().as_deref(), Some("200"));
        assert_eq!(swap_v2(0, 100).unwrap(), None);
        assert!(swap_v2(50, 100).is_err());
        assert!(swap_v2(50, -1).is_err());
    }

    /// The fd for CLONE_INTO_CGROUP is the container's own directory; no directory (rootless
    /// without cgroup access, or one that is gone) and the v1/hybrid layout give none, so the
    /// runtime places the init with add_process instead.
    #[test]
    fn clone_into_cgroup_is_the_unified_directory_only() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let with = |dir: &Path| CgroupPaths {
            v1: Default::default(),
            unified: Some(HierarchyDir {
                mountpoint: t.path().to_path_buf(),
                dir: dir.to_path_buf(),
            }),
            systemd: None,
        };
        let fd = V2Manager::new(with(&dir)).clone_into_cgroup().unwrap();
        let opened = std::fs::File::from(fd).metadata().unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((opened.dev(), opened.ino()), (meta.dev(), meta.ino()));
        assert!(V2Manager::new(with(&t.path().join("gone")))
            .clone_into_cgroup()
            .is_none());
        assert!(V2Manager::new(CgroupPaths::default())
            .clone_into_cgroup()
            .is_none());
        let mut hybrid = with(&dir);
        hybrid.v1.insert(
            "memory".into(),
            HierarchyDir {
                mountpoint: t.path().to_path_buf(),
                dir: dir.clone(),
            },
        );
        assert!(manager::open(hybrid).clone_into_cgroup().is_none());
    }

    /// A fake cgroup2 directory (regular files) shows exactly what would be written.
    #[test]
    fn writes_v2_interface_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for f in [
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "pids.max",
            "io.weight",
            "io.max",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::write(d.join("cpu.max"), "max 100000\n").unwrap();
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":33554432,"swap":67108864,"reservation":1048576},
                "cpu":{"shares":1024,"quota":20000,"period":100000,"burst":1000},
                "pids":{"limit":8},
                "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":254,"minor":0,"rate":1048576}]}}"#,
        )
        .unwrap();
        let m = V2Manager::new(CgroupPaths {
            v1: Default::default(),
            unified: Some(HierarchyDir {
                mountpoint: d.to_path_buf(),
                dir: d.to_path_buf(),
            }),
            systemd: None,
        });
        m.set(&r).unwrap();
        let rd = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(rd("memory.max"), "33554432");
        assert_eq!(rd("memory.swap.max"), "33554432");
        assert_eq!(rd("memory.low"), "1048576");
        assert_eq!(rd("cpu.weight"), "39");
        assert_eq!(rd("cpu.max"), "20000 100000");
        assert_eq!(rd("cpu.max.burst"), "1000");
        assert_eq!(rd("pids.max"), "8");
        assert_eq!(
            rd("io.weight"),
            format!("default {}", blkio_to_io_weight(500))
        );
        assert_eq!(rd("io.max"), "254:0 rbps=1048576");
        // An update of the period alone keeps the quota.
        let r: LinuxResources = serde_json::from_str(r#"{"cpu":{"period":50000}}"#).unwrap();
        m.set(&r).unwrap();
        assert_eq!(rd("cpu.max"), "20000 50000");
        // A controller that is not delegated: clear error naming the field.
        let r: LinuxResources = serde_json::from_str(r#"{"cpu":{"idle":1}}"#).unwrap();
        let e = m.set(&r).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.cpu") && e.contains("cpu.idle"),
            "{e}"
        );
    }
}
