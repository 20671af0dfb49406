//! `nanoclaw update`: change the resource limits of a running (or created, or paused)
//! container, with runc's flags. `-r FILE` (or `-r -` for stdin) takes an OCI
//! `linux.resources` JSON document instead; the flags are then ignored, as in runc.
//! The new values are validated like config.json's before anything is written.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::container::state::{StateDir, StateError, Status};
use crate::container::status_of;

/// What `update` was asked: runc's flags as given (each parsed and checked here, so the error
/// names the flag), or a resources file.
#[derive(Debug, Default, Clone)]
pub struct UpdateRequest {
    /// Path to a JSON file with linux.resources ("-" for stdin); other flags are then ignored.
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted; -1 for unlimited).
    pub memory: Option<String>,
    /// Memory reservation (soft limit) in bytes.
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes (-1 for unlimited).
    pub memory_swap: Option<String>,
    /// Kernel TCP buffer limit in bytes (cgroup v1 only).
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight vs. other containers).
    pub cpu_share: Option<String>,
    /// CPU CFS period in microseconds.
    pub cpu_period: Option<String>,
    /// CPU CFS quota in microseconds (-1 for unlimited).
    pub cpu_quota: Option<String>,
    /// CPU CFS burst in microseconds.
    pub cpu_burst: Option<String>,
    /// Realtime period in microseconds (cgroup v1).
    pub cpu_rt_period: Option<String>,
    /// Realtime runtime in microseconds (cgroup v1).
    pub cpu_rt_runtime: Option<String>,
    /// SCHED_IDLE for the cgroup (0 or 1).
    pub cpu_idle: Option<String>,
    /// CPUs the container may run on (e.g. 0-3,5).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    pub cpuset_mems: Option<String>,
    /// Block IO weight (10-1000).
    pub blkio_weight: Option<String>,
    /// Maximum number of tasks (<= 0 for unlimited).
    pub pids_limit: Option<String>,
    /// The container.
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("container not running: container {id:?} is stopped, nothing to update")]
    Stopped { id: String },
    #[error("container {id:?} has no cgroup (rootless without cgroup access)")]
    NoCgroup { id: String },
    #[error("--{flag} {value:?}: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("-r {path}: {msg}")]
    ResourcesFile { path: PathBuf, msg: String },
    #[error(transparent)]
    Invalid(#[from] nanoclaw_cgroups::ValidationError),
    #[error(transparent)]
    Cgroup(#[from] crate::container::cgroup::CgroupStepError),
    #[error("updating container {id:?}: {source}")]
    Apply {
        id: String,
        source: nanoclaw_cgroups::CgroupError,
    },
}

fn flag_err(flag: &'static str, value: &str, reason: impl Into<String>) -> UpdateError {
    UpdateError::Flag {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a byte count as runc does (docker's RAMInBytes): a number with an optional k/m/g/t
/// suffix (optionally followed by b), binary units; "-1" is unlimited.
pub fn parse_bytes(flag: &'static str, s: &str) -> Result<i64, UpdateError> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult): (&str, i64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| flag_err(flag, s, "not a size (e.g. 33554432, 32m, 1g, -1)"))?;
    if n < 0 {
        return Err(flag_err(flag, s, "negative (use -1 for unlimited)"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| flag_err(flag, s, "too large"))
}

fn int<T: std::str::FromStr>(flag: &'static str, s: &str) -> Result<T, UpdateError> {
    s.trim()
        .parse::<T>()
        .map_err(|_| flag_err(flag, s, "not a valid number for this flag"))
}

/// Builds the resources that the flags ask for (only the fields given are set).
pub fn resources_from_flags(a: &UpdateRequest) -> Result<LinuxResources, UpdateError> {
    let mut r = LinuxResources::default();
    let mut mem = LinuxMemory::default();
    let mut mem_set = false;
    if let Some(v) = &a.memory {
        mem.set_limit(Some(parse_bytes("memory", v)?));
        mem_set = true;
    }
    if let Some(v) = &a.memory_reservation {
        mem.set_reservation(Some(parse_bytes("memory-reservation", v)?));
        mem_set = true;
    }
    if let Some(v) = &a.memory_swap {
        mem.set_swap(Some(parse_bytes("memory-swap", v)?));
        mem_set = true;
    }
    if let Some(v) = &a.kernel_memory_tcp {
        mem.set_kernel_tcp(Some(parse_bytes("kernel-memory-tcp", v)?));
        mem_set = true;
    }
    if mem_set {
        r.set_memory(Some(mem));
    }
    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if let Some(v) = &a.cpu_share {
        let n: i64 = int("cpu-share", v)?;
        let n = u64::try_from(n)
            .map_err(|_| flag_err("cpu-share", v, "CPU shares cannot be negative"))?;
        cpu.set_shares(Some(n));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_period {
        cpu.set_period(Some(int("cpu-period", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_quota {
        cpu.set_quota(Some(int("cpu-quota", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_burst {
        cpu.set_burst(Some(int("cpu-burst", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_rt_period {
        cpu.set_realtime_period(Some(int("cpu-rt-period", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(int("cpu-rt-runtime", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpu_idle {
        cpu.set_idle(Some(int("cpu-idle", v)?));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
        cpu_set = true;
    }
    if cpu_set {
        r.set_cpu(Some(cpu));
    }
    if let Some(v) = &a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(int("blkio-weight", v)?));
        r.set_block_io(Some(b));
    }
    if let Some(v) = &a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(int("pids-limit", v)?);
        r.set_pids(Some(p));
    }
    Ok(r)
}

fn read_resources(path: &Path) -> Result<LinuxResources, UpdateError> {
    let err = |msg: String| UpdateError::ResourcesFile {
        path: path.to_path_buf(),
        msg,
    };
    let mut bytes = Vec::new();
    let limit = 1 << 20;
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
            .map_err(|e| err(e.to_string()))?;
    }
    if bytes.len() as u64 > limit {
        return Err(err(format!("larger than {limit} bytes")));
    }
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| err(format!("at {}: {}", e.path(), e.inner())))
}

/// `update`: validates, then applies to the live cgroup.
pub fn update(root: &Path, args: &UpdateRequest) -> Result<(), UpdateError> {
    let mut r = match &args.resources {
        Some(path) => read_resources(path)?,
        None => resources_from_flags(args)?,
    };
    let dir = StateDir::open(root, &args.id)?;
    let st = dir.load()?;
    if status_of(&dir, &st) == Status::Stopped {
        return Err(UpdateError::Stopped {
            id: args.id.clone(),
        });
    }
    let mgr = crate::container::cgroup::load(dir.path())?.ok_or_else(|| UpdateError::NoCgroup {
        id: args.id.clone(),
    })?;
    if mgr.paths().is_empty() {
        return Err(UpdateError::NoCgroup {
            id: args.id.clone(),
        });
    }
    // A new device list replaces the filter: keep the devices every container needs.
    if let Some(devs) = r.devices().clone() {
        let spec = oci_spec::runtime::Spec::load(st.bundle.join("config.json")).ok();
        r.set_devices(Some(crate::container::cgroup::complete_device_rules(
            devs,
            spec.as_ref(),
        )));
    }
    let layout = nanoclaw_cgroups::Layout::detect().map_err(|source| UpdateError::Apply {
        id: args.id.clone(),
        source,
    })?;
    nanoclaw_cgroups::validate(&r, &layout)?;
    mgr.set(&r).map_err(|source| UpdateError::Apply {
        id: args.id.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_runc() {
        assert_eq!(parse_bytes("memory", "33554432").unwrap(), 33554432);
        assert_eq!(parse_bytes("memory", "32m").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("memory", "512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("memory", "-1").unwrap(), -1);
        assert!(parse_bytes("memory", "-5").is_err());
        assert!(parse_bytes("memory", "lots").is_err());
        assert!(parse_bytes("memory", "99999999999t").is_err());
    }

    #[test]
    fn flags_set_only_what_is_given() {
        let a = UpdateRequest {
            memory: Some("64m".into()),
            pids_limit: Some("8".into()),
            id: "x".into(),
            ..Default::default()
        };
        let r = resources_from_flags(&a).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.memory().unwrap().swap(), None);
        assert_eq!(r.pids().unwrap().limit(), 8);
        assert!(r.cpu().is_none() && r.block_io().is_none());
        let a = UpdateRequest {
            cpu_share: Some("-5".into()),
            id: "x".into(),
            ..Default::default()
        };
        let e = resources_from_flags(&a).unwrap_err().to_string();
        assert!(e.contains("--cpu-share") && e.contains("negative"), "{e}");
    }
}
