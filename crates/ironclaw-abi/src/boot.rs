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
pub const BOOT_INFO_LEN: usize = 192;

/// Flag bit: the run is a debug launch (measured; attestation reports it).
pub const FLAG_DEBUG: u64 = 1;
/// Flag bit: the launch is a service (`ironclaw serve`): the module has `listeners`
/// preopened socket fds (3, 4, ...), the NET hypercall is available, and `fuel` is the
/// budget of one poll turn (refilled whenever the module polls or blocks on a socket).
pub const FLAG_SERVICE: u64 = 2;

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
    /// [`FLAG_DEBUG`], [`FLAG_SERVICE`] and future flags.
    pub flags: u64,
    /// Service: number of listeners (preopened socket fds 3..3+listeners).
    pub listeners: u64,
    /// Service: flow-control window per connection and direction, bytes
    /// (see [`crate::net`]).
    pub net_window: u64,
    /// Service: most connections (accepted + egress) open at once.
    pub max_connections: u64,
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
    /// Service fields out of range (listeners, window, connection limit).
    BadService,
}

/// Most listeners a service may have.
pub const MAX_LISTENERS: u64 = 64;
/// Smallest and largest flow-control window (bytes).
pub const MIN_NET_WINDOW: u64 = 1024;
/// See [`MIN_NET_WINDOW`].
pub const MAX_NET_WINDOW: u64 = 16 << 20;
/// Largest connection limit of a service.
pub const MAX_CONNECTIONS: u64 = 65_536;

const FIELDS: usize = 24;

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
            self.listeners,
            self.net_window,
            self.max_connections,
            0,
            0,
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
            listeners: f[18],
            net_window: f[19],
            max_connections: f[20],
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
        if self.flags & FLAG_SERVICE != 0
            && (self.listeners > MAX_LISTENERS
                || !(MIN_NET_WINDOW..=MAX_NET_WINDOW).contains(&self.net_window)
                || !(1..=MAX_CONNECTIONS).contains(&self.max_connections))
        {
            return Err(BootError::BadService);
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
