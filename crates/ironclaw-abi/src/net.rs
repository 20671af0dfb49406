//! Socket relay records of the [`crate::call::NET`] hypercall (services: `ironclaw serve`).
//!
//! A service enclave never sees a host socket. The host owns the listeners and
//! connections and names each one by a *handle* (`u32`): listener `i` (0-based, in the
//! order of `--listen`) is handle `i`; every connection the host accepts or opens gets a
//! new handle, strictly greater than every handle before it (handles are never reused).
//! The shim maps handles to the module's WASI fd numbers itself.
//!
//! One NET exchange carries a batch of guest *operations* (request payload) and returns a
//! batch of host *events* (response payload). Both are sequences of records: a 16-byte
//! header `kind: u32, handle: u32, value: u32, len: u32` (little-endian) followed by `len`
//! data bytes, packed back to back.
//!
//! Flow control is credit based in both directions, so neither side can make the other
//! buffer without bound ([`crate::boot::BootInfo::net_window`] = `W` bytes):
//! - receive: for each connection the host holds `W` bytes of credit at first; it sends at
//!   most that many bytes of [`EV_DATA`] and the guest returns credit with [`OP_WINDOW`] as
//!   the module consumes data;
//! - send: the guest may have at most `W` bytes of [`OP_SEND`] not yet acknowledged; the
//!   host acknowledges with [`EV_TXACK`] once bytes reached the kernel.

/// Size of a record header.
pub const RECORD_HEADER: usize = 16;

/// Guest op: send `len` data bytes on connection `handle`.
pub const OP_SEND: u32 = 1;
/// Guest op: the module consumed `value` bytes of `handle`: the host may send that many more.
pub const OP_WINDOW: u32 = 2;
/// Guest op: shut down `handle` (`value`: 1 = read, 2 = write, 3 = both). A write
/// shutdown takes effect after the bytes already sent.
pub const OP_SHUTDOWN: u32 = 3;
/// Guest op: the module closed `handle` (listener or connection). Bytes already sent are
/// still delivered (bounded by the idle timeout); the host sends no further event for it.
pub const OP_CLOSE: u32 = 4;
/// Guest op: open an egress connection to the destination named by the `len` data bytes
/// (`HOST:PORT`, exactly as listed at launch). `handle` is a guest-chosen token echoed by
/// the answer ([`EV_CONNECTED`] or [`EV_REFUSED`]), in the same response.
pub const OP_CONNECT: u32 = 5;

/// Host event: listener `handle` accepted a connection, whose new handle is `value`.
pub const EV_ACCEPTED: u32 = 1;
/// Host event: `len` bytes received on `handle`.
pub const EV_DATA: u32 = 2;
/// Host event: the peer of `handle` will send nothing more.
pub const EV_EOF: u32 = 3;
/// Host event: `handle` failed; `value` = WASI errno (e.g. 15 ECONNRESET, 73 ETIMEDOUT).
pub const EV_ERROR: u32 = 4;
/// Host event: `value` more bytes of `handle` reached the kernel (send credit returns).
pub const EV_TXACK: u32 = 5;
/// Host event: listener `handle` is closed (the service is terminating).
pub const EV_LISTENER_CLOSED: u32 = 6;
/// Host event: connect token `handle` is connection `value` (connecting; failures arrive
/// later as [`EV_ERROR`]).
pub const EV_CONNECTED: u32 = 7;
/// Host event: connect token `handle` was refused; `value` = WASI errno (76 ENOTCAPABLE:
/// not in the egress list; 41 ENFILE: connection limit).
pub const EV_REFUSED: u32 = 8;

/// Response flag (`values[0]` bit 0): the service is terminating (listeners closed,
/// grace period running).
pub const FLAG_TERMINATING: u64 = 1;

/// Wait flag (`args[1]` bit 0): the guest waits for send credit, so [`EV_TXACK`] ends a
/// wait. Without it acknowledgements alone do not end a wait: they travel with the next
/// response (a request/response exchange then costs one exit, not two).
pub const WAIT_WRITABLE: u64 = 1;

/// Shutdown direction bits of [`OP_SHUTDOWN`].
pub const SHUT_RD: u32 = 1;
/// See [`SHUT_RD`].
pub const SHUT_WR: u32 = 2;

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u32,
    pub handle: u32,
    pub value: u32,
    pub data: &'a [u8],
}

/// Why bytes are not a valid record sequence (offsets from the start of the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer than [`RECORD_HEADER`] bytes remain at `offset`.
    TruncatedHeader { offset: usize },
    /// The record at `offset` claims `len` bytes but only `available` remain.
    TruncatedData {
        offset: usize,
        len: u32,
        available: usize,
    },
}

/// Iterates the records of `bytes`, yielding an error (and then stopping) at the first
/// malformed one. Never panics, whatever `bytes` holds.
pub fn records(bytes: &[u8]) -> Records<'_> {
    Records {
        bytes,
        offset: 0,
        failed: false,
    }
}

/// Iterator returned by [`records`]; yields `(offset, record)`.
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(usize, Record<'a>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.bytes.len() {
            return None;
        }
        let offset = self.offset;
        let rest = self.bytes.get(offset..).unwrap_or(&[]);
        let Some(header) = rest.get(..RECORD_HEADER) else {
            self.failed = true;
            return Some(Err(RecordError::TruncatedHeader { offset }));
        };
        let (kind, handle, value, len) = (
            u32_at(header, 0),
            u32_at(header, 4),
            u32_at(header, 8),
            u32_at(header, 12),
        );
        let body = &rest[RECORD_HEADER..];
        let Some(data) = usize::try_from(len).ok().and_then(|n| body.get(..n)) else {
            self.failed = true;
            return Some(Err(RecordError::TruncatedData {
                offset,
                len,
                available: body.len(),
            }));
        };
        self.offset = offset + RECORD_HEADER + data.len();
        Some(Ok((
            offset,
            Record {
                kind,
                handle,
                value,
                data,
            },
        )))
    }
}

/// Encodes a record header for `len` data bytes.
pub fn encode_header(kind: u32, handle: u32, value: u32, len: u32) -> [u8; RECORD_HEADER] {
    let mut b = [0u8; RECORD_HEADER];
    b[0..4].copy_from_slice(&kind.to_le_bytes());
    b[4..8].copy_from_slice(&handle.to_le_bytes());
    b[8..12].copy_from_slice(&value.to_le_bytes());
    b[12..16].copy_from_slice(&len.to_le_bytes());
    b
}

/// WASI errno values the relay uses (preview 1 numbering).
pub mod errno {
    pub const AGAIN: u32 = 6;
    pub const BADF: u32 = 8;
    pub const CONNABORTED: u32 = 13;
    pub const CONNREFUSED: u32 = 14;
    pub const CONNRESET: u32 = 15;
    pub const HOSTUNREACH: u32 = 23;
    pub const INVAL: u32 = 28;
    pub const IO: u32 = 29;
    pub const NETUNREACH: u32 = 40;
    pub const NFILE: u32 = 41;
    pub const NOTCONN: u32 = 53;
    pub const NOTSOCK: u32 = 57;
    pub const PIPE: u32 = 64;
    pub const TIMEDOUT: u32 = 73;
    pub const NOTCAPABLE: u32 = 76;

    /// The errnos a host may report in [`super::EV_ERROR`] / [`super::EV_REFUSED`]; the
    /// shim turns any other value into [`IO`].
    pub const RELAYED: &[u32] = &[
        CONNABORTED,
        CONNREFUSED,
        CONNRESET,
        HOSTUNREACH,
        IO,
        NETUNREACH,
        NFILE,
        PIPE,
        TIMEDOUT,
        NOTCAPABLE,
    ];
}
