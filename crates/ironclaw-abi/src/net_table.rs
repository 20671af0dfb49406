//! SECURITY BOUNDARY (enclave side): the shim's socket table for services.
//!
//! The module's socket fds live here, in enclave memory: receive buffers, send credit,
//! end-of-stream and error states, accept queues. The host's NET events
//! ([`crate::net`]) are applied by [`SocketTable::apply_events`], which treats the host as
//! the adversary: a malformed record, an unknown or reused handle, data beyond the credit
//! the enclave granted, an acknowledgement of bytes never sent, a connection beyond the
//! limit — each is refused, counted in [`SocketTable::violations`], and at worst turns the
//! affected socket into an I/O error (`EIO`). No host answer can make the table grow past
//! its limits, alias two fds, or hand the module bytes it was not sent.
//!
//! Sans-IO: the shim moves [`SocketTable::take_ops`] to the host and the answer back; this
//! module is pure logic, tested on the host (`tests/net_table.rs`).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::net::{self, errno};

/// First fd number of a socket (0..=2 are stdio; listeners are 3, 4, ...).
pub const FIRST_FD: u32 = 3;
/// Longest egress destination name (`HOST:PORT`).
pub const MAX_DEST_LEN: usize = 1024;

/// A WASI errno (preview 1 numbering).
pub type Errno = u32;

/// What an fd is ready for (for `poll_oneoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// A read/accept would not block.
    pub readable: bool,
    /// A send would not block.
    pub writable: bool,
    /// Bytes available to read (or queued connections of a listener).
    pub nbytes: u64,
    /// The peer closed (or the listener was closed).
    pub hangup: bool,
}

struct Listener {
    queue: VecDeque<u32>,
    closed: bool,
    open: bool,
}

struct Stream {
    rx: VecDeque<u8>,
    /// Bytes the host may still send us.
    rx_credit: u64,
    /// Bytes consumed by the module, not yet returned to the host as credit.
    rx_return: u64,
    /// Bytes the module may still send.
    tx_credit: u64,
    eof: bool,
    error: Option<Errno>,
    shut_rd: bool,
    shut_wr: bool,
    /// The module holds this stream as an fd (false while it waits in an accept queue).
    has_fd: bool,
}

#[derive(Clone, Copy)]
enum Entry {
    Listener(u32),
    Stream(u32),
}

struct Fd {
    entry: Entry,
    nonblock: bool,
}

/// The enclave's sockets. See the module documentation.
pub struct SocketTable {
    listeners: Vec<Listener>,
    streams: BTreeMap<u32, Stream>,
    fds: BTreeMap<u32, Fd>,
    last_handle: Option<u32>,
    window: u64,
    max_connections: usize,
    ops: Vec<u8>,
    ops_cap: usize,
    /// Position of the last record in `ops` if it is an `OP_SEND` for this handle.
    last_send: Option<(usize, u32)>,
    windows_dirty: bool,
    next_token: u32,
    pending_connect: Option<u32>,
    connect_result: Option<(u32, Result<u32, Errno>)>,
    terminating: bool,
    /// Host answers refused so far (each one ignored or turned into an I/O error).
    pub violations: u64,
}

fn relayed(e: u32) -> Errno {
    if errno::RELAYED.contains(&e) {
        e
    } else {
        errno::IO
    }
}

impl SocketTable {
    /// A table with `listeners` listener fds (3, 4, ...), a flow-control `window` per
    /// connection and direction, at most `max_connections` connections, and at most
    /// `ops_cap` bytes of operations per exchange.
    pub fn new(listeners: u32, window: u64, max_connections: u64, ops_cap: usize) -> Self {
        let mut fds = BTreeMap::new();
        let mut ls = Vec::new();
        for h in 0..listeners {
            ls.push(Listener {
                queue: VecDeque::new(),
                closed: false,
                open: true,
            });
            fds.insert(
                FIRST_FD + h,
                Fd {
                    entry: Entry::Listener(h),
                    nonblock: false,
                },
            );
        }
        Self {
            listeners: ls,
            streams: BTreeMap::new(),
            fds,
            last_handle: listeners.checked_sub(1),
            window,
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            ops: Vec::new(),
            ops_cap: ops_cap.max(net::RECORD_HEADER * 4),
            last_send: None,
            windows_dirty: false,
            next_token: 1,
            pending_connect: None,
            connect_result: None,
            terminating: false,
            violations: 0,
        }
    }

    /// True when the host said the service is terminating.
    pub fn terminating(&self) -> bool {
        self.terminating
    }

    /// Open connections (queued, held by the module, or connecting).
    pub fn connections(&self) -> usize {
        self.streams.len()
    }

    /// Is `fd` one of ours?
    pub fn is_socket(&self, fd: u32) -> bool {
        self.fds.contains_key(&fd)
    }

    /// Non-blocking flag of `fd`.
    pub fn nonblock(&self, fd: u32) -> Option<bool> {
        self.fds.get(&fd).map(|f| f.nonblock)
    }

    /// Sets the non-blocking flag of `fd`.
    pub fn set_nonblock(&mut self, fd: u32, on: bool) -> Result<(), Errno> {
        let f = self.fds.get_mut(&fd).ok_or(errno::BADF)?;
        f.nonblock = on;
        Ok(())
    }

    /// Is `fd` a listener?
    pub fn is_listener(&self, fd: u32) -> bool {
        matches!(self.fds.get(&fd).map(|f| f.entry), Some(Entry::Listener(_)))
    }

    /// Are there operations (sends, credit, closes) the host has not seen yet?
    pub fn ops_pending(&self) -> bool {
        !self.ops.is_empty() || self.windows_dirty
    }

    fn push_op(&mut self, kind: u32, handle: u32, value: u32, data: &[u8]) {
        self.last_send = None;
        self.ops
            .extend_from_slice(&net::encode_header(kind, handle, value, data.len() as u32));
        self.ops.extend_from_slice(data);
    }

    fn room(&self) -> usize {
        self.ops_cap.saturating_sub(self.ops.len())
    }

    /// The operations to send with the next exchange (credit returns included); the
    /// table forgets them.
    pub fn take_ops(&mut self) -> Vec<u8> {
        if self.windows_dirty {
            self.windows_dirty = false;
            let mut grants = Vec::new();
            for (h, s) in self.streams.iter_mut() {
                if s.rx_return > 0 {
                    // rx_return <= window <= u32::MAX (the boot block bounds the window).
                    let n = s.rx_return.min(u64::from(u32::MAX));
                    s.rx_return -= n;
                    s.rx_credit += n;
                    grants.push((*h, n as u32));
                }
            }
            for (h, n) in grants {
                self.push_op(net::OP_WINDOW, h, n, &[]);
            }
        }
        self.last_send = None;
        if self.ops.len() <= crate::DATA_CAPACITY {
            return core::mem::take(&mut self.ops);
        }
        // More than one request carries (many closes at once): send whole records up to
        // the data area, keep the rest for the next exchange.
        let mut cut = 0;
        for (offset, r) in net::records(&self.ops).flatten() {
            let end = offset + net::RECORD_HEADER + r.data.len();
            if end > crate::DATA_CAPACITY {
                break;
            }
            cut = end;
        }
        let rest = self.ops.split_off(cut);
        core::mem::replace(&mut self.ops, rest)
    }

    fn lowest_free_fd(&self) -> Option<u32> {
        let mut want = FIRST_FD;
        for fd in self.fds.keys() {
            if *fd < want {
                continue;
            }
            if *fd != want {
                break;
            }
            want = want.checked_add(1)?;
        }
        i32::try_from(want).ok().map(|_| want)
    }

    fn new_stream(&self) -> Stream {
        Stream {
            rx: VecDeque::new(),
            rx_credit: self.window,
            rx_return: 0,
            tx_credit: self.window,
            eof: false,
            error: None,
            shut_rd: false,
            shut_wr: false,
            has_fd: false,
        }
    }

    fn fresh_handle(&self, h: u32) -> bool {
        self.last_handle.is_none_or(|last| h > last)
            && !self.streams.contains_key(&h)
            && (h as usize) >= self.listeners.len()
    }

    fn fail_stream(&mut self, h: u32) {
        self.violations += 1;
        if let Some(s) = self.streams.get_mut(&h) {
            s.error = Some(errno::IO);
            s.rx.clear();
        }
    }

    /// Applies the host's events (a NET response payload) and its response flags.
    pub fn apply_events(&mut self, bytes: &[u8], flags: u64) {
        if flags & net::FLAG_TERMINATING != 0 {
            self.terminating = true;
        }
        for rec in net::records(bytes) {
            let Ok((_, r)) = rec else {
                self.violations += 1;
                return;
            };
            self.apply(r);
        }
    }

    fn apply(&mut self, r: net::Record<'_>) {
        let h = r.handle;
        match r.kind {
            net::EV_ACCEPTED => {
                let ok = r.data.is_empty()
                    && self
                        .listeners
                        .get(h as usize)
                        .is_some_and(|l| l.open && !l.closed)
                    && self.fresh_handle(r.value)
                    && self.streams.len() < self.max_connections;
                if !ok {
                    self.violations += 1;
                    return;
                }
                self.last_handle = Some(r.value);
                let s = self.new_stream();
                self.streams.insert(r.value, s);
                if let Some(l) = self.listeners.get_mut(h as usize) {
                    l.queue.push_back(r.value);
                }
            }
            net::EV_DATA => {
                let len = r.data.len() as u64;
                match self.streams.get_mut(&h) {
                    Some(s) if len <= s.rx_credit && s.error.is_none() && !s.eof => {
                        s.rx_credit -= len;
                        if s.shut_rd {
                            s.rx_return += len;
                            self.windows_dirty = true;
                        } else {
                            s.rx.extend(r.data.iter().copied());
                        }
                    }
                    Some(_) => self.fail_stream(h),
                    None => self.violations += 1,
                }
            }
            net::EV_EOF => match self.streams.get_mut(&h) {
                Some(s) if r.data.is_empty() => s.eof = true,
                Some(_) => self.fail_stream(h),
                None => self.violations += 1,
            },
            net::EV_ERROR => match self.streams.get_mut(&h) {
                Some(s) if r.data.is_empty() => {
                    if s.error.is_none() {
                        s.error = Some(relayed(r.value));
                    }
                }
                Some(_) => self.fail_stream(h),
                None => self.violations += 1,
            },
            net::EV_TXACK => match self.streams.get_mut(&h) {
                Some(s) if r.data.is_empty() && u64::from(r.value) <= self.window - s.tx_credit => {
                    s.tx_credit += u64::from(r.value);
                }
                Some(_) => self.fail_stream(h),
                None => self.violations += 1,
            },
            net::EV_LISTENER_CLOSED => match self.listeners.get_mut(h as usize) {
                Some(l) if l.open && r.data.is_empty() => l.closed = true,
                _ => self.violations += 1,
            },
            net::EV_CONNECTED => {
                let ok = r.data.is_empty()
                    && self.pending_connect == Some(h)
                    && self.fresh_handle(r.value)
                    && self.streams.len() < self.max_connections;
                if !ok {
                    self.violations += 1;
                    return;
                }
                self.pending_connect = None;
                self.last_handle = Some(r.value);
                let s = self.new_stream();
                self.streams.insert(r.value, s);
                self.connect_result = Some((h, Ok(r.value)));
            }
            net::EV_REFUSED => {
                if r.data.is_empty() && self.pending_connect == Some(h) {
                    self.pending_connect = None;
                    self.connect_result = Some((h, Err(relayed(r.value))));
                } else {
                    self.violations += 1;
                }
            }
            _ => self.violations += 1,
        }
    }

    fn stream_of(&self, fd: u32) -> Result<u32, Errno> {
        match self.fds.get(&fd).map(|f| f.entry) {
            Some(Entry::Stream(h)) => Ok(h),
            Some(Entry::Listener(_)) => Err(errno::NOTCONN),
            None => Err(errno::BADF),
        }
    }

    /// Takes the next queued connection of listener `fd`: its new fd. `AGAIN` when none is
    /// queued (`CONNABORTED` once the listener was closed by the host).
    pub fn accept(&mut self, fd: u32, nonblock: bool) -> Result<u32, Errno> {
        let l = match self.fds.get(&fd).map(|f| f.entry) {
            Some(Entry::Listener(l)) => l,
            Some(Entry::Stream(_)) => return Err(errno::INVAL),
            None => return Err(errno::BADF),
        };
        let new_fd = self.lowest_free_fd().ok_or(errno::NFILE)?;
        let listener = self.listeners.get_mut(l as usize).ok_or(errno::BADF)?;
        let Some(h) = listener.queue.pop_front() else {
            return Err(if listener.closed {
                errno::CONNABORTED
            } else {
                errno::AGAIN
            });
        };
        if let Some(s) = self.streams.get_mut(&h) {
            s.has_fd = true;
        }
        self.fds.insert(
            new_fd,
            Fd {
                entry: Entry::Stream(h),
                nonblock,
            },
        );
        Ok(new_fd)
    }

    /// Reads into `bufs` (in order). `Ok(0)` = end of stream; `AGAIN` when nothing is
    /// buffered yet. `peek` leaves the bytes in place.
    pub fn recv(&mut self, fd: u32, bufs: &mut [&mut [u8]], peek: bool) -> Result<usize, Errno> {
        let h = self.stream_of(fd)?;
        let s = self.streams.get_mut(&h).ok_or(errno::BADF)?;
        if s.rx.is_empty() {
            if let Some(e) = s.error {
                return Err(e);
            }
            if s.eof || s.shut_rd {
                return Ok(0);
            }
            return Err(errno::AGAIN);
        }
        let mut n = 0;
        for buf in bufs.iter_mut() {
            for slot in buf.iter_mut() {
                match s.rx.get(n) {
                    Some(b) => *slot = *b,
                    None => break,
                }
                n += 1;
            }
        }
        if !peek {
            s.rx.drain(..n);
            s.rx_return += n as u64;
            self.windows_dirty = true;
        }
        Ok(n)
    }

    /// Queues `data` for sending: the bytes accepted (a prefix). `AGAIN` when no send
    /// credit (or operation room) is left; `PIPE` after a write shutdown.
    pub fn send(&mut self, fd: u32, data: &[u8]) -> Result<usize, Errno> {
        let h = self.stream_of(fd)?;
        let room = self.room();
        let s = self.streams.get_mut(&h).ok_or(errno::BADF)?;
        if let Some(e) = s.error {
            return Err(e);
        }
        if s.shut_wr {
            return Err(errno::PIPE);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let extend = matches!(self.last_send, Some((_, lh)) if lh == h);
        let header = if extend { 0 } else { net::RECORD_HEADER };
        let n = (data.len() as u64)
            .min(s.tx_credit)
            .min(room.saturating_sub(header) as u64) as usize;
        if n == 0 {
            return Err(errno::AGAIN);
        }
        s.tx_credit -= n as u64;
        match self.last_send {
            Some((at, lh)) if lh == h => {
                let len_at = at + 12;
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.ops[len_at..len_at + 4]);
                let new_len = u32::from_le_bytes(len) + n as u32;
                self.ops[len_at..len_at + 4].copy_from_slice(&new_len.to_le_bytes());
                self.ops.extend_from_slice(&data[..n]);
            }
            _ => {
                let at = self.ops.len();
                self.push_op(net::OP_SEND, h, 0, &data[..n]);
                self.last_send = Some((at, h));
            }
        }
        Ok(n)
    }

    /// Shuts down `fd` (`how`: [`net::SHUT_RD`] | [`net::SHUT_WR`]).
    pub fn shutdown(&mut self, fd: u32, how: u32) -> Result<(), Errno> {
        if how == 0 || how & !(net::SHUT_RD | net::SHUT_WR) != 0 {
            return Err(errno::INVAL);
        }
        let h = self.stream_of(fd)?;
        if self.room() < net::RECORD_HEADER {
            return Err(errno::AGAIN);
        }
        let s = self.streams.get_mut(&h).ok_or(errno::BADF)?;
        if how & net::SHUT_RD != 0 {
            s.shut_rd = true;
            let n = s.rx.len() as u64;
            s.rx.clear();
            s.rx_return += n;
            self.windows_dirty = true;
        }
        if how & net::SHUT_WR != 0 {
            s.shut_wr = true;
        }
        self.push_op(net::OP_SHUTDOWN, h, how, &[]);
        Ok(())
    }

    /// Closes `fd`. A listener's queued connections are closed with it.
    pub fn close(&mut self, fd: u32) -> Result<(), Errno> {
        let entry = self.fds.get(&fd).map(|f| f.entry).ok_or(errno::BADF)?;
        let mut handles = Vec::new();
        match entry {
            Entry::Listener(l) => {
                if let Some(listener) = self.listeners.get_mut(l as usize) {
                    listener.open = false;
                    handles.extend(listener.queue.drain(..));
                }
                handles.push(l);
            }
            Entry::Stream(h) => handles.push(h),
        }
        self.fds.remove(&fd);
        for h in handles {
            self.streams.remove(&h);
            // CLOSE ops are never refused for room: a table with `max_connections`
            // streams needs at most that many headers, which `ops_cap` leaves room for
            // beyond sends (the shim flushes when sends fill it).
            self.push_op(net::OP_CLOSE, h, 0, &[]);
        }
        Ok(())
    }

    /// Starts a connect to `dest` (`HOST:PORT`): the token to pass to
    /// [`SocketTable::connect_finish`] after the next exchange.
    pub fn connect_begin(&mut self, dest: &[u8]) -> Result<u32, Errno> {
        if dest.is_empty() || dest.len() > MAX_DEST_LEN {
            return Err(errno::INVAL);
        }
        if self.streams.len() >= self.max_connections {
            return Err(errno::NFILE);
        }
        if self.room() < net::RECORD_HEADER + dest.len() {
            return Err(errno::AGAIN);
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.pending_connect = Some(token);
        self.connect_result = None;
        self.push_op(net::OP_CONNECT, token, 0, dest);
        Ok(token)
    }

    /// The outcome of connect `token`: the new fd, the refusal, or `IO` when the host did
    /// not answer it.
    pub fn connect_finish(&mut self, token: u32) -> Result<u32, Errno> {
        let result = match self.connect_result.take() {
            Some((t, r)) if t == token => r,
            _ => {
                if self.pending_connect == Some(token) {
                    self.pending_connect = None;
                    self.violations += 1;
                }
                return Err(errno::IO);
            }
        };
        let h = result?;
        let Some(fd) = self.lowest_free_fd() else {
            self.streams.remove(&h);
            self.push_op(net::OP_CLOSE, h, 0, &[]);
            return Err(errno::NFILE);
        };
        if let Some(s) = self.streams.get_mut(&h) {
            s.has_fd = true;
        }
        self.fds.insert(
            fd,
            Fd {
                entry: Entry::Stream(h),
                nonblock: false,
            },
        );
        Ok(fd)
    }

    /// What `fd` is ready for; `None` if it is not a socket.
    pub fn readiness(&self, fd: u32) -> Option<Readiness> {
        match self.fds.get(&fd)?.entry {
            Entry::Listener(l) => {
                let l = self.listeners.get(l as usize)?;
                Some(Readiness {
                    readable: !l.queue.is_empty() || l.closed,
                    writable: false,
                    nbytes: l.queue.len() as u64,
                    hangup: l.closed,
                })
            }
            Entry::Stream(h) => {
                let s = self.streams.get(&h)?;
                let failed = s.error.is_some();
                Some(Readiness {
                    readable: !s.rx.is_empty() || s.eof || failed || s.shut_rd,
                    writable: failed || s.shut_wr || s.tx_credit > 0,
                    nbytes: s.rx.len() as u64,
                    hangup: s.eof || failed,
                })
            }
        }
    }
}
