//! WASI sockets and `poll_oneoff` for services (`ironclaw serve`), over the NET hypercall.
//!
//! The module's socket state is `ironclaw_abi::net_table::SocketTable` (enclave memory,
//! every host event validated there). This file only moves bytes: module memory <-> table,
//! and table <-> host through [`exchange`], one exit per batch:
//! - a read or accept that finds data/connections already buffered costs no exit;
//! - sends are queued and travel with the next exchange;
//! - `poll_oneoff` answers from the table when something is ready, and otherwise makes one
//!   exit that waits (up to the earliest clock subscription) for events on *all* sockets.
//!
//! CPU guard: in a service the fuel budget is per poll turn — it is refilled whenever the
//! module polls or blocks on a socket, so one request cannot run forever.

use alloc::vec;
use alloc::vec::Vec;

use ironclaw_abi::net::errno as E;
use ironclaw_abi::net_table::SocketTable;
use ironclaw_abi::{call, status, DATA_CAPACITY};
use wasmi::{Caller, Extern, Linker, Memory};

use crate::runner::State;
use crate::wasi::{self, MODULE};

/// Service socket state (only in a service launch).
pub(crate) struct Net {
    pub table: SocketTable,
    resp: Vec<u8>,
    /// Fuel of one poll turn (`None`: unmetered).
    pub turn_fuel: Option<u64>,
    /// Non-blocking calls answered `AGAIN` since the last exchange.
    again: u32,
    warned: bool,
}

impl Net {
    pub(crate) fn new(
        listeners: u32,
        window: u64,
        max_connections: u64,
        turn_fuel: Option<u64>,
    ) -> Self {
        Self {
            table: SocketTable::new(listeners, window, max_connections, DATA_CAPACITY / 2),
            resp: vec![0u8; DATA_CAPACITY],
            turn_fuel,
            again: 0,
            warned: false,
        }
    }
}

/// One NET exchange: queued operations out, events in. `wait_ns` bounds how long the host
/// may wait when it has nothing to report. A host that answers with a bad status makes
/// every socket see the failure as a violation (no state change).
pub(crate) fn exchange(net: &mut Net, wait_ns: u64) {
    exchange_flags(net, wait_ns, 0)
}

/// [`exchange`] with wait flags (`WAIT_WRITABLE`: the caller waits for send credit).
pub(crate) fn exchange_flags(net: &mut Net, wait_ns: u64, flags: u64) {
    net.again = 0;
    let ops = net.table.take_ops();
    match crate::hostcall::call(call::NET, [wait_ns, flags, 0, 0], &ops, &mut net.resp) {
        Ok(r) if r.status == status::OK => {
            let len = r.len.min(net.resp.len());
            net.table.apply_events(&net.resp[..len], r.values[0]);
        }
        Ok(_) => net.table.violations += 1,
        Err(e) => crate::hostcall::refused(e),
    }
    if net.table.violations > 0 && !net.warned {
        net.warned = true;
        crate::hostcall::write_output(
            ironclaw_abi::output::STDERR,
            b"ironclaw: the host sent invalid socket events (ignored or reported as I/O errors)\n",
        );
    }
}

/// For a non-blocking call that found nothing: every 16th such answer looks at the host
/// (no wait), so a module that polls by retrying still makes progress.
fn idle_check(net: &mut Net) {
    net.again += 1;
    if net.again >= 16 {
        exchange(net, 0);
    }
}

fn refuel(c: &mut Caller<'_, State>) {
    if let Some(f) = c.data().net.as_ref().and_then(|n| n.turn_fuel) {
        let _ = c.set_fuel(f);
    }
}

fn memory(c: &Caller<'_, State>) -> Option<Memory> {
    c.get_export("memory").and_then(Extern::into_memory)
}

fn range(mem: &[u8], ptr: i32, len: u64) -> Option<core::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= mem.len()).then_some(start..end)
}

fn put(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let r = range(mem, ptr, bytes.len() as u64).ok_or(wasi::EFAULT)?;
    mem[r].copy_from_slice(bytes);
    Ok(())
}

fn get_u32(mem: &[u8], at: usize) -> Result<u32, i32> {
    let b = mem
        .get(at..at.checked_add(4).ok_or(wasi::EFAULT)?)
        .ok_or(wasi::EFAULT)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The iovec list `iovs[0..count]` as ranges of module memory.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<core::ops::Range<usize>>, i32> {
    let count = u32::try_from(count).map_err(|_| wasi::EINVAL)?;
    let all = range(mem, iovs, u64::from(count) * 8).ok_or(wasi::EFAULT)?;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = all.start + i * 8;
        let buf = get_u32(mem, at)?;
        let len = get_u32(mem, at + 4)?;
        out.push(range(mem, buf as i32, u64::from(len)).ok_or(wasi::EFAULT)?);
    }
    Ok(out)
}

fn err(e: u32) -> i32 {
    e as i32
}

/// Receives into the module's iovecs: blocks (one exit per wait) unless non-blocking.
fn recv(c: &mut Caller<'_, State>, fd: u32, iovs: i32, count: i32, peek: bool) -> Result<u32, i32> {
    let m = memory(c).ok_or(wasi::EFAULT)?;
    loop {
        let (mem, state) = m.data_and_store_mut(&mut *c);
        let net = state.net.as_mut().ok_or(wasi::EBADF)?;
        let list = iovecs(mem, iovs, count)?;
        let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(list.len());
        let mut rest: &mut [u8] = mem;
        let mut base = 0usize;
        // The iovecs are disjoint in well-formed programs; overlapping or unordered ones
        // are served one at a time (a short read, as POSIX allows).
        for r in &list {
            if r.start < base {
                break;
            }
            let (_, tail) = core::mem::take(&mut rest).split_at_mut(r.start - base);
            let (buf, tail) = tail.split_at_mut(r.len());
            bufs.push(buf);
            rest = tail;
            base = r.end;
        }
        match net.table.recv(fd, &mut bufs, peek) {
            Ok(n) => return Ok(n as u32),
            Err(E::AGAIN) => {
                if net.table.nonblock(fd) == Some(true) {
                    idle_check(net);
                    return Err(err(E::AGAIN));
                }
                exchange(net, u64::MAX);
            }
            Err(e) => return Err(err(e)),
        }
        refuel(c);
    }
}

/// Sends from the module's iovecs: what fits the send credit; blocks for credit unless
/// non-blocking.
fn send(c: &mut Caller<'_, State>, fd: u32, iovs: i32, count: i32) -> Result<u32, i32> {
    let m = memory(c).ok_or(wasi::EFAULT)?;
    loop {
        let (mem, state) = m.data_and_store_mut(&mut *c);
        let net = state.net.as_mut().ok_or(wasi::EBADF)?;
        let list = iovecs(mem, iovs, count)?;
        let mut total = 0usize;
        let mut blocked = None;
        for r in list {
            let want = r.len();
            match net.table.send(fd, &mem[r]) {
                Ok(n) => {
                    total += n;
                    if n < want {
                        break;
                    }
                }
                Err(e) => {
                    blocked = Some(e);
                    break;
                }
            }
        }
        match blocked {
            _ if total > 0 => return Ok(total as u32),
            None => return Ok(0),
            Some(E::AGAIN) => {
                if net.table.nonblock(fd) == Some(true) {
                    // No credit or a full batch: hand what is queued to the host now.
                    exchange(net, 0);
                    return Err(err(E::AGAIN));
                }
                let wait = if net.table.ops_pending() { 0 } else { u64::MAX };
                exchange_flags(net, wait, ironclaw_abi::net::WAIT_WRITABLE);
            }
            Some(e) => return Err(err(e)),
        }
        refuel(c);
    }
}

fn accept(c: &mut Caller<'_, State>, fd: u32, nonblock_new: bool) -> Result<u32, i32> {
    loop {
        let net = c.data_mut().net.as_mut().ok_or(wasi::EBADF)?;
        match net.table.accept(fd, nonblock_new) {
            Ok(new) => return Ok(new),
            Err(E::AGAIN) => {
                if net.table.nonblock(fd) == Some(true) {
                    idle_check(net);
                    return Err(err(E::AGAIN));
                }
                exchange(net, u64::MAX);
            }
            Err(e) => return Err(err(e)),
        }
        refuel(c);
    }
}

const FDFLAGS_NONBLOCK: i32 = 4;
const RECV_PEEK: i32 = 1;

/// `fd_read` on a socket fd (called by `wasi.rs`).
pub(crate) fn fd_read(
    c: &mut Caller<'_, State>,
    fd: u32,
    iovs: i32,
    count: i32,
) -> Result<u32, i32> {
    recv(c, fd, iovs, count, false)
}

/// `fd_write` on a socket fd (called by `wasi.rs`).
pub(crate) fn fd_write(
    c: &mut Caller<'_, State>,
    fd: u32,
    iovs: i32,
    count: i32,
) -> Result<u32, i32> {
    send(c, fd, iovs, count)
}

/// Is `fd` a socket of this service?
pub(crate) fn is_socket(c: &Caller<'_, State>, fd: i32) -> bool {
    c.data()
        .net
        .as_ref()
        .is_some_and(|n| fd >= 0 && n.table.is_socket(fd as u32))
}

fn write_u32(c: &mut Caller<'_, State>, ptr: i32, v: u32) -> i32 {
    let Some(m) = memory(c) else {
        return wasi::EFAULT;
    };
    match put(m.data_mut(c), ptr, &v.to_le_bytes()) {
        Ok(()) => wasi::ESUCCESS,
        Err(e) => e,
    }
}

/// Opens an egress connection (`ironclaw.connect`): the new fd, or a negative IronClaw
/// error code (`E_UNAVAILABLE` outside a service, `E_REFUSED` for a destination that is
/// not in the launch's egress list, `E_INVALID` for a bad name).
pub(crate) fn connect(c: &mut Caller<'_, State>, ptr: i32, len: i32) -> i32 {
    use crate::ironclaw_calls::{E_FAULT, E_INVALID, E_PROTOCOL, E_REFUSED, E_UNAVAILABLE};
    let Some(m) = memory(c) else { return E_FAULT };
    let (mem, state) = m.data_and_store_mut(&mut *c);
    let Some(net) = state.net.as_mut() else {
        return E_UNAVAILABLE;
    };
    let Some(r) = range(mem, ptr, u64::from(len as u32)) else {
        return E_FAULT;
    };
    let dest = mem[r].to_vec();
    let mut token = net.table.connect_begin(&dest);
    if token == Err(E::AGAIN) {
        exchange(net, 0);
        token = net.table.connect_begin(&dest);
    }
    let token = match token {
        Ok(t) => t,
        Err(E::NFILE) => return E_UNAVAILABLE,
        Err(_) => return E_INVALID,
    };
    exchange(net, 0);
    let result = match net.table.connect_finish(token) {
        Ok(fd) => fd as i32,
        Err(E::NOTCAPABLE) => E_REFUSED,
        // No answer to the connect, or an invalid one: the host broke the protocol.
        Err(E::IO) => E_PROTOCOL,
        // Connection limit, name resolution, an immediate refusal by the destination.
        Err(_) => E_UNAVAILABLE,
    };
    refuel(c);
    result
}

/// One `poll_oneoff` subscription, decoded.
enum Sub {
    /// Deadline on the monotonic clock (ns).
    Clock {
        deadline: u64,
    },
    Fd {
        fd: u32,
        write: bool,
    },
}

const SUB_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

fn poll_oneoff(
    c: &mut Caller<'_, State>,
    subs_ptr: i32,
    out_ptr: i32,
    nsubs: i32,
    nevents_ptr: i32,
) -> i32 {
    let Some(m) = memory(c) else {
        return wasi::EFAULT;
    };
    let Ok(n) = u32::try_from(nsubs) else {
        return wasi::EINVAL;
    };
    if n == 0 {
        return wasi::EINVAL;
    }
    let (mem, state) = m.data_and_store_mut(&mut *c);
    let Some(subs_r) = range(mem, subs_ptr, u64::from(n) * SUB_SIZE as u64) else {
        return wasi::EFAULT;
    };
    let Some(out_r) = range(mem, out_ptr, u64::from(n) * EVENT_SIZE as u64) else {
        return wasi::EFAULT;
    };
    if range(mem, nevents_ptr, 4).is_none() {
        return wasi::EFAULT;
    }
    let now = state.clock.monotonic_ns();
    let now_rt = state.clock.realtime_ns();
    let mut subs = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let s = &mem[subs_r.start + i * SUB_SIZE..subs_r.start + (i + 1) * SUB_SIZE];
        let userdata = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        let sub = match s[8] {
            0 => {
                let id = u32::from_le_bytes([s[16], s[17], s[18], s[19]]);
                let timeout =
                    u64::from_le_bytes([s[24], s[25], s[26], s[27], s[28], s[29], s[30], s[31]]);
                let abstime = s[40] & 1 != 0;
                let (Some(now), Some(now_rt)) = (now, now_rt) else {
                    return wasi::ENOTSUP;
                };
                let deadline = match (id, abstime) {
                    (_, false) => now.saturating_add(timeout),
                    (0, true) => now.saturating_add(timeout.saturating_sub(now_rt)),
                    (1..=3, true) => timeout,
                    _ => return wasi::EINVAL,
                };
                if id > 3 {
                    return wasi::EINVAL;
                }
                Sub::Clock { deadline }
            }
            tag @ (1 | 2) => Sub::Fd {
                fd: u32::from_le_bytes([s[16], s[17], s[18], s[19]]),
                write: tag == 2,
            },
            _ => return wasi::EINVAL,
        };
        subs.push((userdata, sub));
    }
    let mut first = true;
    loop {
        let state = c.data_mut();
        let now = state.clock.monotonic_ns().unwrap_or(0);
        let mut events: Vec<[u8; EVENT_SIZE]> = Vec::new();
        let mut earliest = u64::MAX;
        for (userdata, sub) in &subs {
            let mut e = [0u8; EVENT_SIZE];
            e[0..8].copy_from_slice(&userdata.to_le_bytes());
            match sub {
                Sub::Clock { deadline } => {
                    if *deadline > now {
                        earliest = earliest.min(*deadline);
                        continue;
                    }
                    e[10] = 0;
                }
                Sub::Fd { fd, write } => {
                    e[10] = if *write { 2 } else { 1 };
                    let ready = match (*fd, &state.net) {
                        (0, _) if !write => Some((true, 0, false)),
                        (1 | 2, _) if *write => Some((true, 0, false)),
                        (fd, Some(net)) if fd >= 3 => net.table.readiness(fd).map(|r| {
                            (
                                if *write { r.writable } else { r.readable },
                                r.nbytes,
                                r.hangup,
                            )
                        }),
                        _ => None,
                    };
                    match ready {
                        Some((false, _, _)) => continue,
                        Some((true, nbytes, hangup)) => {
                            e[16..24].copy_from_slice(&nbytes.to_le_bytes());
                            e[24] = u8::from(hangup);
                        }
                        None => {
                            e[8..10].copy_from_slice(&(wasi::EBADF as u16).to_le_bytes());
                        }
                    }
                }
            }
            events.push(e);
        }
        let Some(net) = state.net.as_mut() else {
            if events.is_empty() {
                // Not a service: nothing to wait on with the host.
                return wasi::ENOTSUP;
            }
            return finish_poll(c, m, out_r.start, nevents_ptr, &events);
        };
        if !events.is_empty() {
            if net.table.ops_pending() && first {
                // Hand queued sends to the host before the module goes on (no wait), and
                // pick up whatever arrived meanwhile.
                exchange(net, 0);
                first = false;
                continue;
            }
            return finish_poll(c, m, out_r.start, nevents_ptr, &events);
        }
        first = false;
        let wait = earliest.saturating_sub(now);
        // Acknowledgements matter only to a poll that waits for writability.
        let writable = subs
            .iter()
            .any(|(_, s)| matches!(s, Sub::Fd { fd, write: true } if *fd >= 3));
        let flags = if writable {
            ironclaw_abi::net::WAIT_WRITABLE
        } else {
            0
        };
        exchange_flags(net, wait, flags);
        refuel(c);
    }
}

fn finish_poll(
    c: &mut Caller<'_, State>,
    m: Memory,
    out: usize,
    nevents_ptr: i32,
    events: &[[u8; EVENT_SIZE]],
) -> i32 {
    refuel(c);
    let mem = m.data_mut(c);
    for (i, e) in events.iter().enumerate() {
        let at = out + i * EVENT_SIZE;
        mem[at..at + EVENT_SIZE].copy_from_slice(e);
    }
    match put(mem, nevents_ptr, &(events.len() as u32).to_le_bytes()) {
        Ok(()) => wasi::ESUCCESS,
        Err(e) => e,
    }
}

/// WASI functions this file implements.
pub(crate) const IMPLEMENTED: &[&str] = &[
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
    "fd_close",
    "fd_fdstat_set_flags",
    "poll_oneoff",
];

/// Defines the socket functions in `linker`.
pub(crate) fn define(linker: &mut Linker<State>) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_wrap(
        MODULE,
        "sock_accept",
        |mut c: Caller<'_, State>, fd: i32, flags: i32, out: i32| -> i32 {
            if flags & !FDFLAGS_NONBLOCK != 0 {
                return wasi::EINVAL;
            }
            match accept(&mut c, fd as u32, flags & FDFLAGS_NONBLOCK != 0) {
                Ok(new) => write_u32(&mut c, out, new),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_recv",
        |mut c: Caller<'_, State>,
         fd: i32,
         iovs: i32,
         count: i32,
         flags: i32,
         out_len: i32,
         out_flags: i32|
         -> i32 {
            if flags & !3 != 0 {
                return wasi::EINVAL;
            }
            match recv(&mut c, fd as u32, iovs, count, flags & RECV_PEEK != 0) {
                Ok(n) => {
                    let r = write_u32(&mut c, out_len, n);
                    if r != wasi::ESUCCESS {
                        return r;
                    }
                    let Some(m) = memory(&c) else {
                        return wasi::EFAULT;
                    };
                    match put(m.data_mut(&mut c), out_flags, &0u16.to_le_bytes()) {
                        Ok(()) => wasi::ESUCCESS,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_send",
        |mut c: Caller<'_, State>, fd: i32, iovs: i32, count: i32, _flags: i32, out: i32| -> i32 {
            match send(&mut c, fd as u32, iovs, count) {
                Ok(n) => write_u32(&mut c, out, n),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_shutdown",
        |mut c: Caller<'_, State>, fd: i32, how: i32| -> i32 {
            let Some(net) = c.data_mut().net.as_mut() else {
                return wasi::ENOTCAPABLE;
            };
            let mut r = net.table.shutdown(fd as u32, how as u32);
            if r == Err(E::AGAIN) {
                exchange(net, 0);
                r = net.table.shutdown(fd as u32, how as u32);
            }
            match r {
                Ok(()) => wasi::ESUCCESS,
                Err(e) => err(e),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_close",
        |mut c: Caller<'_, State>, fd: i32| -> i32 {
            if !is_socket(&c, fd) {
                return wasi::stub_errno("fd_close", Some(fd));
            }
            match c.data_mut().net.as_mut().map(|n| n.table.close(fd as u32)) {
                Some(Ok(())) => wasi::ESUCCESS,
                Some(Err(e)) => err(e),
                None => wasi::EBADF,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_set_flags",
        |mut c: Caller<'_, State>, fd: i32, flags: i32| -> i32 {
            if !is_socket(&c, fd) {
                return wasi::stub_errno("fd_fdstat_set_flags", Some(fd));
            }
            if flags & !FDFLAGS_NONBLOCK != 0 {
                return wasi::ENOTSUP;
            }
            match c.data_mut().net.as_mut().map(|n| {
                n.table
                    .set_nonblock(fd as u32, flags & FDFLAGS_NONBLOCK != 0)
            }) {
                Some(Ok(())) => wasi::ESUCCESS,
                Some(Err(e)) => err(e),
                None => wasi::EBADF,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Caller<'_, State>, subs: i32, out: i32, n: i32, nevents: i32| -> i32 {
            poll_oneoff(&mut c, subs, out, n, nevents)
        },
    )?;
    Ok(())
}

/// `fd_fdstat_get` for a socket: filetype, flags and rights.
pub(crate) fn fdstat(c: &Caller<'_, State>, fd: i32) -> Option<[u8; 24]> {
    const SOCKET_STREAM: u8 = 6;
    let net = c.data().net.as_ref()?;
    let nonblock = net.table.nonblock(fd as u32)?;
    let listener = net.table.is_listener(fd as u32);
    let rights: u64 = (1 << 1) // fd_read
        | (1 << 3) // fd_fdstat_set_flags
        | (1 << 6) // fd_write
        | (1 << 27) // poll_fd_readwrite
        | (1 << 28) // sock_shutdown
        | if listener { 1 << 29 } else { 0 }; // sock_accept
    let mut stat = [0u8; 24];
    stat[0] = SOCKET_STREAM;
    if nonblock {
        stat[2] = FDFLAGS_NONBLOCK as u8;
    }
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    stat[16..24].copy_from_slice(&rights.to_le_bytes());
    Some(stat)
}
