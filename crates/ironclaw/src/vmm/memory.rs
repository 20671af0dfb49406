//! Guest RAM: one anonymous mapping, 2 MiB aligned and advised for transparent huge pages.
//!
//! Why not `GuestMemoryMmap::from_ranges` alone: its mapping has no particular alignment,
//! so the host backs it with 4 KiB pages, and every 4 KiB the guest touches first costs a
//! fault (a VM exit on PVM's shadow paging, an EPT violation on hardware). With a 2 MiB
//! aligned `MADV_HUGEPAGE` mapping the kernel can back it with huge pages where THP is
//! enabled (`madvise` mode is enough); elsewhere the advice is ignored and nothing changes.
//! vm-memory then wraps the mapping without owning it; [`GuestRam`] unmaps it on drop.
//!
//! Measured here (kvm_pvm, `bench/ironclaw-launch`): the Rust HMAC example's compile + run
//! went from ~15 ms to ~1.7 ms; VM creation costs ~150 µs more (the first huge page is
//! cleared when the system structures are written).

use std::io;

const HUGE: usize = 2 << 20;

/// An anonymous mapping of guest RAM, unmapped on drop.
pub struct GuestRam {
    addr: *mut u8,
    size: usize,
}

impl GuestRam {
    /// Maps `size` bytes (a multiple of 2 MiB), 2 MiB aligned, read-write, private.
    pub fn new(size: usize) -> io::Result<Self> {
        if size == 0 || !size.is_multiple_of(HUGE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "guest RAM size must be a non-zero multiple of 2 MiB",
            ));
        }
        let reserve = size
            .checked_add(HUGE)
            .ok_or_else(|| io::Error::other("guest RAM size overflows"))?;
        // SAFETY: a fresh anonymous private mapping with no fixed address; it aliases nothing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE);
        let head = aligned - start;
        let tail = reserve - head - size;
        // SAFETY: [start, start+head) and [aligned+size, start+reserve) lie inside the mapping
        // just created and are not used by anything; unmapping them leaves exactly
        // [aligned, aligned+size) mapped.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + size) as *mut libc::c_void, tail);
            }
            // Advice only: failure (THP disabled) leaves ordinary pages, which still work.
            libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        }
        Ok(Self {
            addr: aligned as *mut u8,
            size,
        })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr
    }

    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: [addr, addr+size) is exactly the mapping `new` kept; the VM and every
        // vm-memory view of it are dropped before this (field order in `Vm`).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.size) };
    }
}

// SAFETY: GuestRam is a plain owner of a mapping; the pointer is only used for munmap and
// to build views, and nothing in it is thread-affine.
unsafe impl Send for GuestRam {}
