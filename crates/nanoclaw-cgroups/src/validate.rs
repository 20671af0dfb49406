//! Validation of `linux.resources` before anything is created. Two layers:
//! value checks that hold on every host (ranges the kernel enforces, list syntax, access strings),
//! and checks against the host layout (is there a hierarchy with that controller? does a
//! `unified` key name a real interface file of a controller enabled on the cgroup2 hierarchy?).
//! Every error names the field, as `linux.resources.<field>`.

use std::collections::BTreeSet;

use oci_spec::runtime::LinuxResources;

use crate::cpuset;
use crate::layout::Layout;

/// A `linux.resources` value that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("linux.resources.{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Kernel bounds (kernel/sched/core.c, fair.c; block/blk-cgroup).
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;
pub const CFS_QUOTA_MIN_US: i64 = 1_000;
pub const CFS_PERIOD_MIN_US: u64 = 1_000;
pub const CFS_PERIOD_MAX_US: u64 = 1_000_000;
pub const BLKIO_WEIGHT_MIN: u16 = 10;
pub const BLKIO_WEIGHT_MAX: u16 = 1_000;

/// Where a controller lives on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    V1,
    V2,
}

/// Picks the hierarchy for a resource class: the v1 hierarchy with `v1_name` if mounted, else
/// the cgroup2 hierarchy when it offers `v2_name`.
pub fn placement(layout: &Layout, v1_name: &str, v2_name: &str) -> Option<Placement> {
    if layout.v1_for(v1_name).is_some() {
        Some(Placement::V1)
    } else if layout.unified.as_ref().is_some_and(|u| u.has(v2_name)) {
        Some(Placement::V2)
    } else {
        None
    }
}

/// Checks values alone (no host knowledge).
pub fn validate_values(r: &LinuxResources) -> Result<(), ValidationError> {
    if let Some(m) = r.memory() {
        for (name, v) in [
            ("memory.limit", m.limit()),
            ("memory.reservation", m.reservation()),
            ("memory.swap", m.swap()),
            ("memory.kernel", m.kernel()),
            ("memory.kernelTCP", m.kernel_tcp()),
        ] {
            if let Some(v) = v {
                if v < -1 {
                    return Err(err(name, format!("{v} is negative (use -1 for unlimited)")));
                }
            }
        }
        // Fields no cgroup file carries any more: refused rather than ignored.
        if m.kernel().is_some_and(|k| k != 0 && k != -1) {
            return Err(err(
                "memory.kernel",
                "kernel memory limits are gone from current kernels (no memory.kmem.limit_in_bytes, none on cgroup v2); refusing rather than ignoring it",
            ));
        }
        if m.use_hierarchy() == Some(false) {
            return Err(err(
                "memory.useHierarchy",
                "false is not possible: hierarchical accounting is always on (cgroup v2, and v1 on current kernels)",
            ));
        }
        if m.check_before_update() == Some(true) {
            return Err(err(
                "memory.checkBeforeUpdate",
                "is not implemented by nanoclaw; refusing rather than ignoring it",
            ));
        }
        if let (Some(limit), Some(swap)) = (m.limit(), m.swap()) {
            if limit > 0 && swap > 0 && swap < limit {
                return Err(err(
                    "memory.swap",
                    format!("{swap} is below memory.limit {limit} (swap is the memory+swap total)"),
                ));
            }
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(err("memory.swappiness", format!("{s} is above 100")));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            if s != 0 && !(CPU_SHARES_MIN..=CPU_SHARES_MAX).contains(&s) {
                return Err(err(
                    "cpu.shares",
                    format!("{s} is outside {CPU_SHARES_MIN}..={CPU_SHARES_MAX}"),
                ));
            }
        }
        if let Some(q) = c.quota() {
            if q < -1 || (q > 0 && q < CFS_QUOTA_MIN_US) {
                return Err(err(
                    "cpu.quota",
                    format!("{q} µs is below the kernel minimum of {CFS_QUOTA_MIN_US} µs (use -1 for unlimited)"),
                ));
            }
        }
        if let Some(p) = c.period() {
            if p != 0 && !(CFS_PERIOD_MIN_US..=CFS_PERIOD_MAX_US).contains(&p) {
                return Err(err(
                    "cpu.period",
                    format!("{p} µs is outside the kernel's {CFS_PERIOD_MIN_US}..={CFS_PERIOD_MAX_US} µs"),
                ));
            }
        }
        if let Some(b) = c.burst() {
            if let Some(q) = c.quota() {
                if q > 0 && b > q.unsigned_abs() {
                    return Err(err(
                        "cpu.burst",
                        format!("{b} µs is above cpu.quota {q} µs"),
                    ));
                }
            }
        }
        if let Some(i) = c.idle() {
            if !(0..=1).contains(&i) {
                return Err(err("cpu.idle", format!("{i} is neither 0 nor 1")));
            }
        }
        if let Some(rt) = c.realtime_runtime() {
            if rt < -1 {
                return Err(err(
                    "cpu.realtimeRuntime",
                    format!("{rt} is negative (use -1 for unlimited)"),
                ));
            }
        }
        for (name, v) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
            if let Some(v) = v {
                cpuset::parse_list(v).map_err(|e| err(name, format!("{v:?}: {e}")))?;
            }
        }
    }
    if let Some(b) = r.block_io() {
        let weight = |name: &str, w: Option<u16>| match w {
            Some(w) if w != 0 && !(BLKIO_WEIGHT_MIN..=BLKIO_WEIGHT_MAX).contains(&w) => Err(err(
                name,
                format!("{w} is outside {BLKIO_WEIGHT_MIN}..={BLKIO_WEIGHT_MAX}"),
            )),
            _ => Ok(()),
        };
        weight("blockIO.weight", b.weight())?;
        weight("blockIO.leafWeight", b.leaf_weight())?;
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            dev_numbers(&format!("blockIO.weightDevice[{i}]"), d.major(), d.minor())?;
            weight(&format!("blockIO.weightDevice[{i}].weight"), d.weight())?;
            weight(
                &format!("blockIO.weightDevice[{i}].leafWeight"),
                d.leaf_weight(),
            )?;
        }
        for (list, name) in [
            (b.throttle_read_bps_device(), "throttleReadBpsDevice"),
            (b.throttle_write_bps_device(), "throttleWriteBpsDevice"),
            (b.throttle_read_iops_device(), "throttleReadIOPSDevice"),
            (b.throttle_write_iops_device(), "throttleWriteIOPSDevice"),
        ] {
            for (i, d) in list.iter().flatten().enumerate() {
                dev_numbers(&format!("blockIO.{name}[{i}]"), d.major(), d.minor())?;
            }
        }
    }
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        if !valid_page_size(h.page_size()) {
            return Err(err(
                format!("hugepageLimits[{i}].pageSize"),
                format!("{:?} is not of the form <n>KB|MB|GB", h.page_size()),
            ));
        }
        if h.limit() < -1 {
            return Err(err(
                format!("hugepageLimits[{i}].limit"),
                format!("{} is negative", h.limit()),
            ));
        }
    }
    for (i, d) in r.devices().iter().flatten().enumerate() {
        let field = format!("devices[{i}]");
        for (what, v) in [("major", d.major()), ("minor", d.minor())] {
            if let Some(v) = v {
                if v < -1 || v > i64::from(i32::MAX) {
                    return Err(err(
                        format!("{field}.{what}"),
                        format!("{v} is not a device number"),
                    ));
                }
            }
        }
        if let Some(a) = d.access() {
            let mut seen = BTreeSet::new();
            for ch in a.chars() {
                if !matches!(ch, 'r' | 'w' | 'm') || !seen.insert(ch) {
                    return Err(err(
                        format!("{field}.access"),
                        format!("{a:?} is not a combination of r, w and m"),
                    ));
                }
            }
        }
    }
    if let Some(p) = r.pids() {
        let _ = p.limit(); // any value: > 0 is a limit, <= 0 means unlimited
    }
    Ok(())
}

fn dev_numbers(field: &str, major: i64, minor: i64) -> Result<(), ValidationError> {
    for (what, v) in [("major", major), ("minor", minor)] {
        if !(0..=i64::from(u32::MAX)).contains(&v) {
            return Err(err(
                format!("{field}.{what}"),
                format!("{v} is not a device number"),
            ));
        }
    }
    Ok(())
}

fn valid_page_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB")
}

/// Hugepage sizes of this host in cgroup naming ("2MB", "1GB"), from /sys/kernel/mm/hugepages.
pub fn host_hugepage_sizes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(kb) = name
                .to_str()
                .and_then(|n| n.strip_prefix("hugepages-"))
                .and_then(|n| n.strip_suffix("kB"))
            else {
                continue;
            };
            if let Ok(kb) = kb.parse::<u64>() {
                out.push(hugepage_name(kb));
            }
        }
    }
    out.sort();
    out
}

/// 2048 (kB) → "2MB", 1048576 → "1GB", 64 → "64KB": the names cgroup files use.
pub fn hugepage_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb & ((1 << 20) - 1) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb & ((1 << 10) - 1) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// Full validation against the host: values, then whether this host can apply each of them.
pub fn validate(r: &LinuxResources, layout: &Layout) -> Result<(), ValidationError> {
    validate_with(r, layout, &host_hugepage_sizes())
}

/// [`validate`] with the hugepage sizes given (for tests).
pub fn validate_with(
    r: &LinuxResources,
    layout: &Layout,
    hugepage_sizes: &[String],
) -> Result<(), ValidationError> {
    validate_values(r)?;
    let unavailable = |field: &str, ctrl: &str| {
        err(
            field,
            format!("needs the {ctrl} controller, which no cgroup hierarchy of this host has"),
        )
    };
    let v2_only = |field: &str, what: &str| {
        err(field, format!("{what} has no cgroup v2 equivalent, and this host's memory controller is on cgroup v2"))
    };
    if let Some(m) = r.memory() {
        let any = m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true);
        match placement(layout, "memory", "memory") {
            None if any => return Err(unavailable("memory", "memory")),
            Some(Placement::V2) => {
                if m.swappiness().is_some() {
                    return Err(v2_only("memory.swappiness", "swappiness"));
                }
                if m.disable_oom_killer() == Some(true) {
                    return Err(v2_only(
                        "memory.disableOOMKiller",
                        "disabling the OOM killer",
                    ));
                }
                if m.kernel_tcp().is_some_and(|v| v != 0) {
                    return Err(v2_only("memory.kernelTCP", "a kernel TCP buffer limit"));
                }
                if let (Some(swap), limit) = (m.swap(), m.limit()) {
                    if swap > 0 && limit.is_none_or(|l| l <= 0) {
                        return Err(err(
                            "memory.swap",
                            "cgroup v2 cannot limit swap without a memory limit",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(c) = r.cpu() {
        let any_cpu = c.shares().is_some_and(|s| s != 0)
            || c.quota().is_some_and(|q| q != 0)
            || c.period().is_some_and(|p| p != 0)
            || c.burst().is_some()
            || c.idle().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some();
        match placement(layout, "cpu", "cpu") {
            None if any_cpu => return Err(unavailable("cpu", "cpu")),
            Some(Placement::V2)
                if c.realtime_runtime().is_some() || c.realtime_period().is_some() =>
            {
                return Err(err(
                    "cpu.realtimeRuntime",
                    "realtime scheduling limits exist only in cgroup v1",
                ));
            }
            _ => {}
        }
        let any_set = c.cpus().as_ref().is_some_and(|s| !s.is_empty())
            || c.mems().as_ref().is_some_and(|s| !s.is_empty());
        if any_set && placement(layout, "cpuset", "cpuset").is_none() {
            return Err(unavailable("cpu.cpus", "cpuset"));
        }
    }
    if r.pids().is_some() && placement(layout, "pids", "pids").is_none() {
        return Err(unavailable("pids", "pids"));
    }
    if let Some(b) = r.block_io() {
        let any = b.weight().is_some()
            || b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_read_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty());
        match placement(layout, "blkio", "io") {
            None if any => return Err(unavailable("blockIO", "blkio/io")),
            Some(Placement::V2) if b.leaf_weight().is_some() => {
                return Err(err(
                    "blockIO.leafWeight",
                    "leaf weights exist only in cgroup v1 (CFQ)",
                ));
            }
            _ => {}
        }
    }
    if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        if placement(layout, "hugetlb", "hugetlb").is_none() {
            return Err(unavailable("hugepageLimits", "hugetlb"));
        }
        for (i, l) in h.iter().enumerate() {
            if !hugepage_sizes.iter().any(|s| s == l.page_size()) {
                return Err(err(
                    format!("hugepageLimits[{i}].pageSize"),
                    format!(
                        "{:?} is not a hugepage size of this host (it has {:?})",
                        l.page_size(),
                        hugepage_sizes
                    ),
                ));
            }
        }
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some() && layout.v1_for("net_cls").is_none() {
            return Err(err("network.classID", "needs a mounted v1 net_cls hierarchy (cgroup v2 has no net_cls; use a BPF program or nftables)"));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty())
            && layout.v1_for("net_prio").is_none()
        {
            return Err(err(
                "network.priorities",
                "needs a mounted v1 net_prio hierarchy",
            ));
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty())
        && layout.v1_for("devices").is_none()
        && layout.unified.is_none()
    {
        return Err(unavailable("devices", "devices"));
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
        if placement(layout, "rdma", "rdma").is_none() {
            return Err(unavailable("rdma", "rdma"));
        }
        for k in rdma.keys() {
            if k.is_empty() || k.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(err(format!("rdma[{k:?}]"), "is not an RDMA device name"));
            }
        }
    }
    if let Some(u) = r.unified() {
        for (k, v) in u {
            validate_unified_key(layout, hugepage_sizes, k, v)?;
        }
    }
    Ok(())
}

/// Core cgroup2 files a config may set; the rest (procs, threads, subtree_control, freeze, kill,
/// type) belong to the runtime.
const CORE_KEYS: &[&str] = &["cgroup.max.depth", "cgroup.max.descendants"];

/// Writable interface files per cgroup2 controller (Documentation/admin-guide/cgroup-v2.rst).
const V2_FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.weight",
            "cpu.weight.nice",
            "cpu.max",
            "cpu.max.burst",
            "cpu.idle",
            "cpu.uclamp.min",
            "cpu.uclamp.max",
        ],
    ),
    (
        "memory",
        &[
            "memory.min",
            "memory.low",
            "memory.high",
            "memory.max",
            "memory.oom.group",
            "memory.swap.high",
            "memory.swap.max",
            "memory.swap.peak",
            "memory.zswap.max",
            "memory.zswap.writeback",
            "memory.peak",
        ],
    ),
    (
        "io",
        &[
            "io.weight",
            "io.bfq.weight",
            "io.max",
            "io.latency",
            "io.prio.class",
            "io.cost.qos",
            "io.cost.model",
        ],
    ),
    ("pids", &["pids.max"]),
    (
        "cpuset",
        &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.cpus.partition",
            "cpuset.cpus.exclusive",
        ],
    ),
    ("rdma", &["rdma.max"]),
    ("misc", &["misc.max"]),
    ("hugetlb", &[]), // per page size, checked below
];

/// A `unified` key must be `<controller>.<file>` naming a writable interface file of a
/// controller the cgroup2 hierarchy has enabled; no path separators, nothing the runtime owns.
pub fn validate_unified_key(
    layout: &Layout,
    hugepage_sizes: &[String],
    key: &str,
    value: &str,
) -> Result<(), ValidationError> {
    let field = format!("unified[{key:?}]");
    if key.is_empty()
        || key.contains('/')
        || key.contains('\0')
        || key.starts_with('.')
        || key.contains("..")
    {
        return Err(err(
            field,
            "must be the plain name of a cgroup interface file (no path separators)",
        ));
    }
    if value.contains('\0') {
        return Err(err(field, "value contains a NUL byte"));
    }
    let Some(u) = &layout.unified else {
        return Err(err(field, "this host has no cgroup v2 hierarchy"));
    };
    let Some((ctrl, _)) = key.split_once('.') else {
        return Err(err(field, "is not of the form <controller>.<file>"));
    };
    if ctrl == "cgroup" {
        return if CORE_KEYS.contains(&key) {
            Ok(())
        } else {
            Err(err(field, "core cgroup files other than cgroup.max.depth and cgroup.max.descendants belong to the runtime"))
        };
    }
    let Some((_, files)) = V2_FILES.iter().find(|(c, _)| *c == ctrl) else {
        return Err(err(
            field,
            format!("unknown unified key: {ctrl:?} is not a cgroup v2 controller"),
        ));
    };
    if !u.has(ctrl) {
        let where_ = if layout.v1_for(ctrl).is_some() {
            " (it is bound to a cgroup v1 hierarchy here)"
        } else {
            ""
        };
        return Err(err(
            field,
            format!("controller {ctrl} is not enabled on the cgroup v2 hierarchy{where_}"),
        ));
    }
    let known = if ctrl == "hugetlb" {
        hugepage_sizes
            .iter()
            .any(|s| key == format!("hugetlb.{s}.max") || key == format!("hugetlb.{s}.rsvd.max"))
    } else {
        files.contains(&key)
    };
    if !known {
        return Err(err(
            field,
            format!("unknown unified key: no writable interface file {key} in controller {ctrl}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxResourcesBuilder};
    use std::collections::HashMap;

    fn hybrid() -> Layout {
        let mi = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        Layout::from_sources(mi, "", "4:memory:/\n1:cpu:/\n8:pids:/\n0::/\n", |_| {
            Ok("hugetlb".into())
        })
        .unwrap()
    }

    fn v2() -> Layout {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        Layout::from_sources(mi, "", "0::/x\n", |_| {
            Ok("cpuset cpu io memory hugetlb pids".into())
        })
        .unwrap()
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn cpu_ranges() {
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(500i64).build().unwrap())
            .build()
            .unwrap();
        let e = validate_values(&r).unwrap_err();
        assert_eq!(e.field, "cpu.quota");
        assert!(e.to_string().contains("kernel minimum of 1000"), "{e}");
        assert_eq!(
            validate_values(&res(r#"{"cpu":{"shares":1}}"#))
                .unwrap_err()
                .field,
            "cpu.shares"
        );
        assert_eq!(
            validate_values(&res(r#"{"cpu":{"period":100}}"#))
                .unwrap_err()
                .field,
            "cpu.period"
        );
        assert_eq!(
            validate_values(&res(r#"{"cpu":{"cpus":"0-"}}"#))
                .unwrap_err()
                .field,
            "cpu.cpus"
        );
        assert_eq!(
            validate_values(&res(r#"{"cpu":{"quota":1000,"burst":2000}}"#))
                .unwrap_err()
                .field,
            "cpu.burst"
        );
        validate_values(&res(
            r#"{"cpu":{"shares":1024,"quota":20000,"period":100000,"cpus":"0-1"}}"#,
        ))
        .unwrap();
    }

    #[test]
    fn memory_fields_without_a_cgroup_file_are_refused() {
        for (json, field) in [
            (r#"{"memory":{"kernel":1048576}}"#, "memory.kernel"),
            (
                r#"{"memory":{"useHierarchy":false}}"#,
                "memory.useHierarchy",
            ),
            (
                r#"{"memory":{"checkBeforeUpdate":true}}"#,
                "memory.checkBeforeUpdate",
            ),
        ] {
            let r: LinuxResources = serde_json::from_str(json).unwrap();
            let e = validate_values(&r).unwrap_err();
            assert_eq!(e.field, field, "{json}");
        }
        let ok: LinuxResources =
            serde_json::from_str(r#"{"memory":{"kernel":-1,"useHierarchy":true}}"#).unwrap();
        assert!(validate_values(&ok).is_ok());
    }

    #[test]
    fn memory_values() {
        assert_eq!(
            validate_values(&res(r#"{"memory":{"limit":-2}}"#))
                .unwrap_err()
                .field,
            "memory.limit"
        );
        assert_eq!(
            validate_values(&res(r#"{"memory":{"limit":100,"swap":50}}"#))
                .unwrap_err()
                .field,
            "memory.swap"
        );
        assert_eq!(
            validate_values(&res(r#"{"memory":{"swappiness":101}}"#))
                .unwrap_err()
                .field,
            "memory.swappiness"
        );
    }

    #[test]
    fn devices_access_and_numbers() {
        let e =
            validate_values(&res(r#"{"devices":[{"allow":false,"access":"rwx"}]}"#)).unwrap_err();
        assert_eq!(e.field, "devices[0].access");
        let e = validate_values(&res(
            r#"{"devices":[{"allow":true,"type":"c","major":-7,"minor":3}]}"#,
        ))
        .unwrap_err();
        assert_eq!(e.field, "devices[0].major");
    }

    #[test]
    fn unified_keys_on_hybrid() {
        let l = hybrid();
        let sizes = vec!["2MB".to_string()];
        let mut u = HashMap::new();
        u.insert("hugetlb.2MB.max".to_string(), "0".to_string());
        let mut r = LinuxResources::default();
        r.set_unified(Some(u.clone()));
        validate_with(&r, &l, &sizes).unwrap();
        for (k, needle) in [
            ("memory.max", "bound to a cgroup v1 hierarchy"),
            ("hugetlb.3MB.max", "unknown unified key"),
            ("foo.bar", "unknown unified key"),
            ("../memory.max", "no path separators"),
            ("hugetlb/x", "no path separators"),
            ("cgroup.procs", "belong to the runtime"),
            ("nodot", "<controller>.<file>"),
        ] {
            let e = validate_unified_key(&l, &sizes, k, "1").unwrap_err();
            assert!(e.to_string().contains(needle), "{k}: {e}");
        }
    }

    #[test]
    fn unified_keys_on_v2() {
        let l = v2();
        validate_unified_key(&l, &[], "memory.high", "1G").unwrap();
        validate_unified_key(&l, &[], "cgroup.max.descendants", "10").unwrap();
        assert!(validate_unified_key(&l, &[], "memory.current", "1").is_err());
        assert!(validate_unified_key(&l, &[], "misc.max", "1")
            .unwrap_err()
            .to_string()
            .contains("not enabled"));
    }

    #[test]
    fn host_capabilities() {
        let l = hybrid();
        // blkio is not mounted in this test layout and cgroup2 has no io: refused up front.
        let e = validate_with(&res(r#"{"blockIO":{"weight":100}}"#), &l, &[]).unwrap_err();
        assert_eq!(e.field, "blockIO");
        let e = validate_with(&res(r#"{"network":{"classID":1}}"#), &l, &[]).unwrap_err();
        assert_eq!(e.field, "network.classID");
        let e = validate_with(
            &res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#),
            &l,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a hugepage size"), "{e}");
        // v2-only restrictions.
        let e = validate_with(&res(r#"{"memory":{"swappiness":10}}"#), &v2(), &[]).unwrap_err();
        assert_eq!(e.field, "memory.swappiness");
        validate_with(
            &res(r#"{"memory":{"swappiness":10,"limit":1000000}}"#),
            &l,
            &[],
        )
        .unwrap();
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_name(2048), "2MB");
        assert_eq!(hugepage_name(1 << 20), "1GB");
        assert_eq!(hugepage_name(64), "64KB");
    }
}
