//! IronClaw kvm evidence (COSE_Sign1) as a broker receives it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ironclaw_verifier::kvm::decode_unverified(data);
    let key = p384::ecdsa::SigningKey::from_slice(&[1u8; 48]).expect("valid scalar");
    let _ = ironclaw_verifier::kvm::verify(
        data,
        &[*key.verifying_key()],
        ironclaw_verifier::VerifyTime::from_unix(0),
    );
});
