//! SEV-SNP report parser and the full SNP verification path on arbitrary bytes
//! (with no certificate and with a built-in one as a bogus leaf).
#![no_main]
use ironclaw_verifier::{snp, TeeKind, VerifyOptions, VerifyTime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = snp::report::Report::parse(data);
    let opts = VerifyOptions::at(VerifyTime::from_unix(1_748_736_000));
    let _ = ironclaw_verifier::verify(TeeKind::Snp, data, &opts);
});
