//! VCEK/VLEK TCB extension decoding: raw extension values and whole certificates.
#![no_main]
use ironclaw_verifier::snp::vcek_ext;
use ironclaw_verifier::x509::Cert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vcek_ext::decode_spl(data, "fuzz");
    let _ = vcek_ext::decode_hwid(data);
    if let Ok(cert) = Cert::from_der(data, "fuzz") {
        let _ = vcek_ext::parse(|oid| cert.extension(oid), "fuzz");
        let _ = cert.p384_key();
        let _ = cert.info();
        let _ = cert.verify_signed_by(&cert);
    }
});
