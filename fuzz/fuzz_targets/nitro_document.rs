//! Nitro attestation document (COSE_Sign1 + CBOR payload) parser and verification path.
#![no_main]
use ironclaw_verifier::{nitro, TeeKind, VerifyOptions, VerifyTime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nitro::document::Document::parse(data);
    let opts = VerifyOptions::at(VerifyTime::from_unix(1_766_668_537));
    let _ = ironclaw_verifier::verify(TeeKind::Nitro, data, &opts);
});
