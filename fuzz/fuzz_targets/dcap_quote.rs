//! DCAP quote parser (header checks + dcap-qvl decoding) and the DCAP verification
//! path on arbitrary bytes, without and with a (junk) collateral document.
#![no_main]
use ironclaw_verifier::{dcap, TeeKind, VerifyOptions, VerifyTime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dcap::quote::parse(data);
    let opts = VerifyOptions::at(VerifyTime::from_unix(1_751_624_191));
    let _ = ironclaw_verifier::verify(TeeKind::Tdx, data, &opts);
    let _ = ironclaw_verifier::verify(TeeKind::Sgx, data, &opts);
    let _ = dcap::collateral::parse(data);
});
