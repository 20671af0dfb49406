//! The channel between the runtime (parent) and the container init (child): a
//! `SOCK_SEQPACKET` socketpair, one message per packet, so a message is never split or merged.
//!
//! Protocol (in order):
//! 1. parent → child `Go`: uid/gid maps are written; the child may start its setup.
//! 2. parent → child `Placed`: the init is in the container's cgroup. The parent moves it
//!    while the child already mounts (a cgroup v1 move may wait for an RCU grace period: 10–20
//!    ms were seen on this kind of host under load); the child waits for `Placed` before anything that depends on its cgroup
//!    (the cgroup namespace, cgroup mounts, and everything after the mounts). An init created
//!    inside its cgroup (`CLONE_INTO_CGROUP`, pure v2) gets `Placed` right after `Go`.
//! 3. Only when the config has prestart or createRuntime hooks: child → parent `Mounted` (the
//!    mount namespace and every rootfs mount exist; pivot_root has not happened), the parent
//!    runs those hooks in the runtime's namespaces, then parent → child `HooksDone`. The child
//!    then runs the createContainer hooks and pivots (runtime spec: prestart, createRuntime,
//!    createContainer, in that order, after the mounts and before pivot_root).
//! 4. child → parent `Ready` (setup done, waiting on the exec fifo) or `Error(message)`.
//!
//! The child's messages are untrusted by the parent only in the sense that they are bounded
//! text shown to the user; the parent never acts on their content.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

const TAG_GO: u8 = 1;
const TAG_READY: u8 = 2;
const TAG_ERROR: u8 = 3;
const TAG_PLACED: u8 = 4;
const TAG_MOUNTED: u8 = 5;
const TAG_HOOKS_DONE: u8 = 6;
/// Largest message (an error text is truncated to fit).
const MAX_MSG: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync socket: {0}")]
    Io(#[from] nix::Error),
    #[error("the other side closed the sync socket")]
    Closed,
    #[error("unexpected sync message tag {0}")]
    Unexpected(u8),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    Go,
    Placed,
    Mounted,
    HooksDone,
    Ready,
    Error(String),
}

/// One end of the sync channel.
#[derive(Debug)]
pub struct SyncSocket {
    fd: OwnedFd,
}

/// Creates the pair (parent end, child end), both close-on-exec.
pub fn pair() -> Result<(SyncSocket, SyncSocket), SyncError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((SyncSocket { fd: a }, SyncSocket { fd: b }))
}

impl AsRawFd for SyncSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl SyncSocket {
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let mut buf = Vec::with_capacity(64);
        match msg {
            Msg::Go => buf.push(TAG_GO),
            Msg::Placed => buf.push(TAG_PLACED),
            Msg::Mounted => buf.push(TAG_MOUNTED),
            Msg::HooksDone => buf.push(TAG_HOOKS_DONE),
            Msg::Ready => buf.push(TAG_READY),
            Msg::Error(text) => {
                buf.push(TAG_ERROR);
                let bytes = text.as_bytes();
                let n = bytes.len().min(MAX_MSG - 1);
                buf.extend_from_slice(bytes.get(..n).unwrap_or_default());
            }
        }
        loop {
            // SAFETY: buf is a valid initialized buffer of buf.len() bytes and fd is open.
            let r = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = nix::Error::last();
            if e != nix::Error::EINTR {
                return Err(if e == nix::Error::EPIPE {
                    SyncError::Closed
                } else {
                    e.into()
                });
            }
        }
    }

    pub fn recv(&self) -> Result<Msg, SyncError> {
        self.recv_flags(0)
    }

    /// A message already queued, without waiting: `None` when there is none.
    pub fn try_recv(&self) -> Option<Msg> {
        self.recv_flags(libc::MSG_DONTWAIT).ok()
    }

    fn recv_flags(&self, flags: libc::c_int) -> Result<Msg, SyncError> {
        let mut buf = [0u8; MAX_MSG];
        let n = loop {
            // SAFETY: buf is a writable buffer of MAX_MSG bytes and fd is open.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = nix::Error::last();
            // ECONNRESET: the peer closed with one of our messages unread (an init that
            // failed before reading `Placed`). The kernel reports that once, ahead of what
            // the peer sent before closing: read on to get its error message, then EOF.
            if e != nix::Error::EINTR && e != nix::Error::ECONNRESET {
                return Err(e.into());
            }
        };
        let msg = buf.get(..n).ok_or(SyncError::Closed)?;
        match msg.split_first() {
            None => Err(SyncError::Closed),
            Some((&TAG_GO, _)) => Ok(Msg::Go),
            Some((&TAG_PLACED, _)) => Ok(Msg::Placed),
            Some((&TAG_MOUNTED, _)) => Ok(Msg::Mounted),
            Some((&TAG_HOOKS_DONE, _)) => Ok(Msg::HooksDone),
            Some((&TAG_READY, _)) => Ok(Msg::Ready),
            Some((&TAG_ERROR, text)) => Ok(Msg::Error(String::from_utf8_lossy(text).into_owned())),
            Some((&t, _)) => Err(SyncError::Unexpected(t)),
        }
    }
}
