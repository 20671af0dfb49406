//! Errors of the cgroup layer. Every variant names the file, field or value it is about, so a
//! failed `create` or `update` tells the operator exactly which limit the kernel refused.

use std::io;
use std::path::PathBuf;

use crate::validate::ValidationError;

/// Anything that can go wrong while detecting, creating, configuring or removing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroupfs interface file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    /// The kernel refused a value written to a cgroupfs interface file.
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    /// A cgroupfs file held something this crate cannot parse.
    #[error("parsing {path}: {reason} (content {content:?})")]
    Parse {
        path: PathBuf,
        content: String,
        reason: String,
    },

    /// Creating a cgroup directory failed.
    #[error("creating cgroup {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },

    /// Removing a cgroup directory failed for a reason other than "still busy".
    #[error("removing cgroup {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },

    /// The cgroup still had processes after the destroy deadline.
    #[error("cgroup {path} still has processes {pids:?} after waiting for it to empty")]
    NotEmpty { path: PathBuf, pids: Vec<i32> },

    /// The container's cgroup already exists and holds processes (another container's?).
    #[error("cgroup {path} is already in use by processes {pids:?}; choose another linux.cgroupsPath or container id")]
    InUse { path: PathBuf, pids: Vec<i32> },

    /// No cgroup filesystem is mounted at all.
    #[error("no cgroup filesystem is mounted (looked in {mountinfo})")]
    NoCgroupFs { mountinfo: PathBuf },

    /// The process' own cgroup could not be found for a hierarchy (needed for relative paths).
    #[error("own cgroup for hierarchy {hierarchy} not found in {path}")]
    OwnCgroup { hierarchy: String, path: PathBuf },

    /// The cgroupsPath cannot be used.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    BadPath { path: String, reason: String },

    /// A limit was requested for a controller this host does not offer on any hierarchy.
    #[error(
        "linux.resources.{field}: controller {controller} is not available on this host ({detail})"
    )]
    ControllerUnavailable {
        field: String,
        controller: String,
        detail: String,
    },

    /// The resources failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// Loading or attaching the v2 device-filter BPF program failed.
    #[error("device filter: {op} failed: {source}")]
    Bpf { op: &'static str, source: io::Error },

    /// Freezing or thawing did not reach the wanted state in time.
    #[error("cgroup {path}: {what} did not complete within {millis} ms")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        millis: u64,
    },

    /// Delivering a signal to a process of the cgroup failed.
    #[error("signalling pid {pid}: {source}")]
    Signal { pid: i32, source: io::Error },

    /// A systemd call of the systemd cgroup driver failed (no bus, refused, job failed).
    #[error("systemd ({instance} instance) unit {unit}: {op}: {source}")]
    Systemd {
        unit: String,
        instance: &'static str,
        op: &'static str,
        source: Box<crate::systemd::client::CallError>,
    },

    /// An `org.systemd.property.*` annotation that cannot become a unit property.
    #[error("annotations[{key:?}]: {reason}")]
    Annotation { key: String, reason: String },

    /// The systemd driver was asked for on a host whose layout it does not drive.
    #[error("--systemd-cgroup: the systemd cgroup driver needs a pure cgroup v2 host, this one is {mode}; use the cgroupfs driver (drop --systemd-cgroup)")]
    SystemdNeedsV2 { mode: String },

    /// The event mechanism (eventfd, inotify, poll) failed.
    #[error("{what}: {source}")]
    Event { what: String, source: io::Error },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;
