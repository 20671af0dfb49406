//! OOM notification. cgroup v1: an eventfd registered for `memory.oom_control` through
//! `cgroup.event_control` (the kernel signals it on every OOM in the cgroup, and once more when
//! the cgroup is removed). cgroup v2: inotify on `memory.events`, reporting when its `oom_kill`
//! counter grows.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::error::{CgroupError, Result};
use crate::fs;

/// What [`OomWatcher::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The OOM killer acted in the cgroup.
    Oom,
    /// The cgroup was removed.
    Gone,
    /// Nothing within the timeout.
    Timeout,
}

enum Inner {
    None,
    V1 {
        dir: PathBuf,
        efd: OwnedFd,
        _control: File,
    },
    V2 {
        dir: PathBuf,
        inotify: OwnedFd,
        last: u64,
    },
}

/// Waits for OOM events of one cgroup.
pub struct OomWatcher {
    inner: Inner,
}

fn ev(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> CgroupError {
    let what = what.into();
    move |e| CgroupError::Event {
        what,
        source: e.into(),
    }
}

impl OomWatcher {
    /// A watcher that never fires (no memory cgroup).
    pub fn none() -> Self {
        OomWatcher { inner: Inner::None }
    }

    /// Registers for OOM notification on a v1 memory cgroup.
    pub fn v1(dir: &Path) -> Result<Self> {
        let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
            .map_err(ev("eventfd"))?;
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|source| CgroupError::Read {
            path: control_path,
            source,
        })?;
        fs::write(
            dir,
            "cgroup.event_control",
            format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
        )?;
        Ok(OomWatcher {
            inner: Inner::V1 {
                dir: dir.to_path_buf(),
                efd,
                _control: control,
            },
        })
    }

    /// Watches `memory.events` of a v2 cgroup.
    pub fn v2(dir: &Path) -> Result<Self> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(ev("inotify_init"))?;
        let events = dir.join("memory.events");
        inotify::add_watch(
            &fd,
            &events,
            inotify::WatchFlags::MODIFY | inotify::WatchFlags::DELETE_SELF,
        )
        .map_err(ev(format!("inotify_add_watch {}", events.display())))?;
        let last = fs::keyed(&fs::read_keyed(dir, "memory.events")?, "oom_kill").unwrap_or(0);
        Ok(OomWatcher {
            inner: Inner::V2 {
                dir: dir.to_path_buf(),
                inotify: fd,
                last,
            },
        })
    }

    /// Waits up to `timeout` (forever with `None`) for the next event.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<OomEvent> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) => Some(r),
                    None => return Ok(OomEvent::Timeout),
                },
                None => None,
            };
            match &mut self.inner {
                Inner::None => {
                    std::thread::sleep(remaining.unwrap_or(Duration::from_secs(3600)));
                    if deadline.is_some() {
                        return Ok(OomEvent::Timeout);
                    }
                }
                Inner::V1 { dir, efd, .. } => {
                    if !wait_readable(efd, remaining)? {
                        return Ok(OomEvent::Timeout);
                    }
                    let mut buf = [0u8; 8];
                    rustix::io::read(&*efd, &mut buf).map_err(ev("read eventfd"))?;
                    return Ok(if dir.join("memory.oom_control").exists() {
                        OomEvent::Oom
                    } else {
                        OomEvent::Gone
                    });
                }
                Inner::V2 { dir, inotify, last } => {
                    if !wait_readable(inotify, remaining)? {
                        return Ok(OomEvent::Timeout);
                    }
                    let mut buf = [0u8; 4096];
                    while rustix::io::read(&*inotify, &mut buf).is_ok_and(|n| n > 0) {}
                    let Some(content) = fs::read_opt(dir, "memory.events")? else {
                        return Ok(OomEvent::Gone);
                    };
                    let now = fs::keyed(
                        &fs::parse_keyed(&dir.join("memory.events"), &content)?,
                        "oom_kill",
                    )
                    .unwrap_or(0);
                    if now > *last {
                        *last = now;
                        return Ok(OomEvent::Oom);
                    }
                }
            }
        }
    }
}

/// Polls `fd` for readability; false on timeout.
fn wait_readable(fd: &OwnedFd, timeout: Option<Duration>) -> Result<bool> {
    let ts = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ev("poll")(e)),
        }
    }
}
