//! Handing the `SCMP_ACT_NOTIFY` listener fd to the seccomp agent at `linux.seccomp.listenerPath`.
//!
//! Wire format (OCI runtime spec, "Seccomp notify"; what runc sends): one `sendmsg` on a
//! `SOCK_STREAM` unix socket connected to `listenerPath`, carrying the listener fd in
//! `SCM_RIGHTS` and, as the message bytes, the JSON `ContainerProcessState`
//! (`ociVersion`, `fds: ["seccompFd"]`, `pid`, `metadata`, `state`).

use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use oci_spec::runtime::{ContainerProcessState, State, SECCOMP_FD_NAME};

/// The largest state message [`recv_listener_fd`] accepts.
const MAX_STATE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("connecting to the seccomp agent at {path:?}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sending the listener fd to the seccomp agent at {path:?}: {source}")]
    Send {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the container process state: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("receiving the listener fd: {0}")]
    Recv(#[source] std::io::Error),
    #[error("the message carried {0} file descriptors, expected exactly one")]
    FdCount(usize),
    #[error("the container process state is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("the container process state is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
}

/// The state message for the agent: the container state, the pid of the container process as the
/// runtime sees it, and `listenerMetadata`.
pub fn process_state(state: State, pid: i32, metadata: Option<String>) -> ContainerProcessState {
    let mut out = ContainerProcessState::default();
    out.set_version(state.version().clone());
    out.set_fds(vec![SECCOMP_FD_NAME.to_owned()]);
    out.set_pid(pid);
    out.set_metadata(metadata);
    out.set_state(state);
    out
}

/// Connects to `listener_path` and sends `listener` with `state` as payload.
pub fn send_listener_fd(
    listener_path: &Path,
    listener: BorrowedFd<'_>,
    state: &ContainerProcessState,
) -> Result<(), NotifyError> {
    let stream = UnixStream::connect(listener_path).map_err(|source| NotifyError::Connect {
        path: listener_path.to_owned(),
        source,
    })?;
    send_over(&stream, listener, state)
}

/// Sends `listener` with `state` over an already connected agent socket. A container init
/// connects before pivot_root (while `listenerPath` on the host is reachable) and sends after
/// the filter is loaded.
pub fn send_over(
    stream: &UnixStream,
    listener: BorrowedFd<'_>,
    state: &ContainerProcessState,
) -> Result<(), NotifyError> {
    let payload = serde_json::to_vec(state).map_err(NotifyError::Encode)?;
    let peer = stream
        .peer_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_default();
    let send_err = |source: std::io::Error| NotifyError::Send {
        path: peer.clone(),
        source,
    };
    let fds = [listener.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| send_err(e.into()))?;
    // A stream socket may take the payload in pieces; the fd travelled with the first one.
    let rest = payload.get(sent..).unwrap_or_default();
    let mut writer = stream;
    writer.write_all(rest).map_err(send_err)?;
    Ok(())
}

/// The agent side: receives the listener fd and the state from an accepted connection, reading
/// the payload until the runtime closes its end. For tests and simple agents.
pub fn recv_listener_fd(
    stream: &mut UnixStream,
) -> Result<(OwnedFd, ContainerProcessState), NotifyError> {
    use std::io::Read;
    let mut first = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let (received, fds) = {
        let mut iov = [IoSliceMut::new(&mut first)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| NotifyError::Recv(e.into()))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| NotifyError::Recv(e.into()))? {
            if let ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        (msg.bytes, fds)
    };
    // SAFETY: every number in `fds` was just installed in this process by SCM_RIGHTS and is
    // owned by nobody else; wrapping each immediately makes sure all of them get closed even
    // when the message is rejected below.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.len() != 1 {
        return Err(NotifyError::FdCount(owned.len()));
    }
    first.truncate(received);
    let mut limited = stream.take(MAX_STATE_BYTES as u64);
    limited.read_to_end(&mut first).map_err(NotifyError::Recv)?;
    if first.len() >= MAX_STATE_BYTES {
        return Err(NotifyError::TooLarge);
    }
    let state = serde_json::from_slice(&first).map_err(NotifyError::Decode)?;
    let fd = owned.pop().ok_or(NotifyError::FdCount(0))?;
    Ok((fd, state))
}
