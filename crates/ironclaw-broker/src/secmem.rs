//! Keeping key material out of core dumps.
//!
//! Two layers, because either alone has gaps:
//!
//! - [`disable_core_dumps`]: `prctl(PR_SET_DUMPABLE, 0)` for the whole process
//!   (`ironclaw broker ...` calls it first): no core dump, no `/proc/PID/mem` or
//!   ptrace access by same-uid processes. A later `execve` of a set-uid binary or
//!   a privileged helper can make a process dumpable again, and
//!   `fs.suid_dumpable = 2` still dumps (root-only) cores.
//! - [`NoDump`]: a value (the store's AES key schedule, the token signing key)
//!   in its own anonymous mapping marked `MADV_DONTDUMP` (`dd` in
//!   `/proc/PID/smaps`), so even a dump that happens leaves it out; the mapping is
//!   zeroed before it is unmapped. [`scrub_stack`] then overwrites the stack
//!   the keys were built on (the move into the mapping leaves a copy behind).
//!
//! Not covered: the TLS private key, which rustls/ring keep in their own heap
//! allocations (only the process-wide setting protects it), and transient copies
//! made while a key file is read (those are zeroized on drop, see `statedir`).

use std::io;
use std::ops::Deref;
use std::ptr::NonNull;

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0).
pub fn disable_core_dumps() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this
    // process's dumpable attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when the process is dumpable.
pub fn dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers and returns the attribute.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

/// Overwrites the 32 KiB of stack below the caller's frame with zeros
/// (best effort, not tested: the old contents cannot be read back soundly).
///
/// Moving a value into [`NoDump`] copies it; the frames that built it (the
/// cipher's key schedule, a parsed signing key) are popped but their bytes stay
/// on the stack, which a core dump includes, until something overwrites them.
/// Called once after the keys are set up.
#[inline(never)]
pub fn scrub_stack() {
    use zeroize::Zeroize;
    let mut buf = [0xffu8; 32 * 1024];
    buf.zeroize();
    std::hint::black_box(&buf);
}

/// A `T` in its own anonymous private mapping, excluded from core dumps
/// (`MADV_DONTDUMP`) and zeroed when dropped.
pub struct NoDump<T> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: NoDump<T> owns its T exclusively (like Box<T>): sending or sharing it
// is exactly as safe as sending or sharing the T.
unsafe impl<T: Send> Send for NoDump<T> {}
// SAFETY: as above; &NoDump<T> only gives out &T.
unsafe impl<T: Sync> Sync for NoDump<T> {}

impl<T> std::fmt::Debug for NoDump<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoDump(..)")
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

impl<T> NoDump<T> {
    /// Moves `value` into a fresh `MADV_DONTDUMP` mapping.
    pub fn new(value: T) -> io::Result<Self> {
        let page = page_size();
        if std::mem::align_of::<T>() > page {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "alignment larger than a page",
            ));
        }
        let size = std::mem::size_of::<T>().max(1);
        let len = size.div_ceil(page) * page;
        // SAFETY: an anonymous private mapping of `len` bytes at an address the
        // kernel chooses; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `addr..addr+len` is the mapping just created and owned here.
        if unsafe { libc::madvise(addr, len, libc::MADV_DONTDUMP) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping the mapping created above, never used.
            unsafe { libc::munmap(addr, len) };
            return Err(e);
        }
        let ptr = addr.cast::<T>();
        // SAFETY: the mapping is page-aligned (>= align_of::<T>, checked above),
        // writable and at least size_of::<T>() bytes; nothing is there to drop.
        unsafe { ptr.write(value) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(NoDump { ptr, len })
    }
}

impl<T> Deref for NoDump<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points to the T written in `new`, valid until drop;
        // only shared references are handed out.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for NoDump<T> {
    fn drop(&mut self) {
        let base = self.ptr.as_ptr().cast::<u8>();
        // SAFETY: the T is valid and dropped exactly once, here; then the whole
        // mapping (owned by this value, `len` bytes, writable) is zeroed with
        // volatile writes (not elided) and unmapped.
        unsafe {
            std::ptr::drop_in_place(self.ptr.as_ptr());
            for i in 0..self.len {
                std::ptr::write_volatile(base.add(i), 0);
            }
            libc::munmap(base.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smaps entry of the mapping holding `addr` has the `dd` flag.
    fn dontdump_flag(addr: usize) -> bool {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = a <= addr && addr < b;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return flags.split_whitespace().any(|f| f == "dd");
                }
            }
        }
        false
    }

    #[test]
    fn value_lives_in_a_dontdump_mapping() {
        let v = NoDump::new([7u8; 32]).unwrap();
        assert_eq!(*v, [7u8; 32]);
        let addr = (&*v as *const [u8; 32]) as usize;
        assert_eq!(addr % page_size(), 0);
        assert!(dontdump_flag(addr), "no dd flag for {addr:#x}");
        let heap = Box::new([1u8; 32]);
        assert!(!dontdump_flag((&*heap as *const [u8; 32]) as usize));
    }

    #[test]
    fn drop_runs_the_destructor() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct D;
        impl Drop for D {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        drop(NoDump::new(D).unwrap());
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    }

    /// Runs in a child process (the flag is process-wide): the parent re-runs
    /// this test binary with only this test and an environment variable.
    #[test]
    fn disable_core_dumps_makes_the_process_non_dumpable() {
        if std::env::var_os("IRONCLAW_SECMEM_CHILD").is_some() {
            assert!(dumpable());
            disable_core_dumps().unwrap();
            assert!(!dumpable());
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "secmem::tests::disable_core_dumps_makes_the_process_non_dumpable",
                "--nocapture",
            ])
            .env("IRONCLAW_SECMEM_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{out:?}"
        );
    }
}
