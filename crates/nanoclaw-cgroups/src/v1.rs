//! cgroup v1: one directory per mounted hierarchy. On a hybrid host the cgroup2 directory of the
//! container is managed here too: it receives the container's processes, the limits of whatever
//! controller only the cgroup2 hierarchy has (hugetlb on the project's machines), `unified`
//! keys, and — when no v1 devices hierarchy exists — the BPF device filter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::error::{CgroupError, Result};
use crate::manager::{self, CgroupManager, FreezerState};
use crate::oom::OomWatcher;
use crate::path::CgroupPaths;
use crate::stats::{self, MemoryEntry, Stats};
use crate::{devices, fs, v2};

/// A container's cgroup on a v1 (or hybrid) host.
#[derive(Debug, Clone)]
pub struct V1Manager {
    paths: CgroupPaths,
}

impl V1Manager {
    pub fn new(paths: CgroupPaths) -> Self {
        V1Manager { paths }
    }

    /// The directory in the v1 hierarchy that has `controller`.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.paths.v1_dir(controller)
    }

    fn unified(&self) -> Option<&Path> {
        self.paths.unified.as_ref().map(|h| h.dir.as_path())
    }

    /// The unified directory when its cgroup offers `controller` (delegated by create()).
    fn unified_with(&self, controller: &str) -> Option<&Path> {
        let d = self.unified()?;
        let ctrls = fs::read_opt(d, "cgroup.controllers").ok().flatten()?;
        ctrls
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(d)
    }

    /// For `set`: when no v1 hierarchy has the controller (`v1`), delegates `v2` down to the
    /// container's cgroup2 directory — only now, when a limit needs it, so a hybrid host's
    /// cgroup2 hierarchy is left as it was otherwise (a controller enabled there can no longer be
    /// moved to a v1 mount) — and returns that directory.
    fn delegated(&self, v1: &str, v2: &str) -> Result<Option<&Path>> {
        if self.dir(v1).is_some() {
            return Ok(None);
        }
        match &self.paths.unified {
            Some(h) if v2::delegate(h, v2)? => Ok(self.unified_with(v2)),
            _ => Ok(None),
        }
    }

    fn unavailable(field: &str, controller: &str) -> CgroupError {
        CgroupError::ControllerUnavailable {
            field: field.to_string(),
            controller: controller.to_string(),
            detail: "neither a v1 hierarchy nor the container's cgroup2 directory has it"
                .to_string(),
        }
    }

    /// The directory used to enumerate and signal processes.
    fn procs_dir(&self) -> Option<&Path> {
        ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.paths.v1.values().next().map(|h| h.dir.as_path()))
    }

    fn unique_dirs(&self) -> Vec<&crate::path::HierarchyDir> {
        let mut seen = BTreeSet::new();
        self.paths
            .v1
            .values()
            .filter(|h| seen.insert(h.dir.clone()))
            .collect()
    }
}

/// A new cpuset cgroup starts with empty cpus/mems, so no task could join it: copy the parent's
/// (for each level, parent first, as runc does).
fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read(dir, file)?.trim().is_empty() {
            let v = fs::read(parent, file)?;
            fs::write(dir, file, v.trim())?;
        }
    }
    Ok(())
}

fn write_num(dir: &Path, file: &str, v: i64) -> Result<()> {
    fs::write(dir, file, v.to_string())
}

/// runc's ordering: when both memory and memory+swap change, raise memsw first if the new
/// limits would otherwise cross (the kernel keeps memory <= memsw at every step).
fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    let mut swap = m.swap().unwrap_or(0);
    let limit = m.limit().unwrap_or(0);
    if limit == -1 && swap == 0 && has_memsw {
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        return Err(CgroupError::ControllerUnavailable {
            field: "memory.swap".into(),
            controller: "memory (swap accounting)".into(),
            detail: format!(
                "{} has no memory.memsw.limit_in_bytes (boot with swapaccount=1)",
                dir.display()
            ),
        });
    }
    let set_limit = |v: i64| write_num(dir, "memory.limit_in_bytes", v).map_err(busy_hint);
    let set_swap = |v: i64| write_num(dir, "memory.memsw.limit_in_bytes", v).map_err(busy_hint);
    if limit != 0 && swap != 0 {
        let cur = fs::read_u64(dir, "memory.limit_in_bytes")?;
        if swap == -1 || cur < swap.unsigned_abs() {
            set_swap(swap)?;
            set_limit(limit)?;
        } else {
            set_limit(limit)?;
            set_swap(swap)?;
        }
    } else if limit != 0 {
        set_limit(limit)?;
    } else if swap != 0 {
        set_swap(swap)?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        write_num(dir, "memory.soft_limit_in_bytes", r)?;
    }
    if let Some(k) = m.kernel_tcp().filter(|k| *k != 0) {
        write_num(dir, "memory.kmem.tcp.limit_in_bytes", k)?;
    }
    if let Some(s) = m.swappiness() {
        fs::write(dir, "memory.swappiness", s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// EBUSY on a memory limit means the cgroup already uses more; EINVAL that memory+swap is
/// lower than the new limit. Say so.
fn busy_hint(e: CgroupError) -> CgroupError {
    match e {
        CgroupError::Write {
            path,
            value,
            source,
        } if source.raw_os_error() == Some(libc::EBUSY) => CgroupError::Write {
            path,
            value,
            source: std::io::Error::new(
                source.kind(),
                "the cgroup's current usage is above the new limit",
            ),
        },
        CgroupError::Write {
            path,
            value,
            source,
        } if source.raw_os_error() == Some(libc::EINVAL)
            && path.ends_with("memory.limit_in_bytes") =>
        {
            CgroupError::Write {
                path,
                value,
                source: std::io::Error::new(
                    source.kind(),
                    "the memory+swap limit (memory.memsw.limit_in_bytes) is below this value; \
                     raise memory.swap (--memory-swap) together with the limit",
                ),
            }
        }
        e => e,
    }
}

fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        fs::write(dir, "cpu.shares", s.to_string())?;
        let got = fs::read_u64(dir, "cpu.shares")?;
        if got != s {
            return Err(crate::validate::ValidationError {
                field: "cpu.shares".into(),
                reason: format!("the kernel clamped {s} to {got}"),
            }
            .into());
        }
    }
    if let Some(p) = c.period().filter(|p| *p != 0) {
        fs::write(dir, "cpu.cfs_period_us", p.to_string())?;
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        write_num(dir, "cpu.cfs_quota_us", if q < 0 { -1 } else { q })?;
    }
    if let Some(b) = c.burst() {
        fs::write(dir, "cpu.cfs_burst_us", b.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fs::write(dir, "cpu.rt_period_us", p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        write_num(dir, "cpu.rt_runtime_us", r)?;
    }
    if let Some(i) = c.idle() {
        write_num(dir, "cpu.idle", i)?;
    }
    Ok(())
}

fn set_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight.
    let prefix = if dir.join("blkio.weight").exists() {
        "blkio"
    } else {
        "blkio.bfq"
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fs::write(dir, &format!("{prefix}.weight"), w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        if !dir.join("blkio.leaf_weight").exists() {
            return Err(CgroupError::ControllerUnavailable {
                field: "blockIO.leafWeight".into(),
                controller: "blkio (CFQ)".into(),
                detail: "this kernel has no blkio.leaf_weight".into(),
            });
        }
        fs::write(dir, "blkio.leaf_weight", w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            fs::write(
                dir,
                &format!("{prefix}.weight_device"),
                format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    for (list, file) in [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ] {
        for d in list.iter().flatten() {
            fs::write(
                dir,
                file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

fn freeze_v1(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + manager::FREEZE_TIMEOUT;
    let mut rewrite_in = 0u32;
    loop {
        // Re-writing helps a freeze that raced with a fork (runc does the same).
        if rewrite_in == 0 {
            fs::write(dir, "freezer.state", want)?;
            rewrite_in = 10;
        }
        rewrite_in -= 1;
        if fs::read(dir, "freezer.state")?.trim() == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                let _ = fs::write(dir, "freezer.state", "THAWED");
            }
            return Err(CgroupError::Timeout {
                path: dir.to_path_buf(),
                what: if frozen { "freeze" } else { "thaw" },
                millis: manager::FREEZE_TIMEOUT.as_millis() as u64,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    let r = |s: &str| fs::read_u64_opt(dir, &format!("{prefix}.{s}"));
    Ok(MemoryEntry {
        usage: r("usage_in_bytes")?.unwrap_or(0),
        max: r("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: r("failcnt")?.unwrap_or(0),
        limit: r("limit_in_bytes")?.unwrap_or(0),
    })
}

fn percpu(dir: &Path, file: &str) -> Result<Vec<u64>> {
    let Some(c) = fs::read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    c.split_whitespace()
        .map(|v| fs::parse_u64(&dir.join(file), v))
        .collect()
}

impl CgroupManager for V1Manager {
    fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    fn create(&self) -> Result<()> {
        for h in self.unique_dirs() {
            let cpuset = self
                .paths
                .v1
                .iter()
                .any(|(k, v)| v.dir == h.dir && k.split(',').any(|c| c == "cpuset"));
            fs::mkdir_all(&h.mountpoint, &h.dir, |d| {
                if cpuset {
                    init_cpuset(d)
                } else {
                    Ok(())
                }
            })?;
        }
        if let Some(u) = &self.paths.unified {
            v2::create_dir(u, false)?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for h in self.unique_dirs() {
            fs::write(&h.dir, "cgroup.procs", pid.to_string())?;
        }
        if let Some(u) = self.unified() {
            fs::write(u, "cgroup.procs", pid.to_string())?;
        }
        Ok(())
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            match (self.dir("memory"), self.delegated("memory", "memory")?) {
                (Some(d), _) => set_memory(d, m)?,
                (None, Some(u)) => v2::set_memory(u, m)?,
                (None, None) => {
                    if *m != LinuxMemory::default() {
                        return Err(Self::unavailable("memory", "memory"));
                    }
                }
            }
        }
        if let Some(c) = r.cpu() {
            match (self.dir("cpu"), self.delegated("cpu", "cpu")?) {
                (Some(d), _) => set_cpu(d, c)?,
                (None, Some(u)) => v2::set_cpu(u, c)?,
                (None, None) => {}
            }
            let wants_set = c.cpus().as_ref().is_some_and(|s| !s.is_empty())
                || c.mems().as_ref().is_some_and(|s| !s.is_empty());
            match (self.dir("cpuset"), self.delegated("cpuset", "cpuset")?) {
                (Some(d), _) | (None, Some(d)) => v2::set_cpuset(d, c)?, // same file names in v1 and v2
                (None, None) if wants_set => return Err(Self::unavailable("cpu.cpus", "cpuset")),
                (None, None) => {}
            }
        }
        if let Some(p) = r.pids() {
            match (self.dir("pids"), self.delegated("pids", "pids")?) {
                (Some(d), _) | (None, Some(d)) => v2::set_pids(d, p.limit())?, // pids.max in both
                (None, None) => return Err(Self::unavailable("pids", "pids")),
            }
        }
        if let Some(b) = r.block_io() {
            match (self.dir("blkio"), self.delegated("blkio", "io")?) {
                (Some(d), _) => set_blkio(d, b)?,
                (None, Some(u)) => v2::set_io(u, b)?,
                (None, None) => {}
            }
        }
        if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
            match (self.dir("hugetlb"), self.delegated("hugetlb", "hugetlb")?) {
                (Some(d), _) => {
                    for l in h {
                        write_num(
                            d,
                            &format!("hugetlb.{}.limit_in_bytes", l.page_size()),
                            l.limit(),
                        )?;
                    }
                }
                (None, Some(u)) => v2::set_hugetlb(u, h)?,
                (None, None) => return Err(Self::unavailable("hugepageLimits", "hugetlb")),
            }
        }
        if let Some(d) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            match (self.dir("devices"), self.unified()) {
                (Some(dir), _) => devices::apply_v1(dir, &devices::normalize(d))?,
                (None, Some(u)) => v2::set_devices(u, d)?,
                (None, None) => return Err(Self::unavailable("devices", "devices")),
            }
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let d = self
                    .dir("net_cls")
                    .ok_or_else(|| Self::unavailable("network.classID", "net_cls"))?;
                fs::write(d, "net_cls.classid", id.to_string())?;
            }
            for p in n.priorities().iter().flatten() {
                let d = self
                    .dir("net_prio")
                    .ok_or_else(|| Self::unavailable("network.priorities", "net_prio"))?;
                fs::write(
                    d,
                    "net_prio.ifpriomap",
                    format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if let Some(rd) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            match (self.dir("rdma"), self.delegated("rdma", "rdma")?) {
                (Some(d), _) | (None, Some(d)) => v2::set_rdma(d, rd)?,
                (None, None) => return Err(Self::unavailable("rdma", "rdma")),
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let d = self
                .unified()
                .ok_or_else(|| Self::unavailable("unified", "cgroup2"))?;
            if let Some(h) = &self.paths.unified {
                for k in u.keys() {
                    match k.split_once('.') {
                        Some(("cgroup", _)) | None => {}
                        Some((ctrl, _)) => {
                            v2::delegate(h, ctrl)?;
                        }
                    }
                }
            }
            v2::set_unified(d, u)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        match (self.dir("freezer"), self.unified()) {
            (Some(d), _) => freeze_v1(d, true),
            (None, Some(u)) => v2::freeze_dir(u, true),
            (None, None) => Err(Self::unavailable("freezer", "freezer")),
        }
    }

    fn thaw(&self) -> Result<()> {
        match (self.dir("freezer"), self.unified()) {
            (Some(d), _) => freeze_v1(d, false),
            (None, Some(u)) => v2::freeze_dir(u, false),
            (None, None) => Ok(()),
        }
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        if let Some(d) = self.dir("freezer") {
            let s = fs::read(d, "freezer.state")?;
            return Ok(if s.trim() == "THAWED" {
                FreezerState::Thawed
            } else {
                FreezerState::Frozen
            });
        }
        if let Some(u) = self.unified() {
            let frozen = fs::read_opt(u, "cgroup.freeze")?.is_some_and(|s| s.trim() == "1");
            return Ok(if frozen {
                FreezerState::Frozen
            } else {
                FreezerState::Thawed
            });
        }
        Ok(FreezerState::Thawed)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(d) = self.procs_dir() {
            manager::procs_recursive(d, &mut out)?;
        }
        Ok(out)
    }

    fn kill_all(&self) -> Result<()> {
        // The cgroup2 directory holds the same processes; cgroup.kill there is race-free.
        if let Some(u) = self.unified().filter(|u| u.join("cgroup.kill").exists()) {
            v2::kill_dir(u)?;
        }
        let Some(d) = self.procs_dir() else {
            return Ok(());
        };
        if self.pids()?.is_empty() {
            return Ok(()); // nothing to kill: no freeze/thaw round trip (the common delete)
        }
        let deadline = Instant::now() + manager::EMPTY_TIMEOUT;
        loop {
            let frozen = self.freeze().is_ok();
            let pids = self.pids()?;
            v2::signal(&pids)?;
            if frozen {
                self.thaw()?;
            }
            if pids.is_empty() {
                return Ok(());
            }
            if manager::wait_empty(d, Instant::now() + std::time::Duration::from_millis(100))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return manager::wait_empty(d, deadline);
            }
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut st = Stats::default();
        if let Some(d) = self.dir("cpuacct") {
            st.cpu.usage.total = fs::read_u64_opt(d, "cpuacct.usage")?.unwrap_or(0);
            st.cpu.usage.percpu = percpu(d, "cpuacct.usage_percpu")?;
            st.cpu.usage.percpu_kernel = percpu(d, "cpuacct.usage_percpu_sys")?;
            st.cpu.usage.percpu_user = percpu(d, "cpuacct.usage_percpu_user")?;
            st.cpu.usage.kernel = fs::read_u64_opt(d, "cpuacct.usage_sys")?.unwrap_or(0);
            st.cpu.usage.user = fs::read_u64_opt(d, "cpuacct.usage_user")?.unwrap_or(0);
        }
        if let Some(d) = self.dir("cpu") {
            let p = fs::read_keyed(d, "cpu.stat")?;
            st.cpu.throttling.periods = fs::keyed(&p, "nr_periods").unwrap_or(0);
            st.cpu.throttling.throttled_periods = fs::keyed(&p, "nr_throttled").unwrap_or(0);
            st.cpu.throttling.throttled_time = fs::keyed(&p, "throttled_time").unwrap_or(0);
        }
        if let Some(d) = self.dir("memory") {
            st.memory.usage = memory_entry(d, "memory")?;
            st.memory.swap = memory_entry(d, "memory.memsw")?;
            st.memory.kernel = memory_entry(d, "memory.kmem")?;
            st.memory.kernel_tcp = memory_entry(d, "memory.kmem.tcp")?;
            st.memory.raw = fs::read_keyed(d, "memory.stat")?.into_iter().collect();
            st.memory.cache = st
                .memory
                .raw
                .get("total_cache")
                .or(st.memory.raw.get("cache"))
                .copied()
                .unwrap_or(0);
            st.memory.oom_kill = self.oom_kill_count()?;
        }
        if let Some(d) = self.dir("pids") {
            st.pids.current = fs::read_u64(d, "pids.current")?;
            st.pids.limit = fs::read_u64(d, "pids.max")?;
            if st.pids.limit == u64::MAX {
                st.pids.limit = 0;
            }
        }
        if let Some(d) = self.dir("blkio") {
            let rd = |f: &str| {
                fs::read_opt(d, f).map(|c| c.map(|c| stats::parse_blkio_v1(&c)).unwrap_or_default())
            };
            st.blkio.io_service_bytes_recursive = rd("blkio.throttle.io_service_bytes_recursive")?;
            st.blkio.io_serviced_recursive = rd("blkio.throttle.io_serviced_recursive")?;
        }
        match (self.dir("hugetlb"), self.unified_with("hugetlb")) {
            (Some(d), _) => {
                for size in crate::validate::host_hugepage_sizes() {
                    let r = |s: &str| fs::read_u64_opt(d, &format!("hugetlb.{size}.{s}"));
                    if let Some(usage) = r("usage_in_bytes")? {
                        let h = stats::Hugetlb {
                            usage,
                            max: r("max_usage_in_bytes")?.unwrap_or(0),
                            failcnt: r("failcnt")?.unwrap_or(0),
                        };
                        st.hugetlb.insert(size, h);
                    }
                }
            }
            (None, Some(u)) => v2::hugetlb_stats(u, &mut st)?,
            (None, None) => {}
        }
        Ok(st)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        match (self.dir("memory"), self.unified_with("memory")) {
            (Some(d), _) => {
                Ok(fs::keyed(&fs::read_keyed(d, "memory.oom_control")?, "oom_kill").unwrap_or(0))
            }
            (None, Some(u)) => {
                Ok(fs::keyed(&fs::read_keyed(u, "memory.events")?, "oom_kill").unwrap_or(0))
            }
            (None, None) => Ok(0),
        }
    }

    fn oom_watcher(&self) -> Result<OomWatcher> {
        match (self.dir("memory"), self.unified_with("memory")) {
            (Some(d), _) => OomWatcher::v1(d),
            (None, Some(u)) => OomWatcher::v2(u),
            (None, None) => Ok(OomWatcher::none()),
        }
    }

    fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + manager::EMPTY_TIMEOUT;
        let mut first: Option<CgroupError> = None;
        let dirs: Vec<PathBuf> = self
            .unique_dirs()
            .into_iter()
            .map(|h| h.dir.clone())
            .chain(self.unified().map(Path::to_path_buf))
            .collect();
        // Try every hierarchy even if one fails, so one stuck directory does not leak the rest.
        for d in dirs {
            if let Err(e) = manager::remove_tree(&d, deadline) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
