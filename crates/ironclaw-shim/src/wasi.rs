//! WASI preview 1 for the module: stdio, args, environment, clocks, random, exit.
//!
//! Implemented: `args_*`, `environ_*`, `fd_write` (stdout, stderr), `fd_read` (stdin),
//! `fd_fdstat_get` (stdio), `fd_prestat_get`/`fd_prestat_dir_name` (no preopens: EBADF),
//! sockets of a service (`sock_*`, `fd_read`/`fd_write`/`fd_close`/`fd_fdstat_*` on them,
//! `poll_oneoff`: see `sock.rs`),
//! `clock_time_get`/`clock_res_get` (guest TSC; realtime is the host's clock at launch plus
//! elapsed TSC — untrusted, as any clock a host provides), `random_get` (RDRAND/RDSEED in
//! the guest, never the host), `proc_exit`, `sched_yield`.
//! Every other preview-1 function resolves to a stub returning the fitting errno
//! ([`stub_errno`]); nothing else is reachable from the module.
//!
//! Module memory is untrusted too: every pointer/length pair is range-checked against the
//! memory before use, and a bad one yields EFAULT rather than a panic.

use alloc::vec::Vec;

use ironclaw_abi::output;
use wasmi::{Caller, Extern, Linker, Memory};

use crate::runner::State;

/// Import module name of WASI preview 1.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

pub(crate) const ESUCCESS: i32 = 0;
pub(crate) const EBADF: i32 = 8;
pub(crate) const EFAULT: i32 = 21;
pub(crate) const EINVAL: i32 = 28;
pub(crate) const EIO: i32 = 29;
pub(crate) const ENOSYS: i32 = 52;
pub(crate) const ENOTSUP: i32 = 58;
pub(crate) const ESPIPE: i32 = 70;
pub(crate) const ENOTCAPABLE: i32 = 76;

/// Every function of WASI preview 1 (witx `wasi_snapshot_preview1`).
pub(crate) const ALL: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// The functions implemented for real (the rest are stubs).
pub(crate) const IMPLEMENTED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_read",
    "fd_write",
    "proc_exit",
    "sched_yield",
    "random_get",
];

/// The errno a stubbed function returns. `first_arg` is its first parameter (an fd for
/// `fd_*`), if it has one.
pub(crate) fn stub_errno(name: &str, first_arg: Option<i32>) -> i32 {
    if name.starts_with("fd_") {
        match first_arg {
            Some(0..=2) if name == "fd_seek" || name == "fd_tell" => ESPIPE,
            Some(0..=2) => ENOTSUP,
            _ => EBADF,
        }
    } else if name.starts_with("path_") || name.starts_with("sock_") {
        ENOTCAPABLE
    } else if name == "poll_oneoff" {
        ENOTSUP
    } else {
        ENOSYS
    }
}

fn memory(caller: &Caller<'_, State>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// `mem[ptr..ptr+len]`, or None if out of bounds.
fn range(mem: &[u8], ptr: i32, len: u64) -> Option<core::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= mem.len()).then_some(start..end)
}

fn put_u32(mem: &mut [u8], ptr: i32, v: u32) -> Result<(), i32> {
    let r = range(mem, ptr, 4).ok_or(EFAULT)?;
    mem[r].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u64(mem: &mut [u8], ptr: i32, v: u64) -> Result<(), i32> {
    let r = range(mem, ptr, 8).ok_or(EFAULT)?;
    mem[r].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn get_u32(mem: &[u8], ptr: i64) -> Result<u32, i32> {
    let ptr = i32::try_from(ptr).map_err(|_| EFAULT)?;
    let r = range(mem, ptr, 4).ok_or(EFAULT)?;
    let mut b = [0u8; 4];
    b.copy_from_slice(&mem[r]);
    Ok(u32::from_le_bytes(b))
}

/// The iovec array (`buf: u32, len: u32` each) at `iovs`, validated against memory.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<core::ops::Range<usize>>, i32> {
    let count = u32::try_from(count).map_err(|_| EINVAL)?;
    range(mem, iovs, u64::from(count) * 8).ok_or(EFAULT)?;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..i64::from(count) {
        let at = i64::from(iovs as u32) + i * 8;
        let buf = get_u32(mem, at)?;
        let len = get_u32(mem, at + 4)?;
        out.push(range(mem, buf as i32, u64::from(len)).ok_or(EFAULT)?);
    }
    Ok(out)
}

fn errno(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => ESUCCESS,
        Err(e) => e,
    }
}

fn sizes(strings: &[Vec<u8>]) -> (u32, u32) {
    let bytes: usize = strings.iter().map(|s| s.len() + 1).sum();
    (strings.len() as u32, bytes as u32)
}

fn write_strings(mem: &mut [u8], strings: &[Vec<u8>], ptrs: i32, buf: i32) -> Result<(), i32> {
    let mut cursor = buf as u32;
    for (i, s) in strings.iter().enumerate() {
        put_u32(mem, (ptrs as u32).wrapping_add(i as u32 * 4) as i32, cursor)?;
        let r = range(mem, cursor as i32, s.len() as u64 + 1).ok_or(EFAULT)?;
        let dst = &mut mem[r];
        dst[..s.len()].copy_from_slice(s);
        dst[s.len()] = 0;
        cursor = cursor.checked_add(s.len() as u32 + 1).ok_or(EFAULT)?;
    }
    Ok(())
}

/// Defines the implemented functions in `linker`.
pub(crate) fn define(linker: &mut Linker<State>) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Caller<'_, State>, argc: i32, size: i32| -> i32 {
            let Some(m) = memory(&c) else { return EFAULT };
            let (n, bytes) = sizes(&c.data().args);
            let mem = m.data_mut(&mut c);
            errno(put_u32(mem, argc, n).and_then(|_| put_u32(mem, size, bytes)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut c: Caller<'_, State>, ptrs: i32, buf: i32| -> i32 {
            let Some(m) = memory(&c) else { return EFAULT };
            let (mem, state) = m.data_and_store_mut(&mut c);
            errno(write_strings(mem, &state.args, ptrs, buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Caller<'_, State>, count: i32, size: i32| -> i32 {
            let Some(m) = memory(&c) else { return EFAULT };
            let (n, bytes) = sizes(&c.data().env);
            let mem = m.data_mut(&mut c);
            errno(put_u32(mem, count, n).and_then(|_| put_u32(mem, size, bytes)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut c: Caller<'_, State>, ptrs: i32, buf: i32| -> i32 {
            let Some(m) = memory(&c) else { return EFAULT };
            let (mem, state) = m.data_and_store_mut(&mut c);
            errno(write_strings(mem, &state.env, ptrs, buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, State>, id: i32, out: i32| -> i32 {
            if !(0..=3).contains(&id) {
                return EINVAL;
            }
            let Some(res) = c.data().clock.resolution_ns() else {
                return ENOTSUP;
            };
            let Some(m) = memory(&c) else { return EFAULT };
            errno(put_u64(m.data_mut(&mut c), out, res))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, State>, id: i32, _precision: i64, out: i32| -> i32 {
            let clock = &c.data().clock;
            let now = match id {
                0 => clock.realtime_ns(),
                1..=3 => clock.monotonic_ns(),
                _ => return EINVAL,
            };
            let Some(now) = now else { return ENOTSUP };
            let Some(m) = memory(&c) else { return EFAULT };
            errno(put_u64(m.data_mut(&mut c), out, now))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, State>, fd: i32, iovs: i32, count: i32, written: i32| -> i32 {
            let stream = match fd {
                1 => output::STDOUT,
                2 => output::STDERR,
                _ if crate::sock::is_socket(&c, fd) => {
                    return match crate::sock::fd_write(&mut c, fd as u32, iovs, count) {
                        Ok(n) => {
                            let Some(m) = memory(&c) else { return EFAULT };
                            errno(put_u32(m.data_mut(&mut c), written, n))
                        }
                        Err(e) => e,
                    };
                }
                _ => return EBADF,
            };
            let Some(m) = memory(&c) else { return EFAULT };
            let mem = m.data_mut(&mut c);
            let list = match iovecs(mem, iovs, count) {
                Ok(l) => l,
                Err(e) => return e,
            };
            let mut total: u32 = 0;
            for r in list {
                total = total.saturating_add(r.len() as u32);
                crate::hostcall::write_output(stream, &mem[r]);
            }
            errno(put_u32(mem, written, total))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Caller<'_, State>, fd: i32, iovs: i32, count: i32, read: i32| -> i32 {
            if fd != 0 {
                if !crate::sock::is_socket(&c, fd) {
                    return EBADF;
                }
                return match crate::sock::fd_read(&mut c, fd as u32, iovs, count) {
                    Ok(n) => {
                        let Some(m) = memory(&c) else { return EFAULT };
                        errno(put_u32(m.data_mut(&mut c), read, n))
                    }
                    Err(e) => e,
                };
            }
            let Some(m) = memory(&c) else { return EFAULT };
            let mem = m.data_mut(&mut c);
            let list = match iovecs(mem, iovs, count) {
                Ok(l) => l,
                Err(e) => return e,
            };
            // One host round trip fills the first non-empty buffer (a short read, as POSIX allows).
            let n = match list.into_iter().find(|r| !r.is_empty()) {
                Some(r) => match crate::hostcall::read_stdin(&mut mem[r]) {
                    Ok(n) => n,
                    Err(e) => crate::hostcall::refused(e),
                },
                None => 0,
            };
            errno(put_u32(mem, read, n as u32))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, State>, fd: i32, out: i32| -> i32 {
            const CHARACTER_DEVICE: u8 = 2;
            const RIGHT_FD_READ: u64 = 1 << 1;
            const RIGHT_FD_WRITE: u64 = 1 << 6;
            const RIGHT_POLL: u64 = 1 << 27;
            let rights = match fd {
                0 => RIGHT_FD_READ | RIGHT_POLL,
                1 | 2 => RIGHT_FD_WRITE | RIGHT_POLL,
                _ => {
                    let Some(stat) = crate::sock::fdstat(&c, fd) else {
                        return EBADF;
                    };
                    let Some(m) = memory(&c) else { return EFAULT };
                    let mem = m.data_mut(&mut c);
                    let Some(r) = range(mem, out, 24) else {
                        return EFAULT;
                    };
                    mem[r].copy_from_slice(&stat);
                    return ESUCCESS;
                }
            };
            let Some(m) = memory(&c) else { return EFAULT };
            let mem = m.data_mut(&mut c);
            let Some(r) = range(mem, out, 24) else {
                return EFAULT;
            };
            let stat = &mut mem[r];
            stat.fill(0);
            stat[0] = CHARACTER_DEVICE;
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            ESUCCESS
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_: Caller<'_, State>, _fd: i32, _out: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: Caller<'_, State>, _fd: i32, _p: i32, _l: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, State>, buf: i32, len: i32| -> i32 {
            let Some(m) = memory(&c) else { return EFAULT };
            let mem = m.data_mut(&mut c);
            let Some(r) = range(mem, buf, u64::from(len as u32)) else {
                return EFAULT;
            };
            for chunk in mem[r].chunks_mut(8) {
                let Some(v) = crate::cpu::random_u64() else {
                    return EIO;
                };
                chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
            }
            ESUCCESS
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_: Caller<'_, State>, code: i32| -> Result<(), wasmi::Error> {
            Err(wasmi::Error::i32_exit(code))
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_: Caller<'_, State>| -> i32 {
        ESUCCESS
    })?;
    Ok(())
}

/// Guest clocks from the TSC.
pub(crate) struct Clock {
    pub tsc_khz: u64,
    pub boot_tsc: u64,
    pub realtime_at_boot_ns: u64,
}

impl Clock {
    fn elapsed_ns(&self) -> Option<u64> {
        if self.tsc_khz == 0 {
            return None;
        }
        let ticks = crate::cpu::rdtsc().saturating_sub(self.boot_tsc);
        Some((u128::from(ticks) * 1_000_000 / u128::from(self.tsc_khz)) as u64)
    }

    pub(crate) fn monotonic_ns(&self) -> Option<u64> {
        self.elapsed_ns()
    }

    pub(crate) fn realtime_ns(&self) -> Option<u64> {
        self.elapsed_ns()
            .map(|e| self.realtime_at_boot_ns.saturating_add(e))
    }

    pub(crate) fn resolution_ns(&self) -> Option<u64> {
        (self.tsc_khz != 0).then(|| (1_000_000 / self.tsc_khz).max(1))
    }
}
