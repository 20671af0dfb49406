//! Sealed blobs handed back by the host to `unseal`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ironclaw_enclave::seal::key_request(data);
    let _ = ironclaw_enclave::seal::unseal(&[7u8; 32], data);
});
