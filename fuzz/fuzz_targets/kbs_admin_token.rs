//! The HTTP admin API's credential: an `Authorization: Bearer` admin token
//! (EdDSA JWT) and the `resource-policy` body, from anyone on the network:
//! never a panic; a token is accepted only when signed by the configured key.
#![no_main]
use ironclaw_broker::admin_http::{policy_from_body, AdminKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed public key whose private half the fuzzer does not have: nothing
    // it builds can verify (short of forging Ed25519).
    let key = ed25519_dalek::VerifyingKey::from_bytes(&[
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ])
    .expect("RFC 8032 test key");
    let keys = AdminKeys::new(vec![key]);
    let text = String::from_utf8_lossy(data);
    assert!(keys.verify(&text, 1_700_000_000).is_err());
    let _ = policy_from_body(data);
});
