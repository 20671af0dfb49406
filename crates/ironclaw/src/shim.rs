//! The guest shim image, built by `build.rs` from `crates/ironclaw-shim` and embedded here.
//! These bytes are loaded at `ironclaw_abi::layout::SHIM_BASE` and measured.

/// The flat shim image (text, rodata, data, zeroed bss).
pub static SHIM_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shim.bin"));

include!(concat!(env!("OUT_DIR"), "/shim_meta.rs"));

/// Directory holding the example workloads built by `build.rs` (`*.wasm`).
pub const EXAMPLES_DIR: &str = env!("IRONCLAW_EXAMPLES_DIR");

/// The LLM API key proxy module (`examples/wasm/llm-proxy`) that `ironclaw proxy` runs,
/// built reproducibly with the workspace like the shim (its bytes are measured).
pub static LLM_PROXY_MODULE: &[u8] =
    include_bytes!(concat!(env!("IRONCLAW_EXAMPLES_DIR"), "/llm-proxy.wasm"));

/// Gives back the pages of the embedded shim image once it has been copied into a guest
/// (`MADV_DONTNEED` on the whole pages inside it). They belong to the executable's read-only
/// file mapping: the kernel drops them from this process's RSS and, should anything read the
/// image again (the next launch of a process that runs several), faults them in from the file
/// unchanged. A long-running service otherwise keeps ~1.5 MB it never reads again.
pub fn release_image_pages() {
    let page = 4096usize;
    let start = SHIM_IMAGE.as_ptr() as usize;
    let end = start + SHIM_IMAGE.len();
    let (Some(first), last) = (start.checked_next_multiple_of(page), end - end % page) else {
        return;
    };
    if last <= first {
        return;
    }
    // SAFETY: [first, last) lies inside SHIM_IMAGE, a `static` in the executable's read-only
    // data (include_bytes!), so it is mapped for the whole life of the process and nothing
    // writes it. MADV_DONTNEED on a private file mapping only discards the resident copies;
    // a later read faults the identical bytes back in from the file, so every `&[u8]` to it
    // stays valid and sees the same contents.
    let rc = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_DONTNEED,
        )
    };
    // Best effort: a kernel that refuses leaves the pages resident, nothing else changes.
    let _ = rc;
}
