//! The audit log: one JSON object per line for every release and refusal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// One audit record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditEvent {
    /// Unix time, milliseconds.
    pub ts_ms: u128,
    /// `challenge`, `attested`, `release`, `refusal`.
    pub event: &'static str,
    /// The endpoint (`auth`, `attest`, `resource`).
    pub endpoint: &'static str,
    /// Peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Session id (the cookie), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// TEE kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee: Option<String>,
    /// Launch measurement (hex), when verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Resource path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// How a resource request authenticated: `cookie` or `bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'static str>,
    /// JWE key management algorithm of a release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<&'static str>,
    /// Error type for refusals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Size-based rotation of the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRotation {
    /// Rotate before a line would make the live file larger than this.
    pub max_bytes: u64,
    /// Rotated files kept: `audit.jsonl.1` (newest) .. `audit.jsonl.<keep>`;
    /// the oldest is deleted on rotation (0 is taken as 1).
    pub keep: usize,
}

impl AuditRotation {
    /// Default size limit: 16 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
    /// Default number of rotated files.
    pub const DEFAULT_KEEP: usize = 8;
}

impl Default for AuditRotation {
    fn default() -> Self {
        AuditRotation {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            keep: Self::DEFAULT_KEEP,
        }
    }
}

#[derive(Debug)]
struct Live {
    file: File,
    /// Bytes in the live file.
    size: u64,
}

/// Append-only JSON-lines log, rotated by size.
///
/// Lines are whole: each is written with one `write_all` under the lock, and a
/// rotation happens only between lines (before a line that would cross
/// `max_bytes`; a single line larger than the limit goes alone into a fresh
/// file). If a rotation fails (rename, create) the line is still appended to
/// the current file: a record is never dropped to honour the size limit.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    rotation: AuditRotation,
    live: Mutex<Live>,
}

fn open_live(path: &Path) -> std::io::Result<Live> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok(Live { file, size })
}

impl AuditLog {
    /// Opens (creating 0600) the log with the default rotation.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, AuditRotation::default())
    }

    /// Opens (creating 0600) the log, rotated per `rotation`.
    pub fn open_with(path: &Path, rotation: AuditRotation) -> std::io::Result<Self> {
        Ok(AuditLog {
            path: path.to_path_buf(),
            rotation,
            live: Mutex::new(open_live(path)?),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `n`th rotated file (`audit.jsonl.<n>`, 1 = newest).
    pub fn rotated_path(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Shifts `.1..keep-1` up by one, the live file to `.1`, and opens a fresh
    /// live file.
    fn rotate(&self, live: &mut Live) -> std::io::Result<()> {
        let keep = self.rotation.keep.max(1);
        for n in (1..keep).rev() {
            match std::fs::rename(self.rotated_path(n), self.rotated_path(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated_path(1))?;
        // The old file stays open in `live` until the new one exists: if creating
        // it fails, lines keep going to the (renamed) old file.
        *live = open_live(&self.path)?;
        Ok(())
    }

    /// Appends `ev` (timestamped now). A failing write is reported on stderr:
    /// the request it describes has already been decided.
    pub fn record(&self, mut ev: AuditEvent) {
        ev.ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let Ok(mut line) = serde_json::to_vec(&ev) else {
            return;
        };
        line.push(b'\n');
        let mut live = match self.live.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let len = line.len() as u64;
        if live.size > 0 && live.size.saturating_add(len) > self.rotation.max_bytes {
            if let Err(e) = self.rotate(&mut live) {
                eprintln!(
                    "ironclaw-broker: audit log {}: rotation failed, appending to the current file: {e}",
                    self.path.display()
                );
            }
        }
        match live.file.write_all(&line) {
            Ok(()) => live.size = live.size.saturating_add(len),
            Err(e) => {
                eprintln!("ironclaw-broker: audit log {}: {e}", self.path.display());
                // A partial write still counts towards the size.
                if let Ok(m) = live.file.metadata() {
                    live.size = m.len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: String) -> AuditEvent {
        AuditEvent {
            event: "refusal",
            endpoint: "resource",
            reason: Some(reason),
            ..Default::default()
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_line_larger_than_the_limit_goes_alone_into_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open_with(
            &path,
            AuditRotation {
                max_bytes: 300,
                keep: 2,
            },
        )
        .unwrap();
        log.record(event("a".into()));
        log.record(event("b".repeat(1000)));
        log.record(event("c".into()));
        // live: c; .1: the big line alone; .2: a.
        let reasons = |p: &Path| -> Vec<String> {
            lines(p)
                .iter()
                .map(|v| v["reason"].as_str().unwrap().chars().take(1).collect())
                .collect()
        };
        assert_eq!(reasons(&path), ["c"]);
        assert_eq!(reasons(&log.rotated_path(1)), ["b"]);
        assert_eq!(reasons(&log.rotated_path(2)), ["a"]);
        // keep = 2: the next rotation drops "a", never a newer line.
        log.record(event("d".repeat(400)));
        assert_eq!(reasons(&log.rotated_path(2)), ["b"]);
        assert_eq!(reasons(&log.rotated_path(1)), ["c"]);
        assert_eq!(reasons(&path), ["d"]);
        assert!(!log.rotated_path(3).exists());
    }

    #[test]
    fn reopening_continues_the_size_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rot = AuditRotation {
            max_bytes: 500,
            keep: 1,
        };
        let log = AuditLog::open_with(&path, rot).unwrap();
        for i in 0..3 {
            log.record(event(format!("{i}")));
        }
        drop(log);
        let before = std::fs::metadata(&path).unwrap().len();
        let log = AuditLog::open_with(&path, rot).unwrap();
        for i in 3..20 {
            log.record(event(format!("{i}")));
        }
        assert!(before > 0);
        assert!(std::fs::metadata(&path).unwrap().len() <= 500);
        assert!(std::fs::metadata(log.rotated_path(1)).unwrap().len() <= 500);
        let all: Vec<_> = lines(&log.rotated_path(1))
            .into_iter()
            .chain(lines(&path))
            .map(|v| v["reason"].as_str().unwrap().parse::<u32>().unwrap())
            .collect();
        assert_eq!(*all.last().unwrap(), 19);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
    }
}
