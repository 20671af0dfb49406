//! `nanoclaw events`: runc's event stream for one container. Every `--interval` a
//! `{"type":"stats","id":…,"data":{…}}` line (runc's stats shape), and a `{"type":"oom","id":…}`
//! line as soon as the OOM killer acts in the container's cgroup. `--stats` prints one stats
//! snapshot and exits. The stream ends when the container stops.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::container::state::{self, StateDir, StateError, Status};
use crate::container::status_of;

/// What `events` was asked.
#[derive(Debug, Clone)]
pub struct EventsRequest {
    /// Time between stats events, as given (e.g. 5s, 500ms): checked by [`parse_interval`].
    pub interval: String,
    /// Print one stats snapshot and exit.
    pub stats: bool,
    /// The container.
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("container with id {id} is not running (it is stopped)")]
    Stopped { id: String },
    #[error("container {id:?} has no cgroup (rootless without cgroup access)")]
    NoCgroup { id: String },
    #[error("--interval {value:?}: {reason}")]
    Interval { value: String, reason: String },
    #[error(transparent)]
    Cgroup(#[from] crate::container::cgroup::CgroupStepError),
    #[error("container {id:?}: {source}")]
    Stats {
        id: String,
        source: nanoclaw_cgroups::CgroupError,
    },
    #[error("writing events: {0}")]
    Output(std::io::Error),
}

/// One line of the stream, as runc prints it.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<nanoclaw_cgroups::Stats>,
}

/// Parses `--interval` (Go-style durations as runc takes them: 5s, 100ms, 1m).
pub fn parse_interval(s: &str) -> Result<Duration, EventsError> {
    let bad = |reason: &str| EventsError::Interval {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let d = humantime::parse_duration(s.trim()).map_err(|e| bad(&e.to_string()))?;
    if d.is_zero() {
        return Err(bad("must be greater than zero"));
    }
    Ok(d)
}

/// Runs the command, writing JSON lines to `out`.
pub fn events(root: &Path, args: &EventsRequest, out: &mut dyn Write) -> Result<(), EventsError> {
    let interval = parse_interval(&args.interval)?;
    let id = args.id.as_str();
    // Read what we need under the lock, then let go of it: the stream may run for hours and
    // must not block `delete`.
    let (mgr, st) = {
        let dir = StateDir::open(root, id)?;
        let st = dir.load()?;
        if status_of(&dir, &st) == Status::Stopped {
            return Err(EventsError::Stopped { id: id.to_string() });
        }
        let mgr = crate::container::cgroup::load(dir.path())?.filter(|m| !m.paths().is_empty());
        (
            mgr.ok_or_else(|| EventsError::NoCgroup { id: id.to_string() })?,
            st,
        )
    };
    let emit = |out: &mut dyn Write, ev: &Event<'_>| -> Result<(), EventsError> {
        let line = serde_json::to_string(ev).map_err(|e| EventsError::Output(e.into()))?;
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(EventsError::Output)
    };
    let stats = |mgr: &dyn nanoclaw_cgroups::CgroupManager| {
        mgr.stats().map_err(|source| EventsError::Stats {
            id: id.to_string(),
            source,
        })
    };
    if args.stats {
        return emit(
            out,
            &Event {
                kind: "stats",
                id,
                data: Some(stats(mgr.as_ref())?),
            },
        );
    }
    let alive = || {
        st.pid
            .is_some_and(|p| state::init_alive(p, st.init_start_time))
    };
    let mut watcher = mgr.oom_watcher().map_err(|source| EventsError::Stats {
        id: id.to_string(),
        source,
    })?;
    let mut next = Instant::now() + interval;
    // Poll liveness at least this often so the stream ends soon after the container does.
    let tick = Duration::from_millis(200);
    while alive() {
        let wait = next.saturating_duration_since(Instant::now()).min(tick);
        match watcher.wait(Some(wait)) {
            Ok(nanoclaw_cgroups::OomEvent::Oom) => emit(
                out,
                &Event {
                    kind: "oom",
                    id,
                    data: None,
                },
            )?,
            Ok(nanoclaw_cgroups::OomEvent::Gone) => break,
            Ok(nanoclaw_cgroups::OomEvent::Timeout) => {}
            Err(source) => {
                return Err(EventsError::Stats {
                    id: id.to_string(),
                    source,
                })
            }
        }
        if Instant::now() >= next {
            match mgr.stats() {
                Ok(s) => emit(
                    out,
                    &Event {
                        kind: "stats",
                        id,
                        data: Some(s),
                    },
                )?,
                Err(_) if !alive() => break,
                Err(source) => {
                    return Err(EventsError::Stats {
                        id: id.to_string(),
                        source,
                    })
                }
            }
            next = Instant::now() + interval;
        }
    }
    // An OOM kill that ended the container may be the last thing that happened: report it.
    if let Ok(nanoclaw_cgroups::OomEvent::Oom) = watcher.wait(Some(Duration::from_millis(1))) {
        emit(
            out,
            &Event {
                kind: "oom",
                id,
                data: None,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("100ms").unwrap(), Duration::from_millis(100));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
