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
    /// Error type for refusals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Human-readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Append-only JSON-lines log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating 0600) the log.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
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
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = f.write_all(&line) {
            eprintln!("ironclaw-broker: audit log {}: {e}", self.path.display());
        }
    }
}
