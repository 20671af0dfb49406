//! The host side of a service's sockets: listeners, connections, egress, signals, limits.
//!
//! One [`mio::Poll`] watches every socket and the signal pipe. Sockets are edge-triggered:
//! each connection remembers whether it may be readable/writable and is serviced when it
//! is *dirty* (a readiness event or a guest operation touched it), so an exchange costs
//! O(active connections), not O(all). Bytes buffered on the host per connection are
//! bounded by the window in each direction: the host reads from a socket only as much as
//! the enclave has granted, and the enclave may have at most a window of unacknowledged
//! sends. Idle connections are swept periodically.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ironclaw_abi::net::{self, encode_header, errno};
use ironclaw_abi::DATA_CAPACITY;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

use super::untrusted_guest_ops::{self, Op};
use super::{ListenAddr, ServiceConfig, ServiceError};
use crate::hypercall::{NetCallError, NetCalls};

const SIGNAL: Token = Token(usize::MAX);
/// Largest single read from a socket.
const READ_CHUNK: usize = 64 << 10;

enum Listener {
    Tcp(TcpListener),
    /// The socket file is held for its `Drop` (removes it).
    Unix(UnixListener, #[allow(dead_code)] SocketFile),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

/// A Unix socket file this service created; removed on drop if it is still ours.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[derive(Default)]
struct Conn {
    sock: Option<Stream>,
    /// Read from the socket, not yet delivered to the enclave (<= credit).
    rx: Vec<u8>,
    /// Bytes the enclave can still take (it returns credit with OP_WINDOW).
    credit: u64,
    tx: VecDeque<u8>,
    /// Written to the kernel, not yet acknowledged to the enclave.
    acked: u64,
    /// Sent by the enclave, not yet acknowledged (<= window).
    unacked: u64,
    readable: bool,
    writable: bool,
    connecting: bool,
    eof: bool,
    eof_sent: bool,
    error: Option<u32>,
    error_sent: bool,
    guest_closed: bool,
    shut_rd: bool,
    shut_wr: bool,
    shut_wr_done: bool,
    last_activity: Option<Instant>,
    dirty: bool,
    report: bool,
}

impl Conn {
    fn fail(&mut self, e: u32) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.sock = None;
        self.rx.clear();
        self.tx.clear();
        self.acked += self.unacked;
        self.unacked = 0;
    }
}

fn io_errno(e: &std::io::Error) -> u32 {
    match e.kind() {
        ErrorKind::ConnectionRefused => errno::CONNREFUSED,
        ErrorKind::ConnectionReset => errno::CONNRESET,
        ErrorKind::ConnectionAborted => errno::CONNABORTED,
        ErrorKind::BrokenPipe => errno::PIPE,
        ErrorKind::TimedOut => errno::TIMEDOUT,
        ErrorKind::HostUnreachable => errno::HOSTUNREACH,
        ErrorKind::NetworkUnreachable => errno::NETUNREACH,
        _ => errno::IO,
    }
}

/// The relay of one service. See the module documentation.
pub struct Relay {
    poll: Poll,
    events: Events,
    listeners: Vec<Option<Listener>>,
    listener_ready: Vec<bool>,
    bound: Vec<ListenAddr>,
    conns: HashMap<u32, Conn>,
    next_handle: u32,
    cfg: ServiceConfig,
    egress_names: Vec<String>,
    sig_rx: UnixStream,
    sig_ids: Vec<signal_hook::SigId>,
    grace_deadline: Option<Instant>,
    /// Events not tied to a connection's state (accepted, connect answers, listener closed).
    pending: Vec<u8>,
    dirty: Vec<u32>,
    report: Vec<u32>,
    next_sweep: Instant,
    buf: Vec<u8>,
}

fn bind_unix(path: &Path, addr: &str) -> Result<(UnixListener, SocketFile), ServiceError> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(ServiceError::SocketPath {
                addr: addr.to_string(),
                why: "exists and is not a socket; refusing to replace it".into(),
            });
        }
        // A socket file: in use by a running service, or left by one that was killed.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ServiceError::SocketPath {
                    addr: addr.to_string(),
                    why: "a running service listens there".into(),
                })
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|source| ServiceError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            }
            Err(e) => {
                return Err(ServiceError::SocketPath {
                    addr: addr.to_string(),
                    why: format!("cannot tell whether the socket file is stale: {e}"),
                })
            }
        }
    }
    let l = UnixListener::bind(path).map_err(|source| ServiceError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let m = std::fs::symlink_metadata(path).map_err(|source| ServiceError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok((
        l,
        SocketFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

/// Raises the soft open-file limit so `max_connections` sockets fit (never above the hard
/// limit; failure is not an error: accepts beyond the limit are then retried later).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let target = want.min(lim.rlim_max);
    if target > lim.rlim_cur {
        lim.rlim_cur = target;
        // SAFETY: setrlimit reads the valid `lim`; raising the soft limit up to the hard
        // limit needs no privilege and affects only this process.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

impl Relay {
    /// Binds every listener and installs the SIGTERM/SIGINT handlers. Nothing is left
    /// behind on error (bound sockets and files are released by drop).
    pub fn bind(cfg: &ServiceConfig) -> Result<Self, ServiceError> {
        let poll = Poll::new().map_err(ServiceError::Poll)?;
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for (i, addr) in cfg.listen.iter().enumerate() {
            let name = addr.to_string();
            let mut l = match addr {
                ListenAddr::Tcp(a) => {
                    let l = TcpListener::bind(*a).map_err(|source| ServiceError::Bind {
                        addr: name.clone(),
                        source,
                    })?;
                    let local = l.local_addr().map_err(|source| ServiceError::Bind {
                        addr: name.clone(),
                        source,
                    })?;
                    bound.push(ListenAddr::Tcp(local));
                    Listener::Tcp(l)
                }
                ListenAddr::Unix(p) => {
                    let (l, file) = bind_unix(p, &name)?;
                    bound.push(addr.clone());
                    Listener::Unix(l, file)
                }
            };
            let source: &mut dyn mio::event::Source = match &mut l {
                Listener::Tcp(l) => l,
                Listener::Unix(l, _) => l,
            };
            poll.registry()
                .register(source, Token(i), Interest::READABLE)
                .map_err(ServiceError::Poll)?;
            listeners.push(Some(l));
        }
        let (mut sig_rx, sig_tx) = UnixStream::pair().map_err(ServiceError::Poll)?;
        poll.registry()
            .register(&mut sig_rx, SIGNAL, Interest::READABLE)
            .map_err(ServiceError::Poll)?;
        let sig_tx = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(sig_tx));
        let mut sig_ids = Vec::new();
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let tx = sig_tx.try_clone().map_err(ServiceError::Poll)?;
            sig_ids
                .push(signal_hook::low_level::pipe::register(sig, tx).map_err(ServiceError::Poll)?);
        }
        raise_nofile(cfg.max_connections.saturating_add(64));
        let n = listeners.len();
        Ok(Self {
            poll,
            events: Events::with_capacity(1024),
            listener_ready: vec![false; n],
            listeners,
            bound,
            conns: HashMap::new(),
            next_handle: n as u32,
            egress_names: cfg.egress.iter().map(|e| e.to_string()).collect(),
            cfg: cfg.clone(),
            sig_rx,
            sig_ids,
            grace_deadline: None,
            pending: Vec::new(),
            dirty: Vec::new(),
            report: Vec::new(),
            next_sweep: Instant::now() + sweep_interval(cfg.idle_timeout),
            buf: vec![0u8; READ_CHUNK],
        })
    }

    /// The listen addresses as bound (TCP port 0 resolved).
    pub fn bound(&self) -> &[ListenAddr] {
        &self.bound
    }

    fn mark_dirty(&mut self, h: u32) {
        if let Some(c) = self.conns.get_mut(&h) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(h);
            }
        }
    }

    fn mark_report(report: &mut Vec<u32>, h: u32, c: &mut Conn) {
        if !c.report {
            c.report = true;
            report.push(h);
        }
    }

    fn begin_termination(&mut self) {
        if self.grace_deadline.is_some() {
            return;
        }
        self.grace_deadline = Some(Instant::now() + self.cfg.grace);
        for i in 0..self.listeners.len() {
            if let Some(mut l) = self.listeners[i].take() {
                let source: &mut dyn mio::event::Source = match &mut l {
                    Listener::Tcp(l) => l,
                    Listener::Unix(l, _) => l,
                };
                let _ = self.poll.registry().deregister(source);
                self.pending.extend_from_slice(&encode_header(
                    net::EV_LISTENER_CLOSED,
                    i as u32,
                    0,
                    0,
                ));
            }
        }
    }

    fn apply(&mut self, op: Op<'_>) -> Result<(), NetCallError> {
        let window = self.cfg.window;
        let protocol = |m: String| Err(NetCallError::Protocol(m));
        match op {
            Op::Send { handle, data } => {
                let Some(c) = self.conns.get_mut(&handle) else {
                    return protocol(format!("send on unknown handle {handle}"));
                };
                if c.guest_closed || c.shut_wr {
                    return protocol(format!("send on closed handle {handle}"));
                }
                let len = data.len() as u64;
                if c.unacked + len > window {
                    return protocol(format!(
                        "send of {len} bytes on handle {handle} exceeds the window of {window} ({} unacknowledged)",
                        c.unacked
                    ));
                }
                if c.sock.is_none() {
                    c.acked += len; // failed connection: discard, keep credit flowing
                } else {
                    c.tx.extend(data);
                    c.unacked += len;
                }
                self.mark_dirty(handle);
            }
            Op::Window { handle, bytes } => {
                let Some(c) = self.conns.get_mut(&handle) else {
                    return protocol(format!("window on unknown handle {handle}"));
                };
                let credit = c.credit + u64::from(bytes);
                if credit > window {
                    return protocol(format!(
                        "window on handle {handle}: credit {credit} exceeds the window of {window}"
                    ));
                }
                c.credit = credit;
                self.mark_dirty(handle);
            }
            Op::Shutdown { handle, how } => {
                let Some(c) = self.conns.get_mut(&handle) else {
                    return protocol(format!("shutdown on unknown handle {handle}"));
                };
                if how & net::SHUT_RD != 0 {
                    c.shut_rd = true;
                    c.credit += c.rx.len() as u64;
                    c.credit = c.credit.min(window);
                    c.rx.clear();
                }
                if how & net::SHUT_WR != 0 {
                    c.shut_wr = true;
                }
                self.mark_dirty(handle);
            }
            Op::Close { handle } => {
                if let Some(slot) = self.listeners.get_mut(handle as usize) {
                    // Dropping the listener closes it (and removes its socket file).
                    if let Some(mut l) = slot.take() {
                        let source: &mut dyn mio::event::Source = match &mut l {
                            Listener::Tcp(l) => l,
                            Listener::Unix(l, _) => l,
                        };
                        let _ = self.poll.registry().deregister(source);
                    }
                } else if let Some(c) = self.conns.get_mut(&handle) {
                    c.guest_closed = true;
                    c.rx.clear();
                    self.mark_dirty(handle);
                }
            }
            Op::Connect { token, dest } => self.connect(token, dest),
        }
        Ok(())
    }

    fn refuse(&mut self, token: u32, e: u32) {
        self.pending
            .extend_from_slice(&encode_header(net::EV_REFUSED, token, e, 0));
    }

    fn connect(&mut self, token: u32, dest: &str) {
        if !self.egress_names.iter().any(|n| n == dest) {
            return self.refuse(token, errno::NOTCAPABLE);
        }
        if self.conns.len() as u64 >= self.cfg.max_connections || self.grace_deadline.is_some() {
            return self.refuse(token, errno::NFILE);
        }
        let addr = match dest.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => return self.refuse(token, errno::HOSTUNREACH),
        };
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.refuse(token, io_errno(&e)),
        };
        let _ = s.set_nodelay(true);
        let Some(h) = self.take_handle() else {
            return self.refuse(token, errno::NFILE);
        };
        if let Err(e) = self.poll.registry().register(
            &mut s,
            Token(h as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.refuse(token, io_errno(&e));
        }
        self.add_conn(h, Stream::Tcp(s), true);
        self.pending
            .extend_from_slice(&encode_header(net::EV_CONNECTED, token, h, 0));
    }

    fn take_handle(&mut self) -> Option<u32> {
        let h = self.next_handle;
        self.next_handle = h.checked_add(1)?;
        Some(h)
    }

    fn add_conn(&mut self, h: u32, sock: Stream, connecting: bool) {
        self.conns.insert(
            h,
            Conn {
                sock: Some(sock),
                credit: self.cfg.window,
                connecting,
                // An accepted socket may already hold the request: try it at once rather
                // than wait for the first readiness event (a failed try costs one syscall).
                readable: !connecting,
                writable: !connecting,
                last_activity: Some(Instant::now()),
                ..Default::default()
            },
        );
    }

    fn accept_ready(&mut self) {
        for i in 0..self.listeners.len() {
            while self.listener_ready[i] && (self.conns.len() as u64) < self.cfg.max_connections {
                let accepted = match &self.listeners[i] {
                    Some(Listener::Tcp(l)) => l.accept().map(|(s, _)| {
                        // Responses are written whole: do not let Nagle hold back a tail.
                        let _ = s.set_nodelay(true);
                        Stream::Tcp(s)
                    }),
                    Some(Listener::Unix(l, _)) => l.accept().map(|(s, _)| Stream::Unix(s)),
                    None => {
                        self.listener_ready[i] = false;
                        break;
                    }
                };
                let mut s = match accepted {
                    Ok(s) => s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.listener_ready[i] = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // Out of fds or a connection reset before accept: try again later.
                    Err(_) => break,
                };
                let Some(h) = self.take_handle() else { break };
                if self
                    .poll
                    .registry()
                    .register(
                        s.source(),
                        Token(h as usize),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_err()
                {
                    continue;
                }
                self.add_conn(h, s, false);
                self.pending
                    .extend_from_slice(&encode_header(net::EV_ACCEPTED, i as u32, h, 0));
                self.mark_dirty(h);
            }
        }
    }

    /// Moves bytes between the dirty connections' sockets and their buffers.
    fn pump(&mut self) {
        self.accept_ready();
        let dirty = std::mem::take(&mut self.dirty);
        let now = Instant::now();
        for h in dirty {
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            c.dirty = false;
            service_conn(c, now, &mut self.buf);
            let remove = c.guest_closed && (c.tx.is_empty() || c.sock.is_none());
            if remove {
                if let Some(mut c) = self.conns.remove(&h) {
                    if let Some(s) = c.sock.as_mut() {
                        let _ = self.poll.registry().deregister(s.source());
                    }
                }
                continue;
            }
            if !c.guest_closed
                && (c.acked > 0
                    || (!c.rx.is_empty() && c.credit > 0)
                    || (c.eof && !c.eof_sent)
                    || (c.error.is_some() && !c.error_sent))
            {
                Self::mark_report(&mut self.report, h, c);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + sweep_interval(self.cfg.idle_timeout);
        let idle = self.cfg.idle_timeout;
        let mut expired = Vec::new();
        for (h, c) in self.conns.iter_mut() {
            let since = c.last_activity.map_or(Duration::ZERO, |t| now - t);
            if since >= idle && c.error.is_none() {
                if let Some(s) = c.sock.as_mut() {
                    let _ = self.poll.registry().deregister(s.source());
                }
                c.fail(errno::TIMEDOUT);
                expired.push(*h);
            }
        }
        for h in expired {
            self.mark_dirty(h);
        }
    }

    /// Appends the events of the report list to `out` (bounded by the data area). Returns
    /// true when an event other than an acknowledgement was added.
    fn collect(&mut self, out: &mut Vec<u8>) -> bool {
        let mut woke = !self.pending.is_empty();
        if woke {
            out.append(&mut self.pending);
        }
        let report = std::mem::take(&mut self.report);
        for h in report {
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            c.report = false;
            if c.guest_closed {
                continue;
            }
            let room = |out: &Vec<u8>| DATA_CAPACITY.saturating_sub(out.len());
            if c.acked > 0 && room(out) >= net::RECORD_HEADER {
                let n = c.acked.min(u64::from(u32::MAX));
                out.extend_from_slice(&encode_header(net::EV_TXACK, h, n as u32, 0));
                c.acked -= n;
            }
            let n = (c.rx.len() as u64)
                .min(c.credit)
                .min(room(out).saturating_sub(net::RECORD_HEADER) as u64)
                as usize;
            if n > 0 {
                woke = true;
                out.extend_from_slice(&encode_header(net::EV_DATA, h, 0, n as u32));
                out.extend_from_slice(&c.rx[..n]);
                c.rx.drain(..n);
                c.credit -= n as u64;
            }
            if c.rx.is_empty() && room(out) >= net::RECORD_HEADER {
                if let Some(e) = c.error.filter(|_| !c.error_sent) {
                    out.extend_from_slice(&encode_header(net::EV_ERROR, h, e, 0));
                    c.error_sent = true;
                    woke = true;
                } else if c.eof && !c.eof_sent {
                    out.extend_from_slice(&encode_header(net::EV_EOF, h, 0, 0));
                    c.eof_sent = true;
                    woke = true;
                }
            }
            let more = c.acked > 0
                || (!c.rx.is_empty() && c.credit > 0)
                || (c.eof && !c.eof_sent && c.error.is_none())
                || (c.error.is_some() && !c.error_sent);
            if more {
                Self::mark_report(&mut self.report, h, c);
            }
            // Credit may have room again: read more.
            if c.readable && (c.rx.len() as u64) < c.credit && !c.dirty {
                c.dirty = true;
                self.dirty.push(h);
            }
        }
        woke
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), NetCallError> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(NetCallError::Host(format!("poll: {e}"))),
        }
        let mut signalled = false;
        let mut touched = Vec::new();
        for ev in self.events.iter() {
            match ev.token() {
                SIGNAL => signalled = true,
                Token(i) if i < self.listeners.len() => self.listener_ready[i] = true,
                Token(i) => {
                    let h = i as u32;
                    if let Some(c) = self.conns.get_mut(&h) {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            c.writable = true;
                        }
                        touched.push(h);
                    }
                }
            }
        }
        for h in touched {
            self.mark_dirty(h);
        }
        if signalled {
            self.drain_signals();
        }
        Ok(())
    }

    fn drain_signals(&mut self) {
        let mut b = [0u8; 64];
        let mut got = false;
        loop {
            match self.sig_rx.read(&mut b) {
                Ok(0) => break,
                Ok(_) => got = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if got {
            self.begin_termination();
        }
    }

    fn flags(&self) -> u64 {
        if self.grace_deadline.is_some() {
            net::FLAG_TERMINATING
        } else {
            0
        }
    }
}

fn sweep_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// One connection's socket work: finish a connect, flush sends, read up to the credit.
fn service_conn(c: &mut Conn, now: Instant, buf: &mut [u8]) {
    if c.connecting && c.writable {
        let result = match c.sock.as_mut() {
            Some(Stream::Tcp(s)) => match s.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                },
            },
            _ => Ok(true),
        };
        match result {
            Ok(true) => c.connecting = false,
            Ok(false) => c.writable = false,
            Err(e) => c.fail(io_errno(&e)),
        }
    }
    if c.connecting {
        return;
    }
    while c.writable && !c.tx.is_empty() {
        let Some(s) = c.sock.as_mut() else { break };
        let (front, _) = c.tx.as_slices();
        match s.write(front) {
            Ok(0) => {
                c.fail(errno::PIPE);
                break;
            }
            Ok(n) => {
                c.tx.drain(..n);
                c.acked += n as u64;
                c.unacked -= n as u64;
                c.last_activity = Some(now);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => c.fail(io_errno(&e)),
        }
    }
    if c.shut_wr && !c.shut_wr_done && c.tx.is_empty() {
        if let Some(s) = c.sock.as_ref() {
            s.shutdown_write();
        }
        c.shut_wr_done = true;
    }
    if c.guest_closed || c.shut_rd {
        return;
    }
    while c.readable && !c.eof && (c.rx.len() as u64) < c.credit {
        let Some(s) = c.sock.as_mut() else { break };
        let want = ((c.credit - c.rx.len() as u64) as usize).min(buf.len());
        match s.read(&mut buf[..want]) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                c.rx.extend_from_slice(&buf[..n]);
                c.last_activity = Some(now);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let keep = std::mem::take(&mut c.rx);
                c.fail(io_errno(&e));
                c.rx = keep; // deliver what arrived before the error
            }
        }
    }
}

impl NetCalls for Relay {
    fn exchange(
        &mut self,
        wait_ns: u64,
        wake_on_ack: bool,
        ops: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u64, NetCallError> {
        let ops =
            untrusted_guest_ops::parse(ops).map_err(|e| NetCallError::Protocol(e.to_string()))?;
        for op in ops {
            self.apply(op)?;
        }
        self.wait(Some(Duration::ZERO))?;
        let now = Instant::now();
        self.sweep(now);
        self.pump();
        let woke = self.collect(out);
        let ends_wait = |woke: bool, out: &Vec<u8>| woke || (wake_on_ack && !out.is_empty());
        // A full response cannot take more events: deliver it.
        let full = |out: &Vec<u8>| out.len() + 2 * net::RECORD_HEADER > DATA_CAPACITY;
        if ends_wait(woke, out) || full(out) || wait_ns == 0 || self.finished() {
            return Ok(self.flags());
        }
        let deadline = now.checked_add(Duration::from_nanos(wait_ns));
        loop {
            let now = Instant::now();
            let mut timeout = self.next_sweep.saturating_duration_since(now);
            if let Some(d) = deadline {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            if let Some(g) = self.grace_deadline {
                timeout = timeout.min(g.saturating_duration_since(now));
            }
            self.wait(Some(timeout))?;
            let now = Instant::now();
            self.sweep(now);
            self.pump();
            let woke = self.collect(out);
            let timed_out = deadline.is_some_and(|d| now >= d);
            if ends_wait(woke, out) || full(out) || timed_out || self.finished() {
                return Ok(self.flags());
            }
        }
    }

    fn check_signals(&mut self) {
        self.drain_signals();
    }

    fn grace_deadline(&self) -> Option<Instant> {
        self.grace_deadline
    }

    fn finished(&self) -> bool {
        self.grace_deadline
            .is_some_and(|d| self.conns.is_empty() || Instant::now() >= d)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for id in self.sig_ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
