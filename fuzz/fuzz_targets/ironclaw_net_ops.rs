//! Fuzzes the host's parser of a service guest's NET operation records
//! (`ironclaw::service::untrusted_guest_ops`, the VM boundary of `ironclaw serve`).
//! Must never panic; every accepted record must re-encode to the bytes it came from.
#![no_main]

use ironclaw::service::untrusted_guest_ops::{parse, Op};
use ironclaw_abi::net::{encode_header, OP_CLOSE, OP_CONNECT, OP_SEND, OP_SHUTDOWN, OP_WINDOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = parse(data) {
        let mut again = Vec::new();
        for op in ops {
            let (kind, handle, value, bytes): (u32, u32, u32, &[u8]) = match op {
                Op::Send { handle, data } => (OP_SEND, handle, 0, data),
                Op::Window { handle, bytes } => (OP_WINDOW, handle, bytes, &[]),
                Op::Shutdown { handle, how } => (OP_SHUTDOWN, handle, how, &[]),
                Op::Close { handle } => (OP_CLOSE, handle, 0, &[]),
                Op::Connect { token, dest } => (OP_CONNECT, token, 0, dest.as_bytes()),
            };
            again.extend_from_slice(&encode_header(kind, handle, value, bytes.len() as u32));
            again.extend_from_slice(bytes);
        }
        assert_eq!(again, data);
    }
});
