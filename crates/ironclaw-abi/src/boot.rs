//! The boot-information block: what the host tells the shim before its first instruction.
//!
//! Written by the host at [`crate::layout::BOOT_INFO_ADDR`], little-endian, fixed offsets.
//! The shim decodes it with [`BootInfo::decode`] and validates every address against the
//! memory size and the fixed layout before using it ([`BootInfo::validate`]): in the enclave
//! threat model the host is the adversary.
//!
//! Strings (argv, environment) are stored as NUL-terminated byte strings back to back in
//! one region each; `argc`/`envc` give the count.

use crate::layout;

/// Magic of the boot block ("ICBT").
pub const BOOT_MAGIC: u32 = u32::from_le_bytes(*b"ICBT");
/// Bytes used by the encoded block.
pub const BOOT_INFO_LEN: usize = 160;

/// Flag bit: the run is a debug launch (measured; attestation reports it).
pub const FLAG_DEBUG: u64 = 1;

/// Decoded boot block. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootInfo {
    pub magic: u32,
    pub abi_version: u32,
    /// Guest memory size in bytes.
    pub memory_size: u64,
    /// Guest-physical address and length of the Wasm module bytes.
    pub module_addr: u64,
    pub module_len: u64,
    /// argv region and count.
    pub args_addr: u64,
    pub args_len: u64,
    pub argc: u64,
    /// Environment region ("K=V\0" ...) and count.
    pub env_addr: u64,
    pub env_len: u64,
    pub envc: u64,
    /// Heap the shim's allocator owns.
    pub heap_start: u64,
    pub heap_end: u64,
    /// Wasm fuel budget (`u64::MAX` = unlimited).
    pub fuel: u64,
    /// Cap on any one Wasm linear memory, bytes.
    pub max_wasm_memory: u64,
    /// Cap on any one Wasm table, elements.
    pub max_table_elements: u64,
    /// Guest TSC frequency in kHz (0 = unknown: clocks then report ENOTSUP).
    pub tsc_khz: u64,
    /// Host realtime clock (ns since the Unix epoch) just before the first instruction.
    pub realtime_ns: u64,
    /// [`FLAG_DEBUG`] and future flags.
    pub flags: u64,
}

/// Why the shim refuses a boot block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    BadMagic,
    BadVersion(u32),
    /// A region (named) lies outside guest memory or overlaps the fixed layout.
    BadRegion(&'static str),
    /// Memory size out of the supported range.
    BadMemorySize,
}

const FIELDS: usize = 19;

impl BootInfo {
    fn fields(&self) -> [u64; FIELDS] {
        [
            u64::from(self.magic) | (u64::from(self.abi_version) << 32),
            self.memory_size,
            self.module_addr,
            self.module_len,
            self.args_addr,
            self.args_len,
            self.argc,
            self.env_addr,
            self.env_len,
            self.envc,
            self.heap_start,
            self.heap_end,
            self.fuel,
            self.max_wasm_memory,
            self.max_table_elements,
            self.tsc_khz,
            self.realtime_ns,
            self.flags,
            0,
        ]
    }

    /// Encodes the block (unused bytes zero).
    pub fn encode(&self) -> [u8; BOOT_INFO_LEN] {
        let mut out = [0u8; BOOT_INFO_LEN];
        for (i, f) in self.fields().iter().enumerate() {
            let bytes = f.to_le_bytes();
            out[i * 8..i * 8 + 8].copy_from_slice(&bytes);
        }
        out
    }

    /// Decodes the block. Pure decoding: call [`BootInfo::validate`] before use.
    pub fn decode(b: &[u8; BOOT_INFO_LEN]) -> Self {
        let mut f = [0u64; FIELDS];
        for (i, v) in f.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *v = u64::from_le_bytes(w);
        }
        Self {
            magic: f[0] as u32,
            abi_version: (f[0] >> 32) as u32,
            memory_size: f[1],
            module_addr: f[2],
            module_len: f[3],
            args_addr: f[4],
            args_len: f[5],
            argc: f[6],
            env_addr: f[7],
            env_len: f[8],
            envc: f[9],
            heap_start: f[10],
            heap_end: f[11],
            fuel: f[12],
            max_wasm_memory: f[13],
            max_table_elements: f[14],
            tsc_khz: f[15],
            realtime_ns: f[16],
            flags: f[17],
        }
    }

    /// Checks magic, version, and that every region lies inside guest memory above
    /// `image_end` (the end of the shim image) and does not overlap another region.
    pub fn validate(&self, image_end: u64) -> Result<(), BootError> {
        if self.magic != BOOT_MAGIC {
            return Err(BootError::BadMagic);
        }
        if self.abi_version != crate::ABI_VERSION {
            return Err(BootError::BadVersion(self.abi_version));
        }
        let min = layout::MIN_MEMORY_MIB << 20;
        let max = layout::MAX_MEMORY_MIB << 20;
        if self.memory_size < min
            || self.memory_size > max
            || !self.memory_size.is_multiple_of(2 << 20)
        {
            return Err(BootError::BadMemorySize);
        }
        let regions: [(&'static str, u64, u64); 4] = [
            ("module", self.module_addr, self.module_len),
            ("args", self.args_addr, self.args_len),
            ("env", self.env_addr, self.env_len),
            (
                "heap",
                self.heap_start,
                self.heap_end.wrapping_sub(self.heap_start),
            ),
        ];
        let mut ends = [0u64; 4];
        for (i, (name, start, len)) in regions.iter().enumerate() {
            let end = start.checked_add(*len).ok_or(BootError::BadRegion(name))?;
            if *start < image_end || end > self.memory_size || self.heap_end < self.heap_start {
                return Err(BootError::BadRegion(name));
            }
            ends[i] = end;
        }
        for i in 0..regions.len() {
            for j in (i + 1)..regions.len() {
                let (a0, a1) = (regions[i].1, ends[i]);
                let (b0, b1) = (regions[j].1, ends[j]);
                if a0 < b1 && b0 < a1 {
                    return Err(BootError::BadRegion(regions[j].0));
                }
            }
        }
        Ok(())
    }
}
