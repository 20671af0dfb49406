//! Reads the boot block the host wrote, validates it, and copies the inputs (argv,
//! environment) into shim-private memory. Nothing host-written is used before it is
//! checked (`BootInfo::validate`: every region inside guest memory, above the shim image,
//! non-overlapping).

use alloc::vec::Vec;

use ironclaw_abi::boot::{BootError, BootInfo, BOOT_INFO_LEN};
use ironclaw_abi::layout;

extern "C" {
    /// End of the shim image (linker script).
    static __image_end: u8;
}

/// The validated launch description.
pub(crate) struct Boot {
    pub info: BootInfo,
    /// Module bytes (read in place: the region is validated and nothing else uses it).
    pub module: &'static [u8],
    /// argv strings, each without its NUL.
    pub args: Vec<Vec<u8>>,
    /// Environment strings ("K=V"), each without its NUL.
    pub env: Vec<Vec<u8>>,
}

/// Reads and validates the boot block (no allocation).
pub(crate) fn read_info() -> Result<BootInfo, BootError> {
    let mut raw = [0u8; BOOT_INFO_LEN];
    // SAFETY: the boot page is mapped read-only for the shim at BOOT_INFO_ADDR and is
    // BOOT_INFO_SIZE >= BOOT_INFO_LEN bytes long; we copy it out before looking at it.
    unsafe {
        core::ptr::copy_nonoverlapping(
            layout::BOOT_INFO_ADDR as *const u8,
            raw.as_mut_ptr(),
            BOOT_INFO_LEN,
        )
    };
    let info = BootInfo::decode(&raw);
    // SAFETY: taking the address of a linker symbol; it is never dereferenced.
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    info.validate(image_end)?;
    Ok(info)
}

/// Splits a NUL-terminated string region into exactly `count` strings.
fn strings(addr: u64, len: u64, count: u64) -> Option<Vec<Vec<u8>>> {
    // SAFETY: `validate` checked that [addr, addr+len) lies inside guest memory, above the
    // shim image and outside the heap; copying it out makes it private.
    let region = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }.to_vec();
    if count == 0 {
        return if region.is_empty() {
            Some(Vec::new())
        } else {
            None
        };
    }
    if region.last() != Some(&0) {
        return None;
    }
    let parts: Vec<Vec<u8>> = region[..region.len() - 1]
        .split(|b| *b == 0)
        .map(<[u8]>::to_vec)
        .collect();
    if parts.len() as u64 != count {
        return None;
    }
    Some(parts)
}

/// Copies the inputs out of the (validated) regions. Needs the heap.
pub(crate) fn load(info: BootInfo) -> Result<Boot, &'static str> {
    let args = strings(info.args_addr, info.args_len, info.argc)
        .ok_or("boot block: argv region malformed")?;
    let env = strings(info.env_addr, info.env_len, info.envc)
        .ok_or("boot block: environment region malformed")?;
    // SAFETY: validated like the string regions; the module region is not written by the
    // shim and lives for the whole run.
    let module = unsafe {
        core::slice::from_raw_parts(info.module_addr as *const u8, info.module_len as usize)
    };
    Ok(Boot {
        info,
        module,
        args,
        env,
    })
}
