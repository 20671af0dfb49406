//! SECURITY BOUNDARY: parsing of a hypercall request written by the guest.
//!
//! Everything the guest writes into the shared buffer is hostile input: the guest runs
//! untrusted WebAssembly through an interpreter, and a bug there must not become a bug here.
//! This module turns the raw bytes (already copied out of guest memory, so the guest cannot
//! change them while we look) into a [`GuestRequest`] whose every field has been checked:
//! magic, call number, lengths against the data area, output records, exit kind and code,
//! message size. It never panics, never allocates from a guest-chosen size, and names the
//! offending field in every error. It is fuzzed (`fuzz/fuzz_targets/ironclaw_hypercall.rs`).

use ironclaw_abi::output::{self, Record, RecordError};
use ironclaw_abi::{call, ExitKind, RequestHeader, DATA_CAPACITY, HEADER_SIZE, REQUEST_MAGIC};

/// Longest message an EXIT request may carry (bytes).
pub const MAX_EXIT_MESSAGE: usize = 4096;

/// Why a guest request was refused. Offsets are from the start of the data area.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request header: magic is {found:#010x}, expected {REQUEST_MAGIC:#010x}")]
    BadMagic { found: u32 },
    #[error("request header: output_len {output_len} + payload_len {payload_len} exceeds the data area of {DATA_CAPACITY} bytes")]
    DataTooLong { output_len: u32, payload_len: u32 },
    #[error("request data: {available} bytes supplied, header announces {needed}")]
    DataShort { needed: usize, available: usize },
    #[error("output records: {0:?}")]
    Output(RecordError),
    #[error("exit request: args[0] = {0} is not an exit kind")]
    BadExitKind(u64),
    #[error("exit request: args[1] = {0} is not a 32-bit exit code")]
    BadExitCode(u64),
    #[error("exit request: message of {len} bytes exceeds {MAX_EXIT_MESSAGE}")]
    MessageTooLong { len: usize },
    #[error("call {call:#x}: takes no payload, got {len} bytes")]
    UnexpectedPayload { call: u32, len: u32 },
    #[error("read request: args[0] = {0} is zero or larger than the data area")]
    BadReadLength(u64),
    #[error("NET request: args[1] = {0:#x} has unknown wait flags")]
    BadNetFlags(u64),
}

/// A validated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<'a> {
    /// The run is over.
    /// `compile_ticks`/`run_ticks` are the shim's own guest-TSC timings, informational only.
    Exit {
        kind: ExitKind,
        code: u32,
        message: &'a [u8],
        compile_ticks: u64,
        run_ticks: u64,
    },
    /// Only output.
    Flush,
    /// Read at most `max` bytes of stdin (1..=DATA_CAPACITY).
    ReadStdin { max: usize },
    /// Socket relay of a service: wait at most `wait_ns` for events; `ops` are the guest's
    /// operation records (parsed by `crate::service::untrusted_guest_ops`).
    /// `wake_on_ack`: acknowledgements alone end the wait (`net::WAIT_WRITABLE`).
    Net {
        wait_ns: u64,
        wake_on_ack: bool,
        ops: &'a [u8],
    },
    /// A call in IronClaw's own range (0x100..=0x1FF): the dispatcher's extension decides.
    IronClaw {
        number: u32,
        args: [u64; 4],
        payload: &'a [u8],
    },
    /// Any other number: answered with `UNKNOWN_CALL`, no side effects.
    Unknown { number: u32 },
}

/// A validated request: the output records to write first, then the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRequest<'a> {
    /// Raw output area; every record in it has been validated by [`parse_request`].
    output: &'a [u8],
    /// The call.
    pub call: Call<'a>,
}

impl<'a> GuestRequest<'a> {
    /// The output records, in the order the module wrote them (all already validated).
    pub fn output(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        output::records(self.output).filter_map(Result::ok)
    }

    /// Total bytes of output carried (without record headers).
    pub fn output_bytes(&self) -> u64 {
        self.output().map(|r| r.bytes.len() as u64).sum()
    }
}

/// Validates the header alone and returns how many data bytes the request uses, so the
/// caller copies exactly that much out of guest memory.
pub fn data_len(header: &[u8; HEADER_SIZE]) -> Result<(RequestHeader, usize), RequestError> {
    let h = RequestHeader::decode(header);
    if h.magic != REQUEST_MAGIC {
        return Err(RequestError::BadMagic { found: h.magic });
    }
    let total = u64::from(h.output_len) + u64::from(h.payload_len);
    if total > DATA_CAPACITY as u64 {
        return Err(RequestError::DataTooLong {
            output_len: h.output_len,
            payload_len: h.payload_len,
        });
    }
    // total <= DATA_CAPACITY, which fits usize.
    Ok((h, total as usize))
}

/// Parses and validates a whole request: `header` is the 64-byte request header, `data` the
/// bytes copied from the start of the data area (at least what the header announces).
pub fn parse_request<'a>(
    header: &[u8; HEADER_SIZE],
    data: &'a [u8],
) -> Result<GuestRequest<'a>, RequestError> {
    let (h, needed) = data_len(header)?;
    let used = data.get(..needed).ok_or(RequestError::DataShort {
        needed,
        available: data.len(),
    })?;
    let (output_area, payload) = used.split_at(h.output_len as usize);
    for record in output::records(output_area) {
        record.map_err(RequestError::Output)?;
    }
    let no_payload = |call: u32| {
        if payload.is_empty() {
            Ok(())
        } else {
            Err(RequestError::UnexpectedPayload {
                call,
                len: h.payload_len,
            })
        }
    };
    let call = match h.call {
        call::EXIT => {
            let kind = u32::try_from(h.args[0])
                .ok()
                .and_then(ExitKind::from_u32)
                .ok_or(RequestError::BadExitKind(h.args[0]))?;
            let code =
                u32::try_from(h.args[1]).map_err(|_| RequestError::BadExitCode(h.args[1]))?;
            if payload.len() > MAX_EXIT_MESSAGE {
                return Err(RequestError::MessageTooLong { len: payload.len() });
            }
            Call::Exit {
                kind,
                code,
                message: payload,
                compile_ticks: h.args[2],
                run_ticks: h.args[3],
            }
        }
        call::FLUSH => {
            no_payload(h.call)?;
            Call::Flush
        }
        call::READ_STDIN => {
            no_payload(h.call)?;
            let max = h.args[0];
            if max == 0 || max > DATA_CAPACITY as u64 {
                return Err(RequestError::BadReadLength(max));
            }
            Call::ReadStdin { max: max as usize }
        }
        call::NET => {
            if h.args[1] & !ironclaw_abi::net::WAIT_WRITABLE != 0 {
                return Err(RequestError::BadNetFlags(h.args[1]));
            }
            Call::Net {
                wait_ns: h.args[0],
                wake_on_ack: h.args[1] & ironclaw_abi::net::WAIT_WRITABLE != 0,
                ops: payload,
            }
        }
        n @ call::IRONCLAW_FIRST..=call::IRONCLAW_LAST => Call::IronClaw {
            number: n,
            args: h.args,
            payload,
        },
        n => Call::Unknown { number: n },
    };
    Ok(GuestRequest {
        output: output_area,
        call,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironclaw_abi::output::encode_header;

    fn header(call: u32, output_len: u32, payload_len: u32, args: [u64; 4]) -> [u8; HEADER_SIZE] {
        RequestHeader {
            magic: REQUEST_MAGIC,
            call,
            output_len,
            payload_len,
            args,
        }
        .encode()
    }

    #[test]
    fn exit_with_output_and_message() {
        let mut data = encode_header(output::STDOUT, 2).to_vec();
        data.extend_from_slice(b"hi");
        data.extend_from_slice(b"bye");
        let h = header(call::EXIT, 10, 3, [0, 7, 0, 0]);
        let req = parse_request(&h, &data).unwrap();
        assert_eq!(
            req.call,
            Call::Exit {
                kind: ExitKind::Exited,
                code: 7,
                message: b"bye",
                compile_ticks: 0,
                run_ticks: 0
            }
        );
        assert_eq!(req.output().next().unwrap().bytes, b"hi");
    }

    #[test]
    fn lengths_past_the_buffer_are_refused() {
        let h = header(call::FLUSH, u32::MAX, u32::MAX, [0; 4]);
        assert!(matches!(
            parse_request(&h, &[]),
            Err(RequestError::DataTooLong { .. })
        ));
        let h = header(call::FLUSH, DATA_CAPACITY as u32, 1, [0; 4]);
        assert!(matches!(
            parse_request(&h, &[]),
            Err(RequestError::DataTooLong { .. })
        ));
    }

    #[test]
    fn record_longer_than_output_area_is_refused() {
        let data = encode_header(output::STDERR, 100).to_vec();
        let h = header(call::FLUSH, 8, 0, [0; 4]);
        assert!(matches!(
            parse_request(&h, &data),
            Err(RequestError::Output(RecordError::TruncatedBody {
                offset: 0,
                len: 100,
                ..
            }))
        ));
    }

    #[test]
    fn bad_magic_bad_exit_kind_and_bad_read_are_refused() {
        let mut h = header(call::FLUSH, 0, 0, [0; 4]);
        h[0] ^= 1;
        assert!(matches!(
            parse_request(&h, &[]),
            Err(RequestError::BadMagic { .. })
        ));
        let h = header(call::EXIT, 0, 0, [99, 0, 0, 0]);
        assert_eq!(parse_request(&h, &[]), Err(RequestError::BadExitKind(99)));
        let h = header(call::READ_STDIN, 0, 0, [0, 0, 0, 0]);
        assert_eq!(parse_request(&h, &[]), Err(RequestError::BadReadLength(0)));
        let h = header(call::READ_STDIN, 0, 0, [u64::MAX, 0, 0, 0]);
        assert_eq!(
            parse_request(&h, &[]),
            Err(RequestError::BadReadLength(u64::MAX))
        );
    }

    #[test]
    fn net_requests_carry_only_known_wait_flags() {
        let h = header(call::NET, 0, 0, [5, 1, 0, 0]);
        assert_eq!(
            parse_request(&h, &[]).unwrap().call,
            Call::Net {
                wait_ns: 5,
                wake_on_ack: true,
                ops: &[]
            }
        );
        let h = header(call::NET, 0, 0, [5, 2, 0, 0]);
        assert_eq!(parse_request(&h, &[]), Err(RequestError::BadNetFlags(2)));
    }

    #[test]
    fn unknown_numbers_are_not_errors_but_unknown_calls() {
        let h = header(0xFFFF_FFFF, 0, 0, [0; 4]);
        assert_eq!(
            parse_request(&h, &[]).unwrap().call,
            Call::Unknown {
                number: 0xFFFF_FFFF
            }
        );
        let h = header(0, 0, 0, [0; 4]);
        assert_eq!(
            parse_request(&h, &[]).unwrap().call,
            Call::Unknown { number: 0 }
        );
    }
}
