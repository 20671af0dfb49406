//! `--cert` input: PEM (any number of blocks) or DER (one or several concatenated).
#![no_main]
use ironclaw_verifier::x509::parse_bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certs) = parse_bundle(data, "fuzz") {
        for c in &certs {
            let _ = c.info();
            let _ = c.check_validity(ironclaw_verifier::VerifyTime::from_unix(0));
        }
    }
});
