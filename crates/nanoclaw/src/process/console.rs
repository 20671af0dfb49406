//! `process.terminal`: the container's pseudo-terminal and the `--console-socket` protocol.
//!
//! runc's protocol, which podman's conmon and containerd's shim speak: the caller listens on a
//! unix socket and passes its path as `--console-socket`. The runtime connects to it *before*
//! entering the container (the path is in the host's mount namespace), the container's init
//! allocates the pty from the container's own devpts (after the rootfs is set up, so the pts
//! device belongs to the container), sends the master over the socket as one `SCM_RIGHTS`
//! message whose payload is the master's name, then makes the slave its controlling terminal and
//! its stdin/stdout/stderr.
//!
//! The runtime-side half ([`connect`]) and the container-side half ([`setup_in_container`]) are
//! separate because they run in different processes; [`receive_master`] is the caller's half
//! (used by `nanoclaw run -t` without a socket and by the tests).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

/// The payload sent with the master fd; runc sends the same name, and receivers use it only to
/// name the file they got.
const MASTER_NAME: &[u8] = b"/dev/ptmx";

/// `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL.
const SUN_PATH_MAX: usize = 107;

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_write_int_bad!(set_controlling_tty, libc::TIOCSCTTY);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("--console-socket {path:?}: the path is {len} bytes, longer than a unix socket address allows ({SUN_PATH_MAX})")]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("--console-socket {path:?}: connect: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("process.terminal: allocating a pty from /dev/ptmx: {0}")]
    OpenPty(nix::Error),
    #[error("process.terminal: opening the pty slave {path}: {source}")]
    OpenSlave { path: String, source: nix::Error },
    #[error("process.consoleSize: setting {height}x{width} on the pty: {source}")]
    Size {
        height: u32,
        width: u32,
        source: nix::Error,
    },
    #[error("process.terminal: sending the pty master over the console socket: {0}")]
    Send(nix::Error),
    #[error("process.terminal: receiving the pty master from the console socket: {0}")]
    Receive(nix::Error),
    #[error("process.terminal: the console socket closed without passing a pty master")]
    NoFd,
    #[error("process.terminal: making the pty the controlling terminal: {0}")]
    Ctty(nix::Error),
    #[error("process.terminal: duplicating the pty onto fd {fd}: {source}")]
    Dup { fd: RawFd, source: nix::Error },
}

/// Runtime side: connects to the caller's console socket. The returned stream must reach the
/// container's init (inherited or passed), which hands it to [`setup_in_container`].
pub fn connect(path: &Path) -> Result<UnixStream, ConsoleError> {
    let len = path.as_os_str().len();
    if len > SUN_PATH_MAX {
        return Err(ConsoleError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

/// Container side, in the init (or exec'd process) after the rootfs and /dev/pts are in place
/// and before execve: allocates the pty, applies `size` (height, width), sends the master over
/// `socket`, and makes the slave the controlling terminal and fds 0, 1 and 2.
///
/// The calling process must not be a process-group leader (it calls setsid).
pub fn setup_in_container(
    socket: &UnixStream,
    size: Option<(u32, u32)>,
) -> Result<(), ConsoleError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(ConsoleError::OpenPty)?;
    grantpt(&master).map_err(ConsoleError::OpenPty)?;
    unlockpt(&master).map_err(ConsoleError::OpenPty)?;
    let slave_path = ptsname_r(&master).map_err(ConsoleError::OpenPty)?;
    let slave = open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ConsoleError::OpenSlave {
        path: slave_path.clone(),
        source,
    })?;
    if let Some((height, width)) = size {
        let ws = Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `master` is an open pty master fd and `ws` is a valid winsize that outlives
        // the call; TIOCSWINSZ only reads it.
        unsafe { set_winsize(master.as_raw_fd(), &ws) }.map_err(|source| ConsoleError::Size {
            height,
            width,
            source,
        })?;
    }
    send_fd(socket, master.as_fd().as_raw_fd(), MASTER_NAME).map_err(ConsoleError::Send)?;
    drop(master);

    // A new session without a controlling terminal, then the slave becomes it. EPERM means we
    // already lead a session (e.g. the init of a new pid namespace set it up): that is fine.
    match nix::unistd::setsid() {
        Ok(_) | Err(nix::Error::EPERM) => {}
        Err(e) => return Err(ConsoleError::Ctty(e)),
    }
    // SAFETY: `slave` is an open tty fd; TIOCSCTTY takes an int argument (0: do not steal).
    unsafe { set_controlling_tty(slave.as_raw_fd(), 0) }.map_err(ConsoleError::Ctty)?;
    for fd in 0..=2 {
        dup_onto(&slave, fd)?;
    }
    Ok(())
}

fn dup_onto(src: &OwnedFd, target: RawFd) -> Result<(), ConsoleError> {
    // SAFETY: dup2 onto 0/1/2 replaces the process's stdio, which is exactly the intent; it does
    // not touch any fd Rust code owns elsewhere (stdio is never held as an OwnedFd).
    let r = unsafe { libc::dup2(src.as_raw_fd(), target) };
    if r < 0 {
        return Err(ConsoleError::Dup {
            fd: target,
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Sends one fd with `payload` as a single SCM_RIGHTS message.
pub fn send_fd(socket: &UnixStream, fd: RawFd, payload: &[u8]) -> nix::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Caller side: receives the pty master sent by [`setup_in_container`]. Any extra fds in the
/// message are closed.
pub fn receive_master(socket: &UnixStream) -> Result<OwnedFd, ConsoleError> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(ConsoleError::Receive)?;
    let mut got: Option<OwnedFd> = None;
    for cmsg in msg.cmsgs().map_err(ConsoleError::Receive)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in our table for this message; nothing
                // else owns it, so taking ownership (and closing extras on drop) is sound.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    got.ok_or(ConsoleError::NoFd)
}

/// `nanoclaw run` of a process.terminal container without `--console-socket` (what runc does
/// in the foreground): the runtime itself receives the pty master and relays it to its own
/// stdin/stdout, with its terminal in raw mode and the pty sized like it. Dropping the relay
/// restores the terminal and waits briefly for the container's last output.
pub struct Relay {
    saved: Option<nix::sys::termios::Termios>,
    output: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(master: OwnedFd) -> Result<Self, ConsoleError> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
            let mut ws = Winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);
            // SAFETY: stdin is a tty (tcgetattr succeeded) and TIOCGWINSZ writes exactly one
            // winsize into `ws`, which lives across the call.
            if unsafe { get_winsize(0, &mut ws) }.is_ok() {
                // SAFETY: the master fd is open (owned here) and TIOCSWINSZ only reads the
                // initialised winsize `ws`.
                let _ = unsafe { set_winsize(master.as_raw_fd(), &ws) };
            }
        }
        let mut to_pty = std::fs::File::from(master.try_clone().map_err(|e| {
            ConsoleError::Receive(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EBADF),
            ))
        })?);
        let mut from_pty = std::fs::File::from(master);
        // stdin → pty: never joined (a read on our stdin cannot be interrupted); it ends with the
        // process.
        let spawn_err = |e: std::io::Error| {
            ConsoleError::Receive(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EAGAIN),
            ))
        };
        std::thread::Builder::new()
            .name("pty-in".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_pty);
            })
            .map_err(spawn_err)?;
        // pty → stdout: ends with EIO once the container's last holder of the slave is gone.
        let output = std::thread::Builder::new()
            .name("pty-out".into())
            .spawn(move || {
                let _ = std::io::copy(&mut from_pty, &mut std::io::stdout().lock());
            })
            .map_err(spawn_err)?;
        Ok(Self {
            saved,
            output: Some(output),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(h) = self.output.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// Runs only as the child re-executed by `pty_is_allocated_sized_and_sent`: sets up the
    /// console on the inherited socket, then becomes a shell that reports what it sees.
    #[test]
    #[ignore = "helper: re-executed by pty_is_allocated_sized_and_sent"]
    fn console_child_helper() {
        let Ok(fd) = std::env::var("CLAW_CONSOLE_TEST_FD") else {
            return;
        };
        let fd: RawFd = fd.parse().unwrap();
        // SAFETY: the parent passed this inherited socket fd for us alone.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        setup_in_container(&sock, Some((33, 111))).unwrap();
        drop(sock);
        let err = Command::new("/bin/sh")
            .args(["-c", "tty; stty size; test -t 0 && echo stdin-is-tty"])
            .exec();
        panic!("exec: {err}");
    }

    #[test]
    fn pty_is_allocated_sized_and_sent() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // The child must inherit `theirs` across exec: clear close-on-exec on it.
        nix::fcntl::fcntl(
            theirs.as_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::console::tests::console_child_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CLAW_CONSOLE_TEST_FD", theirs.as_raw_fd().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        drop(theirs);
        let master = receive_master(&ours).unwrap();
        let mut out = Vec::new();
        let mut f = std::fs::File::from(master);
        // Reading the master returns EIO once the slave side has no more holders.
        let mut buf = [0u8; 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        child.wait().unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("/dev/pts/"), "{text}");
        assert!(text.contains("33 111"), "{text}");
        assert!(text.contains("stdin-is-tty"), "{text}");
    }

    #[test]
    fn overlong_socket_path_is_refused_by_name() {
        let p = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        let e = connect(&p).unwrap_err();
        assert!(
            matches!(e, ConsoleError::SocketPathTooLong { len: 205, .. }),
            "{e}"
        );
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let e = connect(Path::new("/nonexistent/console.sock")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/console.sock"), "{e}");
    }
}
