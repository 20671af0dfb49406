//! SECURITY BOUNDARY (guest side): the shared hypercall buffer.
//!
//! In the enclave threat model the host is the adversary, so nothing it writes is used in
//! place: a response is copied out of the shared buffer into shim-private memory first and
//! every field (magic, status, length) is checked against what the shim asked for. The
//! shim's own bookkeeping (how much output is pending) lives in private memory, never in
//! the shared buffer.
//!
//! Output is batched: `write_output` appends records in the data area, and they travel with
//! the next hypercall of any kind; only a full buffer costs an exit of its own (FLUSH).
//!
//! This is the API the IronClaw calls (`ironclaw_calls.rs`) build on: [`call`] sends any
//! call number with scalar args and a payload and returns the validated response.

use core::cell::UnsafeCell;
use core::ptr;

use ironclaw_abi::output::{self, RECORD_HEADER};
use ironclaw_abi::{
    call as calls, layout, port, status, ExitKind, RequestHeader, ResponseHeader, DATA_CAPACITY,
    DATA_OFFSET, HEADER_SIZE, REQUEST_HEADER_OFFSET, REQUEST_MAGIC, RESPONSE_HEADER_OFFSET,
    RESPONSE_MAGIC, RESPONSE_VALUES,
};

/// Why a host answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostError {
    /// The response header's magic is wrong.
    BadMagic,
    /// The response claims more bytes than the shim asked for or the buffer holds.
    BadLength { claimed: u32, allowed: usize },
    /// The request itself does not fit in the buffer.
    RequestTooLarge { len: usize },
}

/// A validated response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Response {
    pub status: u32,
    pub values: [u64; RESPONSE_VALUES],
    /// Bytes copied into the caller's buffer.
    pub len: usize,
}

struct Channel {
    /// Bytes of output records pending at the start of the data area.
    pending: usize,
    /// Offset (in the data area) of the last record's header, if it can be extended.
    last_record: Option<(usize, u8)>,
}

struct ChannelCell(UnsafeCell<Channel>);
// SAFETY: the shim is single-threaded and has no interrupts; there is never a second
// reference to the channel at the same time (see `with`).
unsafe impl Sync for ChannelCell {}

static CHANNEL: ChannelCell = ChannelCell(UnsafeCell::new(Channel {
    pending: 0,
    last_record: None,
}));

fn with<R>(f: impl FnOnce(&mut Channel) -> R) -> R {
    // SAFETY: single-threaded, and `f` never re-enters `with` (the functions below call it
    // once each, never nested).
    f(unsafe { &mut *CHANNEL.0.get() })
}

fn buf() -> *mut u8 {
    layout::SHARED_BUF_ADDR as *mut u8
}

/// Copies `bytes` into the shared buffer at `offset`.
fn put(offset: usize, bytes: &[u8]) {
    debug_assert!(offset + bytes.len() <= layout::SHARED_BUF_SIZE as usize);
    if offset
        .checked_add(bytes.len())
        .is_none_or(|end| end > layout::SHARED_BUF_SIZE as usize)
    {
        return;
    }
    // SAFETY: the range was checked against the buffer, which is identity-mapped, writable
    // and not aliased by any Rust reference.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buf().add(offset), bytes.len()) }
}

/// Copies `out.len()` bytes out of the shared buffer at `offset`.
fn get(offset: usize, out: &mut [u8]) {
    if offset
        .checked_add(out.len())
        .is_none_or(|end| end > layout::SHARED_BUF_SIZE as usize)
    {
        return;
    }
    // SAFETY: as in `put`, for reading.
    unsafe { ptr::copy_nonoverlapping(buf().add(offset), out.as_mut_ptr(), out.len()) }
}

/// Appends `bytes` to the pending output of `stream`; flushes when the buffer is full.
pub(crate) fn write_output(stream: u8, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let flushed = with(|ch| {
            // Extend the previous record if it is the same stream.
            if let Some((at, s)) = ch.last_record {
                if s == stream {
                    let room = DATA_CAPACITY - ch.pending;
                    let n = bytes.len().min(room);
                    if n > 0 {
                        let mut len = [0u8; 4];
                        get(DATA_OFFSET + at + 4, &mut len);
                        let new_len = u32::from_le_bytes(len) as usize + n;
                        put(DATA_OFFSET + at + 4, &(new_len as u32).to_le_bytes());
                        put(DATA_OFFSET + ch.pending, &bytes[..n]);
                        ch.pending += n;
                        bytes = &bytes[n..];
                        return false;
                    }
                }
            }
            let room = DATA_CAPACITY - ch.pending;
            if room <= RECORD_HEADER {
                return true;
            }
            let n = bytes.len().min(room - RECORD_HEADER);
            put(
                DATA_OFFSET + ch.pending,
                &output::encode_header(stream, n as u32),
            );
            put(DATA_OFFSET + ch.pending + RECORD_HEADER, &bytes[..n]);
            ch.last_record = Some((ch.pending, stream));
            ch.pending += RECORD_HEADER + n;
            bytes = &bytes[n..];
            false
        });
        if flushed {
            flush();
        }
    }
}

/// Sends the pending output now (one exit), if there is any.
pub(crate) fn flush() {
    if with(|ch| ch.pending) == 0 {
        return;
    }
    if let Err(e) = call(calls::FLUSH, [0; 4], &[], &mut []) {
        refused(e);
    }
}

/// Sends call `number` with `args` and `payload` (carrying pending output along), and
/// copies at most `out.len()` response bytes into `out`. The response is validated before
/// anything of it is used.
pub(crate) fn call(
    number: u32,
    args: [u64; 4],
    payload: &[u8],
    out: &mut [u8],
) -> Result<Response, HostError> {
    if payload.len() > DATA_CAPACITY {
        return Err(HostError::RequestTooLarge { len: payload.len() });
    }
    if with(|ch| ch.pending + payload.len() > DATA_CAPACITY) {
        flush();
    }
    let output_len = with(|ch| {
        let pending = ch.pending;
        put(DATA_OFFSET + pending, payload);
        ch.pending = 0;
        ch.last_record = None;
        pending
    });
    let header = RequestHeader {
        magic: REQUEST_MAGIC,
        call: number,
        output_len: output_len as u32,
        payload_len: payload.len() as u32,
        args,
    };
    put(REQUEST_HEADER_OFFSET, &header.encode());
    crate::cpu::out8(port::HYPERCALL, 0);

    // Copy the response header in, then validate it.
    let mut raw = [0u8; HEADER_SIZE];
    get(RESPONSE_HEADER_OFFSET, &mut raw);
    let response = ResponseHeader::decode(&raw);
    if response.magic != RESPONSE_MAGIC {
        return Err(HostError::BadMagic);
    }
    let allowed = out.len().min(DATA_CAPACITY);
    let len = response.payload_len as usize;
    if len > allowed {
        return Err(HostError::BadLength {
            claimed: response.payload_len,
            allowed,
        });
    }
    get(DATA_OFFSET, &mut out[..len]);
    // Poison the response magic so a host that answers nothing next time is caught.
    put(RESPONSE_HEADER_OFFSET, &[0; 4]);
    Ok(Response {
        status: response.status,
        values: response.values,
        len,
    })
}

/// Reads stdin into `out`: returns the number of bytes (0 = end of input).
pub(crate) fn read_stdin(out: &mut [u8]) -> Result<usize, HostError> {
    let want = out.len().min(DATA_CAPACITY);
    if want == 0 {
        return Ok(0);
    }
    let r = call(
        calls::READ_STDIN,
        [want as u64, 0, 0, 0],
        &[],
        &mut out[..want],
    )?;
    if r.status != status::OK || r.values[0] == 1 {
        // Error or end of input (values[0] = 1): the module sees end of file.
        return Ok(0);
    }
    Ok(r.len)
}

/// Ends the run: sends the pending output, the exit kind, code, timings and message.
pub(crate) fn exit(kind: ExitKind, code: u32, timings: [u64; 2], message: &[u8]) -> ! {
    let message = &message[..message.len().min(4096)];
    loop {
        // The host never resumes after EXIT; if a hostile one does, ask again.
        let _ = call(
            calls::EXIT,
            [kind as u64, u64::from(code), timings[0], timings[1]],
            message,
            &mut [],
        );
    }
}

/// A host answer failed validation: the shim cannot trust the channel any more.
pub(crate) fn refused(e: HostError) -> ! {
    let msg: &[u8] = match e {
        HostError::BadMagic => b"host response refused: bad magic",
        HostError::BadLength { .. } => b"host response refused: length larger than requested",
        HostError::RequestTooLarge { .. } => b"request larger than the shared buffer",
    };
    exit(ExitKind::ShimError, 0, [0, 0], msg)
}
