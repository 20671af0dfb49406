//! NanoClaw cgroup management: cgroup v2 first, v1 where the host has only that, and the hybrid
//! layouts in between (v1 controllers plus a cgroup2 mount), detected at run time.
//!
//! The runtime's view is one trait, [`CgroupManager`]: create the container's cgroup, place the
//! init in it, apply `linux.resources` (also for `update`), freeze/thaw, kill everything, read
//! stats in runc's JSON shape, watch for OOM kills, and destroy the cgroup without leaking it.
//! [`v1`] and [`v2`] implement it, [`systemd`] wraps v2 in a transient systemd unit
//! (`--systemd-cgroup`); [`layout`] finds out what the host has, [`path`] resolves
//! `linux.cgroupsPath` with runc's semantics, and [`validate`](mod@validate) rejects bad values *before*
//! anything is created.
//!
//! Untrusted input enters through `linux.resources` and `linux.cgroupsPath` of config.json (and
//! `nanoclaw update -r`): the value checks live in `validate.rs`, `cpuset.rs` and `path.rs`.
//! The kernel-facing side is plain cgroupfs file I/O (`fs.rs`) plus one BPF program for the v2
//! device filter (`bpf.rs`, the only `unsafe`).
//!
//! Dependencies: oci-spec for the resource types nanoclaw already parses, rustix for eventfd,
//! inotify, poll and kill, libc for bpf(2), thiserror/serde for errors and the stats JSON.

pub mod bpf;
pub mod cpuset;
pub mod devices;
pub mod error;
pub mod fs;
pub mod layout;
pub mod manager;
pub mod mountinfo;
pub mod oom;
pub mod path;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;
pub mod validate;

pub use error::{CgroupError, Result};
pub use layout::{Layout, Mode};
pub use manager::{create_and_apply, open, resolve, CgroupConfig, CgroupManager, FreezerState};
pub use oom::{OomEvent, OomWatcher};
pub use path::{CgroupPaths, CgroupsPath, HierarchyDir};
pub use stats::Stats;
pub use validate::{validate, ValidationError};

/// The `nanoclaw check` cgroup line: mode, every hierarchy with its controllers and this
/// process' cgroup, controllers the kernel has but nothing mounts, and how device rules are
/// enforced — exactly what the managers will use.
pub fn check_summary() -> Result<String> {
    let l = Layout::detect()?;
    Ok(l.report()
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; "))
}

/// The `nanoclaw check` section: the detected layout as `(label, value)` lines.
pub fn check_report() -> Vec<(String, String)> {
    match Layout::detect() {
        Ok(l) => l.report(),
        Err(e) => vec![("cgroup layout".to_string(), format!("ERROR: {e}"))],
    }
}
