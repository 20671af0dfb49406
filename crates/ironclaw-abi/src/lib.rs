#![no_std]
#![forbid(unsafe_code)]
//! IronClaw hypercall ABI shared by the host VMM (`crates/ironclaw`) and the guest shim
//! (`crates/ironclaw-shim`).
//!
//! Everything that crosses the VM boundary is defined here, once: the guest-physical memory
//! layout, the two I/O ports, the boot-information block the host writes before the first
//! instruction, and the request/response format of the single shared hypercall buffer.
//!
//! # The boundary
//! Host and guest share exactly one buffer ([`layout::SHARED_BUF_ADDR`], [`layout::SHARED_BUF_SIZE`]
//! bytes). Nothing in it is a pointer: every field is a call number, a small integer, or a
//! length counted from the start of the data area. Each side decodes the other's bytes with
//! the functions in this crate (no casts of raw memory to structs) and then validates every
//! field against its own limits:
//! - the host treats the guest as hostile (it runs untrusted Wasm through an interpreter that
//!   could have bugs) — see `crates/ironclaw/src/hypercall/untrusted_guest_request.rs`;
//! - the shim treats the host as hostile (the enclave threat model) — it copies the response
//!   out of the shared buffer before looking at it and checks every length.
//!
//! # One hypercall
//! 1. The guest writes a [`RequestHeader`] at offset 0 and its data into the data area
//!    ([`DATA_OFFSET`]..): first `output_len` bytes of batched output records
//!    ([`output`]), then `payload_len` bytes of call-specific payload.
//! 2. The guest executes `out` to [`port::HYPERCALL`] (one VM exit).
//! 3. The host writes any pending output, performs the call and writes a [`ResponseHeader`]
//!    at [`RESPONSE_HEADER_OFFSET`] and `payload_len` response bytes at the start of the data
//!    area (the request data is dead by then), then resumes the vCPU.
//!
//! Every request carries the guest's pending stdout/stderr, so output never costs an exit of
//! its own unless the shim's output buffer fills up ([`call::FLUSH`]).
//!
//! # Call numbers (extensible)
//! | range | owner |
//! |---|---|
//! | `0x0000` | invalid (a zeroed buffer is never a valid request) |
//! | `0x0001..=0x00FF` | core: exit, flush, stdin, socket relay ([`call`]) |
//! | `0x0100..=0x01FF` | IronClaw's own calls: attestation, sealing, secrets |
//! | everything else | reserved; the host answers [`status::UNKNOWN_CALL`] |
//!
//! A new call takes the next free number of its range, uses `args` for scalars and the
//! payload for bytes, and documents both directions here. The host rejects unknown numbers
//! without side effects, so old hosts fail cleanly on new shims.

extern crate alloc;

pub mod boot;
pub mod measured_argv;
pub mod net;
pub mod net_table;
pub mod output;

/// Version of this ABI. Bumped on any incompatible change to the layout, the headers, the
/// boot block or the meaning of a call. Written by the host into the boot block and
/// checked by the shim.
pub const ABI_VERSION: u32 = 2;

/// Guest-physical (= guest-virtual: the host identity-maps memory) layout.
pub mod layout {
    /// Size of a small page.
    pub const PAGE_SIZE: u64 = 0x1000;
    /// Page 0 is never mapped, so null dereferences in the shim fault.
    pub const NULL_GUARD_END: u64 = 0x1000;
    /// Level-4 page table (supervisor-only).
    pub const PML4_ADDR: u64 = 0x1000;
    /// Page-directory-pointer table (supervisor-only).
    pub const PDPT_ADDR: u64 = 0x2000;
    /// Page directory covering the first GiB with 2 MiB pages (supervisor-only).
    pub const PD_ADDR: u64 = 0x3000;
    /// Page table that maps the first 2 MiB with 4 KiB pages (supervisor-only).
    pub const PT_LOW_ADDR: u64 = 0x4000;
    /// Global descriptor table (supervisor-only).
    pub const GDT_ADDR: u64 = 0x5000;
    /// 64-bit task-state segment (RSP0 for faults; supervisor-only).
    pub const TSS_ADDR: u64 = 0x5800;
    /// Interrupt descriptor table (supervisor-only).
    pub const IDT_ADDR: u64 = 0x6000;
    /// CPL0 exception stubs written by the host (supervisor-only, the only CPL0 code).
    pub const FAULT_STUBS_ADDR: u64 = 0x7000;
    /// Bottom of the CPL0 stack used when an exception is delivered (supervisor-only).
    pub const CPL0_STACK_BOTTOM: u64 = 0x8000;
    /// Top of the CPL0 stack (TSS.RSP0).
    pub const CPL0_STACK_TOP: u64 = 0xA000;
    /// Boot-information block (host → shim), one page, user-readable. See [`crate::boot`].
    pub const BOOT_INFO_ADDR: u64 = 0xA000;
    /// Size of the boot-information page.
    pub const BOOT_INFO_SIZE: u64 = 0x1000;
    /// The one shared hypercall buffer.
    pub const SHARED_BUF_ADDR: u64 = 0x10_0000;
    /// Size of the shared hypercall buffer (256 KiB).
    pub const SHARED_BUF_SIZE: u64 = 0x4_0000;
    /// Unmapped guard below the shim stack: a stack overflow is a page fault with CR2 here.
    pub const STACK_GUARD_BOTTOM: u64 = 0x14_0000;
    /// Lowest address of the shim stack.
    pub const SHIM_STACK_BOTTOM: u64 = 0x15_0000;
    /// Initial RSP of the shim (the stack grows down to [`SHIM_STACK_BOTTOM`]).
    pub const SHIM_STACK_TOP: u64 = 0x20_0000;
    /// Link address of the shim image (its linker script must agree; the host's build
    /// script checks it).
    pub const SHIM_BASE: u64 = 0x20_0000;
    /// Smallest guest memory the host accepts (MiB).
    pub const MIN_MEMORY_MIB: u64 = 8;
    /// Largest guest memory the host accepts (MiB): one page directory of 2 MiB pages.
    pub const MAX_MEMORY_MIB: u64 = 1024;
}

/// I/O ports. With RFLAGS.IOPL=3 an `out` at CPL3 exits to the host.
pub mod port {
    /// `out` here (any width, value ignored) asks the host to process the shared buffer.
    pub const HYPERCALL: u16 = 0x0CA0;
    /// Written only by the host's CPL0 fault stubs: RAX = vector, RBX = error code,
    /// RCX = faulting RIP; the host reads CR2 from the vCPU.
    pub const FAULT: u16 = 0x0CA1;
}

/// Hypercall numbers. See the crate documentation for the ranges.
pub mod call {
    /// The run is over. `args[0]` = [`crate::ExitKind`], `args[1]` = exit code (for
    /// [`crate::ExitKind::Exited`]), `args[2]` / `args[3]` = guest-TSC ticks spent compiling /
    /// instantiating + running the module (informational, for `--timings`), payload = UTF-8
    /// message (may be empty, at most 4096 bytes). No response.
    pub const EXIT: u32 = 0x0001;
    /// Only the batched output; no payload. Sent when the shim's output buffer is full.
    pub const FLUSH: u32 = 0x0002;
    /// Read stdin. `args[0]` = maximum bytes wanted. Response payload = the bytes
    /// (never more than asked for); `values[0]` = 1 at end of input, else 0.
    pub const READ_STDIN: u32 = 0x0003;
    /// Socket relay of a service (`ironclaw serve`). `args[0]` = how long the host may wait for an
    /// event when it has none to report, in nanoseconds (0 = do not wait, `u64::MAX` = until
    /// one arrives); `args[1]` = wait flags ([`crate::net::WAIT_WRITABLE`]; other bits zero).
    /// Payload = operation records ([`crate::net`]). Response payload = event
    /// records; `values[0]` = flags ([`crate::net::FLAG_TERMINATING`]). `UNAVAILABLE` when the
    /// launch is not a service.
    pub const NET: u32 = 0x0004;
    /// First number of the range owned by IronClaw's own calls.
    pub const IRONCLAW_FIRST: u32 = 0x0100;
    /// Last number of the range owned by IronClaw's own calls.
    pub const IRONCLAW_LAST: u32 = 0x01FF;
    /// Attestation evidence for this enclave. Payload = report_data (exactly 64 bytes).
    /// Response payload = the `kvm` evidence: a tagged COSE_Sign1 signed by the host's
    /// platform key over the launch measurement the host computed (see
    /// `ironclaw_verifier::kvm`). `UNAVAILABLE` when the host has no platform key.
    pub const ATTEST: u32 = 0x0100;
    /// Sealing key request (SEV-SNP `MSG_KEY_REQ` shape). `args[0]` = key version (1),
    /// `args[1]` = guest field select (bit 0: launch measurement; must be exactly 1). No
    /// payload. Response payload = the 32-byte key derived from the platform sealing root
    /// and the host-computed measurement. The shim does the AEAD itself.
    pub const SEAL_KEY: u32 = 0x0101;
    /// Forward one KBS HTTP request to the broker the host was given. `args[0]` = method
    /// (1 = GET, 2 = POST). Payload = `path_len: u32 LE | path | cookie_len: u32 LE |
    /// cookie | body` (path starts with `/kbs/v0/`). Response `values[0]` = HTTP status,
    /// payload = `set_cookie_len: u32 LE | set_cookie | body`. The bodies are protected end
    /// to end (evidence binds the enclave's key; the resource is a JWE to it): the host only
    /// moves bytes. `UNAVAILABLE` when no broker is configured or it cannot be reached.
    pub const KBS_HTTP: u32 = 0x0102;
}

/// Status the host writes into [`ResponseHeader::status`].
pub mod status {
    /// The call succeeded.
    pub const OK: u32 = 0;
    /// The call number is not one this host implements.
    pub const UNKNOWN_CALL: u32 = 1;
    /// A field of the request was invalid (the host's error names it on its side).
    pub const BAD_REQUEST: u32 = 2;
    /// The call is known but not available on this host (e.g. no attestation key).
    pub const UNAVAILABLE: u32 = 3;
}

/// Why the shim ended the run (`args[0]` of [`call::EXIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitKind {
    /// The module returned from `_start` (code 0) or called `proc_exit(code)`.
    Exited = 0,
    /// The module trapped (message names the trap).
    Trap = 1,
    /// The Wasm fuel budget ran out.
    FuelExhausted = 2,
    /// A Wasm memory or table grew past its cap, or the guest heap ran out.
    MemoryLimit = 3,
    /// The module failed to decode or validate.
    InvalidModule = 4,
    /// The module imports something that is neither WASI preview 1 nor IronClaw.
    LinkError = 5,
    /// The shim itself failed (bad boot block, panic, host answer refused).
    ShimError = 6,
}

impl ExitKind {
    /// Decodes an exit kind; `None` for a value no shim sends.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Exited,
            1 => Self::Trap,
            2 => Self::FuelExhausted,
            3 => Self::MemoryLimit,
            4 => Self::InvalidModule,
            5 => Self::LinkError,
            6 => Self::ShimError,
            _ => return None,
        })
    }
}

/// Offset of the request header in the shared buffer.
pub const REQUEST_HEADER_OFFSET: usize = 0;
/// Offset of the response header in the shared buffer.
pub const RESPONSE_HEADER_OFFSET: usize = 64;
/// Size reserved for each header.
pub const HEADER_SIZE: usize = 64;
/// Offset of the data area in the shared buffer.
pub const DATA_OFFSET: usize = 128;
/// Capacity of the data area.
pub const DATA_CAPACITY: usize = layout::SHARED_BUF_SIZE as usize - DATA_OFFSET;
/// Magic of a request header ("ICRQ").
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"ICRQ");
/// Magic of a response header ("ICRS").
pub const RESPONSE_MAGIC: u32 = u32::from_le_bytes(*b"ICRS");
/// Number of scalar arguments in a request.
pub const REQUEST_ARGS: usize = 4;
/// Number of scalar values in a response.
pub const RESPONSE_VALUES: usize = 2;

/// Guest → host request header (little-endian, 64 bytes reserved, 48 used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestHeader {
    /// Must be [`REQUEST_MAGIC`].
    pub magic: u32,
    /// Call number ([`call`]).
    pub call: u32,
    /// Bytes of output records at the start of the data area.
    pub output_len: u32,
    /// Bytes of call payload right after the output records.
    pub payload_len: u32,
    /// Call-specific scalars.
    pub args: [u64; REQUEST_ARGS],
}

/// Host → guest response header (little-endian, 64 bytes reserved, 32 used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResponseHeader {
    /// Must be [`RESPONSE_MAGIC`].
    pub magic: u32,
    /// [`status`] code.
    pub status: u32,
    /// Bytes of response payload at the start of the data area.
    pub payload_len: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Call-specific scalars.
    pub values: [u64; RESPONSE_VALUES],
}

fn le_u32(b: &[u8; HEADER_SIZE], at: usize) -> u32 {
    let mut v = [0u8; 4];
    let mut i = 0;
    while i < 4 {
        v[i] = b[at + i];
        i += 1;
    }
    u32::from_le_bytes(v)
}

fn le_u64(b: &[u8; HEADER_SIZE], at: usize) -> u64 {
    let mut v = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        v[i] = b[at + i];
        i += 1;
    }
    u64::from_le_bytes(v)
}

fn put(b: &mut [u8; HEADER_SIZE], at: usize, bytes: &[u8]) {
    for (i, byte) in bytes.iter().enumerate() {
        b[at + i] = *byte;
    }
}

impl RequestHeader {
    /// Decodes a header from its 64 bytes. Pure decoding: the caller validates.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Self {
        let mut args = [0u64; REQUEST_ARGS];
        for (i, a) in args.iter_mut().enumerate() {
            *a = le_u64(b, 16 + 8 * i);
        }
        Self {
            magic: le_u32(b, 0),
            call: le_u32(b, 4),
            output_len: le_u32(b, 8),
            payload_len: le_u32(b, 12),
            args,
        }
    }

    /// Encodes the header into its 64 bytes (unused bytes zero).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        put(&mut b, 0, &self.magic.to_le_bytes());
        put(&mut b, 4, &self.call.to_le_bytes());
        put(&mut b, 8, &self.output_len.to_le_bytes());
        put(&mut b, 12, &self.payload_len.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            put(&mut b, 16 + 8 * i, &a.to_le_bytes());
        }
        b
    }
}

impl ResponseHeader {
    /// Decodes a header from its 64 bytes. Pure decoding: the caller validates.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Self {
        Self {
            magic: le_u32(b, 0),
            status: le_u32(b, 4),
            payload_len: le_u32(b, 8),
            reserved: le_u32(b, 12),
            values: [le_u64(b, 16), le_u64(b, 24)],
        }
    }

    /// Encodes the header into its 64 bytes (unused bytes zero).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        put(&mut b, 0, &self.magic.to_le_bytes());
        put(&mut b, 4, &self.status.to_le_bytes());
        put(&mut b, 8, &self.payload_len.to_le_bytes());
        put(&mut b, 12, &self.reserved.to_le_bytes());
        put(&mut b, 16, &self.values[0].to_le_bytes());
        put(&mut b, 24, &self.values[1].to_le_bytes());
        b
    }
}
