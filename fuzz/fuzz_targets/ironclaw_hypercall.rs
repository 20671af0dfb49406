//! Fuzzes the host's parser of guest hypercall requests (the IronClaw VM boundary):
//! `ironclaw::hypercall::untrusted_guest_request`. Input: 64 header bytes, then the data
//! area. Must never panic, whatever the guest wrote.
#![no_main]

use ironclaw::hypercall::untrusted_guest_request::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; 64];
    let n = data.len().min(64);
    header[..n].copy_from_slice(&data[..n]);
    let rest = &data[n..];
    if let Ok(request) = parse_request(&header, rest) {
        // Walk every validated record and the call, as the dispatcher would.
        let total: u64 = request.output().map(|r| r.bytes.len() as u64).sum();
        assert_eq!(total, request.output_bytes());
        let _ = format!("{:?}", request.call);
    }
});
