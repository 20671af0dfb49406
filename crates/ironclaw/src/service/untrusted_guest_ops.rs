//! SECURITY BOUNDARY: the guest's NET operation records (request payload of
//! `ironclaw_abi::call::NET`), parsed before the relay acts on any of them.
//!
//! The bytes were already copied out of guest memory by the dispatcher and are bounded by
//! the data area. Every record is checked here (kind, the fields each kind allows, data
//! length, UTF-8 destination names); the relay then checks each against its state
//! (handle known, credit). Never panics; every error names the record's offset and field.
//! Fuzzed: `fuzz/fuzz_targets/ironclaw_net_ops.rs`.

use ironclaw_abi::net::{self, RecordError};
use ironclaw_abi::net_table::MAX_DEST_LEN;

/// One validated operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Send { handle: u32, data: &'a [u8] },
    Window { handle: u32, bytes: u32 },
    Shutdown { handle: u32, how: u32 },
    Close { handle: u32 },
    Connect { token: u32, dest: &'a str },
}

/// Why the guest's operations were refused (offsets from the start of the payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("NET operations: {0:?}")]
    Record(RecordError),
    #[error("NET operation at offset {offset}: unknown kind {kind}")]
    UnknownKind { offset: usize, kind: u32 },
    #[error(
        "NET operation at offset {offset}: field `{field}` = {value} is invalid for this kind"
    )]
    Field {
        offset: usize,
        field: &'static str,
        value: u64,
    },
    #[error("NET operation at offset {offset}: connect destination is not UTF-8")]
    Destination { offset: usize },
}

/// Parses every record of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Vec<Op<'_>>, OpError> {
    let mut ops = Vec::new();
    for rec in net::records(bytes) {
        let (offset, r) = rec.map_err(OpError::Record)?;
        let field = |field: &'static str, value: u64| OpError::Field {
            offset,
            field,
            value,
        };
        let no_data = || {
            if r.data.is_empty() {
                Ok(())
            } else {
                Err(field("len", r.data.len() as u64))
            }
        };
        let op = match r.kind {
            net::OP_SEND => {
                if r.data.is_empty() {
                    return Err(field("len", 0));
                }
                if r.value != 0 {
                    return Err(field("value", r.value.into()));
                }
                Op::Send {
                    handle: r.handle,
                    data: r.data,
                }
            }
            net::OP_WINDOW => {
                no_data()?;
                if r.value == 0 {
                    return Err(field("value", 0));
                }
                Op::Window {
                    handle: r.handle,
                    bytes: r.value,
                }
            }
            net::OP_SHUTDOWN => {
                no_data()?;
                if !(1..=3).contains(&r.value) {
                    return Err(field("value", r.value.into()));
                }
                Op::Shutdown {
                    handle: r.handle,
                    how: r.value,
                }
            }
            net::OP_CLOSE => {
                no_data()?;
                if r.value != 0 {
                    return Err(field("value", r.value.into()));
                }
                Op::Close { handle: r.handle }
            }
            net::OP_CONNECT => {
                if r.data.is_empty() || r.data.len() > MAX_DEST_LEN {
                    return Err(field("len", r.data.len() as u64));
                }
                if r.value != 0 {
                    return Err(field("value", r.value.into()));
                }
                let dest =
                    std::str::from_utf8(r.data).map_err(|_| OpError::Destination { offset })?;
                Op::Connect {
                    token: r.handle,
                    dest,
                }
            }
            kind => return Err(OpError::UnknownKind { offset, kind }),
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironclaw_abi::net::encode_header;

    fn rec(kind: u32, handle: u32, value: u32, data: &[u8]) -> Vec<u8> {
        let mut v = encode_header(kind, handle, value, data.len() as u32).to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn well_formed_operations_parse_in_order() {
        let mut b = rec(net::OP_SEND, 5, 0, b"hi");
        b.extend(rec(net::OP_WINDOW, 5, 100, &[]));
        b.extend(rec(net::OP_CONNECT, 1, 0, b"a.example:443"));
        b.extend(rec(net::OP_CLOSE, 5, 0, &[]));
        assert_eq!(
            parse(&b).unwrap(),
            vec![
                Op::Send {
                    handle: 5,
                    data: b"hi"
                },
                Op::Window {
                    handle: 5,
                    bytes: 100
                },
                Op::Connect {
                    token: 1,
                    dest: "a.example:443"
                },
                Op::Close { handle: 5 },
            ]
        );
    }

    #[test]
    fn malformed_operations_name_offset_and_field() {
        let mut b = rec(net::OP_CLOSE, 5, 0, &[]);
        b.extend(rec(net::OP_SHUTDOWN, 5, 9, &[]));
        assert_eq!(
            parse(&b),
            Err(OpError::Field {
                offset: 16,
                field: "value",
                value: 9
            })
        );
        assert_eq!(
            parse(&rec(42, 0, 0, &[])),
            Err(OpError::UnknownKind {
                offset: 0,
                kind: 42
            })
        );
        assert!(matches!(
            parse(&encode_header(net::OP_SEND, 1, 0, u32::MAX)),
            Err(OpError::Record(RecordError::TruncatedData { .. }))
        ));
        assert_eq!(
            parse(&rec(net::OP_CONNECT, 1, 0, &[0xff, 0xfe])),
            Err(OpError::Destination { offset: 0 })
        );
        assert!(matches!(
            parse(&rec(net::OP_SEND, 1, 0, &[])),
            Err(OpError::Field { field: "len", .. })
        ));
    }
}
