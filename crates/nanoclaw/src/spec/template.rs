//! What `nanoclaw spec` writes: runc's default config.json (`runc spec`), and with
//! `--rootless` the same transformation `runc spec --rootless` applies.
//!
//! One deliberate difference: `process.terminal` is false, because `nanoclaw run` in the
//! foreground passes stdio through (a terminal needs --console-socket).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}: already exists; remove it first")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// runc's default spec (runc 1.1 `spec`), terminal off.
pub fn default_spec() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "nanoclaw",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    // Security profile: the Docker-equivalent seccomp profile for these capabilities,
    // and runc >= 1.2's extra masked path.
    crate::security::harden_template(&mut spec);
    spec
}

/// `runc spec --rootless`: a user namespace mapping root to the caller's uid/gid, no network
/// namespace (an unprivileged user cannot configure one), /sys bind-mounted from the host
/// (sysfs needs a network namespace the user owns), no `gid=` mount options (gid 5 is not
/// mapped), no resources (no delegated cgroup).
pub fn rootless_spec(uid: u32, gid: u32) -> Value {
    let mut spec = default_spec();
    if let Some(linux) = spec.get_mut("linux").and_then(Value::as_object_mut) {
        linux.remove("resources");
        let mut namespaces: Vec<Value> = linux
            .get("namespaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|n| !matches!(n["type"].as_str(), Some("network" | "user")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        namespaces.push(json!({"type": "user"}));
        linux.insert("namespaces".into(), Value::Array(namespaces));
        linux.insert(
            "uidMappings".into(),
            json!([{"containerID": 0, "hostID": uid, "size": 1}]),
        );
        linux.insert(
            "gidMappings".into(),
            json!([{"containerID": 0, "hostID": gid, "size": 1}]),
        );
    }
    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                continue;
            }
            if let Some(opts) = m.get_mut("options").and_then(Value::as_array_mut) {
                opts.retain(|o| !o.as_str().is_some_and(|s| s.starts_with("gid=")));
            }
        }
    }
    spec
}

/// Writes `<bundle>/config.json` (refuses to overwrite, like runc).
pub fn write(bundle: &Path, rootless: bool) -> Result<PathBuf, TemplateError> {
    let spec = if rootless {
        rootless_spec(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        default_spec()
    };
    let path = bundle.join("config.json");
    let io = |source| TemplateError::Io {
        path: path.clone(),
        source,
    };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(TemplateError::Exists(path))
        }
        Err(e) => return Err(io(e)),
    };
    let mut text = serde_json::to_string_pretty(&spec).unwrap_or_default();
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(io)?;
    Ok(path)
}
