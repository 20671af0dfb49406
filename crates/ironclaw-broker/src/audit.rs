//! The audit log: one JSON object per line for every release and refusal.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::session::PeerKey;

/// One audit record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditEvent {
    /// Unix time, milliseconds.
    pub ts_ms: u128,
    /// `challenge`, `attested`, `release`, `refusal` (and, written apart from
    /// this struct, `suppressed`: see [`AuditLog::record_unauthenticated`]).
    pub event: &'static str,
    /// The endpoint (`auth`, `attest`, `resource`).
    pub endpoint: &'static str,
    /// Peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The session, when the request named one: [`crate::session::audit_ref`]
    /// of the cookie value, never the id itself.
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
    limiter: Mutex<Limiter>,
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
        Self::open_limited(path, rotation, AuditLimits::default())
    }

    /// Opens (creating 0600) the log, rotated per `rotation`, unauthenticated
    /// records limited per `limits`.
    pub fn open_limited(
        path: &Path,
        rotation: AuditRotation,
        limits: AuditLimits,
    ) -> std::io::Result<Self> {
        Ok(AuditLog {
            path: path.to_path_buf(),
            rotation,
            live: Mutex::new(open_live(path)?),
            limiter: Mutex::new(Limiter::new(limits)),
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

    /// Appends `ev` (timestamped now), unconditionally: releases, attestations,
    /// and refusals of authenticated requests. A failing write is reported on
    /// stderr: the request it describes has already been decided.
    pub fn record(&self, mut ev: AuditEvent) {
        ev.ts_ms = now_ms();
        self.flush_due_summaries(false);
        self.write_event(&ev);
    }

    /// Records `ev` about a request nobody has authenticated (a challenge, a
    /// refusal before or of attestation) from `peer`: anyone can send those as
    /// fast as the network allows, so they are rate-limited per peer and in
    /// total ([`AuditLimits`]). What is over the limit is not lost: it is
    /// counted per peer and error type, and written as one `suppressed` line
    /// per peer every `summary_interval` (and when the log is dropped).
    pub fn record_unauthenticated(&self, mut ev: AuditEvent, peer: PeerKey) {
        ev.ts_ms = now_ms();
        let admitted = {
            let mut l = lock(&self.limiter);
            l.admit(peer, &ev)
        };
        self.flush_due_summaries(false);
        if admitted {
            self.write_event(&ev);
        }
    }

    /// Writes every pending `suppressed` summary now.
    pub fn flush_summaries(&self) {
        self.flush_due_summaries(true);
    }

    fn flush_due_summaries(&self, force: bool) {
        let lines = {
            let mut l = lock(&self.limiter);
            l.take_summaries(force)
        };
        for line in lines {
            self.write_line(line);
        }
    }

    fn write_event(&self, ev: &AuditEvent) {
        if let Ok(line) = serde_json::to_vec(ev) {
            self.write_line(line);
        }
    }

    fn write_line(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        let mut live = lock(&self.live);
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

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush_due_summaries(true);
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Limits on records of unauthenticated requests (challenges and refusals):
/// token buckets per peer and for all peers together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuditLimits {
    /// Lines one peer may write in a burst.
    pub per_peer_burst: f64,
    /// Lines per second one peer may write, sustained.
    pub per_peer_per_sec: f64,
    /// Lines all peers together may write in a burst.
    pub global_burst: f64,
    /// Lines per second all peers together may write, sustained.
    pub global_per_sec: f64,
    /// How often pending `suppressed` summaries are written.
    pub summary_interval: Duration,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            per_peer_burst: 20.0,
            per_peer_per_sec: 1.0,
            global_burst: 200.0,
            global_per_sec: 20.0,
            summary_interval: Duration::from_secs(10),
        }
    }
}

/// Peers tracked individually; beyond this, new peers share one bucket and one
/// summary (`"peer": "other"`).
const MAX_TRACKED_PEERS: usize = 4096;
/// Peers with their own pending summary; beyond this, `"other"`.
const MAX_SUMMARY_PEERS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct Summary {
    count: u64,
    first_ms: u128,
    last_ms: u128,
    /// (endpoint/event/error) -> count, e.g. `resource:MissingCookie`.
    kinds: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Limiter {
    limits: AuditLimits,
    global: Bucket,
    peers: HashMap<PeerKey, Bucket>,
    other: Bucket,
    /// Pending summaries; `None` = peers beyond `MAX_SUMMARY_PEERS`.
    pending: HashMap<Option<PeerKey>, Summary>,
    last_flush: Instant,
}

impl Limiter {
    fn new(limits: AuditLimits) -> Self {
        let now = Instant::now();
        Limiter {
            limits,
            global: Bucket::full(limits.global_burst, now),
            peers: HashMap::new(),
            other: Bucket::full(limits.per_peer_burst, now),
            pending: HashMap::new(),
            last_flush: now,
        }
    }

    fn peer_bucket(&mut self, peer: PeerKey, now: Instant) -> Option<&mut Bucket> {
        let (rate, burst) = (self.limits.per_peer_per_sec, self.limits.per_peer_burst);
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            // Forget peers whose bucket has refilled: they are not limited.
            self.peers.retain(|_, b| {
                b.refill(now, rate, burst);
                b.tokens < burst
            });
        }
        if self.peers.len() >= MAX_TRACKED_PEERS && !self.peers.contains_key(&peer) {
            return None;
        }
        Some(
            self.peers
                .entry(peer)
                .or_insert_with(|| Bucket::full(burst, now)),
        )
    }

    /// Whether `ev` from `peer` may be written now; if not, it is counted.
    fn admit(&mut self, peer: PeerKey, ev: &AuditEvent) -> bool {
        let now = Instant::now();
        let l = self.limits;
        let peer_ok = match self.peer_bucket(peer, now) {
            Some(b) => b.take(now, l.per_peer_per_sec, l.per_peer_burst),
            None => self.other.take(now, l.per_peer_per_sec, l.per_peer_burst),
        };
        if peer_ok && self.global.take(now, l.global_per_sec, l.global_burst) {
            return true;
        }
        let key =
            if self.pending.contains_key(&Some(peer)) || self.pending.len() < MAX_SUMMARY_PEERS {
                Some(peer)
            } else {
                None
            };
        let s = self.pending.entry(key).or_default();
        if s.count == 0 {
            s.first_ms = ev.ts_ms;
        }
        s.count += 1;
        s.last_ms = ev.ts_ms;
        let kind = format!(
            "{}:{}",
            ev.endpoint,
            ev.error.as_deref().unwrap_or(ev.event)
        );
        *s.kinds.entry(kind).or_default() += 1;
        false
    }

    /// The summary lines due (all pending ones when `force`).
    fn take_summaries(&mut self, force: bool) -> Vec<Vec<u8>> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        if !force && now.saturating_duration_since(self.last_flush) < self.limits.summary_interval {
            return Vec::new();
        }
        self.last_flush = now;
        let ts = now_ms();
        let mut out = Vec::new();
        for (peer, s) in self.pending.drain() {
            let line = serde_json::json!({
                "ts_ms": ts,
                "event": "suppressed",
                "peer": peer.map_or_else(|| "other".to_string(), |p| p.to_string()),
                "count": s.count,
                "first_ts_ms": s.first_ms,
                "last_ts_ms": s.last_ms,
                "kinds": s.kinds,
            });
            if let Ok(bytes) = serde_json::to_vec(&line) {
                out.push(bytes);
            }
        }
        out
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
    fn unauthenticated_records_are_limited_per_peer_and_counted_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let limits = AuditLimits {
            per_peer_burst: 5.0,
            per_peer_per_sec: 0.0,
            global_burst: 8.0,
            global_per_sec: 0.0,
            summary_interval: Duration::from_secs(3600),
        };
        let log = AuditLog::open_limited(&path, AuditRotation::default(), limits).unwrap();
        let a = PeerKey::V4([10, 0, 0, 1]);
        let b = PeerKey::V4([10, 0, 0, 2]);
        for i in 0..100 {
            log.record_unauthenticated(event(format!("a{i}")), a);
        }
        // Peer b is not starved by a: it has its own bucket (the global one
        // still has 3 lines left).
        for i in 0..100 {
            log.record_unauthenticated(event(format!("b{i}")), b);
        }
        // Authenticated records are never limited.
        for i in 0..50 {
            log.record(AuditEvent {
                event: "release",
                endpoint: "resource",
                reason: Some(format!("r{i}")),
                ..Default::default()
            });
        }
        log.flush_summaries();
        let all = lines(&path);
        let count = |prefix: &str| {
            all.iter()
                .filter(|l| l["reason"].as_str().is_some_and(|r| r.starts_with(prefix)))
                .count()
        };
        assert_eq!(count("a"), 5);
        assert_eq!(count("b"), 3, "the global bucket's remainder");
        assert_eq!(count("r"), 50);
        let summary = |peer: &str| {
            all.iter()
                .find(|l| l["event"] == "suppressed" && l["peer"] == peer)
                .unwrap_or_else(|| panic!("no summary for {peer}: {all:?}"))
                .clone()
        };
        assert_eq!(summary("10.0.0.1")["count"], 95);
        assert_eq!(summary("10.0.0.2")["count"], 97);
        assert_eq!(summary("10.0.0.1")["kinds"]["resource:refusal"], 95);
        // Flushed once: nothing pending any more.
        log.flush_summaries();
        assert_eq!(lines(&path).len(), all.len());
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
