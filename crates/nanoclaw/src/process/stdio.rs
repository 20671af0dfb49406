//! Keeps the caller's terminal away from a container process that has no terminal of its own
//! (`process.terminal: false`).
//!
//! A process holding an fd of the operator's terminal can push input into it (TIOCSTI, on
//! kernels before 6.2 or with `dev.tty.legacy_tiocsti=1`), paste with TIOCLINUX, read the
//! operator's keystrokes, or change its modes. So when the runtime's own fd 0, 1 or 2 is a
//! terminal, the container never gets it:
//!
//! * in the foreground (`run`, `exec` without `-d`) the runtime relays that fd through a pipe,
//!   as runc does ([`RelayEnds`], [`Relay`]);
//! * detached (`create`, `run -d`, `exec -d`) nobody stays to relay, so the process gets
//!   `/dev/null` there instead (runc would pass the terminal on).
//!
//! fds that are not terminals (pipes, files, sockets from an engine) are passed on unchanged:
//! engines depend on that, and such fds carry none of these ioctls.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// What the container process's fds 0, 1 and 2 become; `None` keeps the runtime's.
#[derive(Debug, Default)]
pub struct ContainerStdio {
    fds: [Option<OwnedFd>; 3],
}

/// The runtime's ends of the relay pipes (foreground only).
#[derive(Debug, Default)]
pub struct RelayEnds {
    /// Write end of the container's stdin pipe; the caller's fd 0 is read into it.
    stdin: Option<OwnedFd>,
    /// Read ends of the container's stdout/stderr pipes, copied to the caller's fd 1/2.
    outputs: [Option<OwnedFd>; 2],
}

/// Replaces every terminal among the runtime's fds 0-2: with a relay pipe in the foreground,
/// with /dev/null when detached. Returns the container's fds and, in the foreground, the
/// runtime's ends (to start a [`Relay`] once the process exists).
pub fn isolate_from_caller_tty(
    foreground: bool,
) -> std::io::Result<(ContainerStdio, Option<RelayEnds>)> {
    let mut container = ContainerStdio::default();
    let mut ends = RelayEnds::default();
    for fd in 0..3 {
        // SAFETY: fds 0-2 are the process's stdio; borrowed only for the isatty call.
        let tty = nix::unistd::isatty(unsafe { BorrowedFd::borrow_raw(fd) }).unwrap_or(false);
        if !tty {
            continue;
        }
        let slot = fd as usize;
        if !foreground {
            let null = nix::fcntl::open(
                "/dev/null",
                OFlag::O_RDWR | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            container.fds[slot] = Some(null);
            log::warn!("fd {fd} is a terminal and process.terminal is false: the detached container gets /dev/null there");
            continue;
        }
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        if fd == 0 {
            container.fds[0] = Some(r);
            ends.stdin = Some(w);
        } else {
            container.fds[slot] = Some(w);
            ends.outputs[slot - 1] = Some(r);
        }
    }
    let relaying = ends.stdin.is_some() || ends.outputs.iter().any(Option::is_some);
    Ok((container, relaying.then_some(ends)))
}

impl ContainerStdio {
    /// The fds the child must keep until [`ContainerStdio::install`].
    pub fn kept_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds.iter().flatten().map(|fd| fd.as_raw_fd())
    }

    /// In the child: puts each replacement onto its fd (0, 1, 2).
    pub fn install(&self) -> nix::Result<()> {
        for (target, fd) in self.fds.iter().enumerate() {
            if let Some(fd) = fd {
                // SAFETY: dup2 onto 0/1/2 replaces the process's stdio, which is the intent; no
                // Rust object owns fds 0-2 (stdio is never held as an OwnedFd).
                let r = unsafe { libc::dup2(fd.as_raw_fd(), target as RawFd) };
                nix::errno::Errno::result(r)?;
            }
        }
        Ok(())
    }
}

/// The running relay thread; [`Relay::finish`] stops it once the process has exited.
pub struct Relay {
    stop: OwnedFd,
    thread: std::thread::JoinHandle<()>,
}

impl RelayEnds {
    /// Starts copying: caller's stdin → container, container's stdout/stderr → caller's.
    pub fn start(self) -> std::io::Result<Relay> {
        let (stop_r, stop_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        for fd in self.stdin.iter().chain(self.outputs.iter().flatten()) {
            set_nonblocking(fd.as_fd())?;
        }
        let thread = std::thread::Builder::new()
            .name("stdio-relay".into())
            .spawn(move || relay_loop(self, stop_r))?;
        Ok(Relay {
            stop: stop_w,
            thread,
        })
    }
}

impl Relay {
    /// Copies what the pipes hold when the process has exited, then stops. Output written
    /// later by processes that outlive it (a daemon holding stdout, a background writer) is
    /// not waited for: that would hang the caller, as `runc exec` does in that case.
    pub fn finish(self) {
        let _ = nix::unistd::write(&self.stop, b"x");
        let _ = self.thread.join();
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The caller's fd `n` (0-2), borrowed for the relay's reads and writes.
fn caller(n: RawFd) -> BorrowedFd<'static> {
    // SAFETY: fds 0-2 of the runtime stay open for its whole life; nothing closes them.
    unsafe { BorrowedFd::borrow_raw(n) }
}

fn relay_loop(mut ends: RelayEnds, stop: OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut caller_stdin_open = ends.stdin.is_some();
    loop {
        // Poll set: stop, each open output, and stdin (the caller's side while nothing is
        // pending, the pipe while something is).
        let mut fds = vec![PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        let out_idx: Vec<usize> = (0..2).filter(|i| ends.outputs[*i].is_some()).collect();
        for i in &out_idx {
            if let Some(fd) = &ends.outputs[*i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let stdin_slot = match (&ends.stdin, pending.is_empty(), caller_stdin_open) {
            (Some(_), true, true) => {
                fds.push(PollFd::new(caller(0), PollFlags::POLLIN));
                Some(false)
            }
            (Some(w), false, _) => {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                Some(true)
            }
            _ => None,
        };
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => break,
        }
        let ready = |i: usize, fds: &[PollFd<'_>]| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let stop_now = ready(0, &fds);
        let out_ready: Vec<bool> = (0..out_idx.len()).map(|k| ready(1 + k, &fds)).collect();
        let stdin_ready = stdin_slot.is_some() && ready(1 + out_idx.len(), &fds);
        drop(fds);
        for (k, i) in out_idx.iter().enumerate() {
            if out_ready[k] && !copy_available(&mut ends.outputs[*i], 1 + *i as RawFd, &mut buf) {
                ends.outputs[*i] = None;
            }
        }
        if stdin_ready {
            relay_stdin(&mut ends, &mut pending, &mut caller_stdin_open, &mut buf);
        }
        if stop_now {
            // The process exited: copy what the pipes held at that moment, then stop. Only
            // that much: a process left behind (a background writer) must not keep the
            // runtime relaying forever.
            for i in 0..2 {
                let Some(fd) = ends.outputs[i].take() else {
                    continue;
                };
                let mut left = queued_bytes(&fd);
                while left > 0 {
                    let want = left.min(buf.len());
                    let n = match nix::unistd::read(&fd, buf.get_mut(..want).unwrap_or_default()) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if !write_all_blocking(caller(1 + i as RawFd), buf.get(..n).unwrap_or_default())
                    {
                        break;
                    }
                    left = left.saturating_sub(n);
                }
            }
            return;
        }
    }
}

/// Bytes waiting in a pipe (FIONREAD); 0 if the kernel cannot say.
fn queued_bytes(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Copies what is available from `src` to the caller's fd `dst`. False at EOF or on an error
/// that ends this stream.
fn copy_available(src: &mut Option<OwnedFd>, dst: RawFd, buf: &mut [u8]) -> bool {
    let Some(fd) = src.as_ref() else { return false };
    match nix::unistd::read(fd, buf) {
        Ok(0) => false,
        Ok(n) => write_all_blocking(caller(dst), buf.get(..n).unwrap_or_default()),
        Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => true,
        Err(_) => false,
    }
}

fn write_all_blocking(fd: BorrowedFd<'_>, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, PollTimeout::from(100u16));
            }
            Err(_) => return false,
        }
    }
    true
}

/// One step of the stdin relay: read the caller's terminal when nothing is pending, else push
/// the pending bytes into the (non-blocking) pipe. The container closing its stdin, or the
/// caller's EOF, ends the stdin relay.
fn relay_stdin(
    ends: &mut RelayEnds,
    pending: &mut Vec<u8>,
    caller_open: &mut bool,
    buf: &mut [u8],
) {
    let Some(w) = ends.stdin.as_ref() else { return };
    if pending.is_empty() {
        match nix::unistd::read(caller(0), buf) {
            Ok(0) => {
                *caller_open = false;
                ends.stdin = None; // EOF reaches the container
            }
            Ok(n) => pending.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            Err(_) => {
                *caller_open = false;
                ends.stdin = None;
            }
        }
        return;
    }
    match nix::unistd::write(w, pending) {
        Ok(n) => {
            pending.drain(..n.min(pending.len()));
        }
        Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
        // The container closed its stdin (EPIPE) or the pipe broke: stop relaying stdin.
        Err(_) => {
            pending.clear();
            ends.stdin = None;
        }
    }
}
