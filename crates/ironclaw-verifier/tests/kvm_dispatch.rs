//! `verify(TeeKind::Kvm, ..)`: kvm evidence through the common entry point, with the
//! trusted platform keys given as JWK files (what `ironclaw verify --kind kvm --cert`
//! passes). The evidence format itself is tested with the kvm module.

use std::collections::BTreeMap;

use ironclaw_verifier::kvm::{self, KvmClaims};
use ironclaw_verifier::{verify, Measurements, TeeKind, VerifyError, VerifyOptions, VerifyTime};
use p384::ecdsa::SigningKey;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 48]).expect("valid scalar")
}

fn evidence(k: &SigningKey, debug: bool) -> Vec<u8> {
    let claims = KvmClaims {
        measurement: [0x5a; 48],
        report_data: [0x11; 64],
        debug,
        launch_config: BTreeMap::new(),
    };
    kvm::sign(&claims, k).expect("sign")
}

fn opts(files: &[serde_json::Value]) -> VerifyOptions {
    let mut o = VerifyOptions::at(VerifyTime::from_unix(1_764_000_000));
    for (i, f) in files.iter().enumerate() {
        o.certs
            .push((format!("key{i}.jwk"), serde_json::to_vec(f).expect("json")));
    }
    o
}

#[test]
fn kvm_evidence_verifies_under_a_trusted_jwk() {
    let k = key(7);
    let jwk = kvm::public_jwk(k.verifying_key());
    for debug in [false, true] {
        let r = verify(
            TeeKind::Kvm,
            &evidence(&k, debug),
            &opts(std::slice::from_ref(&jwk)),
        )
        .expect("verifies");
        assert_eq!(r.tee, TeeKind::Kvm);
        assert!(!r.tee.is_hardware());
        assert_eq!(r.debug, debug);
        let Measurements::Kvm {
            launch_measurement, ..
        } = &r.measurements
        else {
            panic!("kvm")
        };
        assert_eq!(launch_measurement.as_slice(), &[0x5a; 48]);
        assert_eq!(r.report_data.expect("rd").as_slice(), &[0x11; 64]);
    }
    // A JWK Set and an array work too.
    let set = serde_json::json!({ "keys": [kvm::public_jwk(key(9).verifying_key()), jwk.clone()] });
    verify(TeeKind::Kvm, &evidence(&k, false), &opts(&[set])).expect("JWK set");
    let arr = serde_json::json!([jwk]);
    verify(TeeKind::Kvm, &evidence(&k, false), &opts(&[arr])).expect("array");
}

#[test]
fn kvm_evidence_needs_a_trusted_key() {
    let ev = evidence(&key(7), false);
    assert!(matches!(
        verify(TeeKind::Kvm, &ev, &opts(&[])),
        Err(VerifyError::MissingCert { .. })
    ));
    let other = kvm::public_jwk(key(8).verifying_key());
    assert!(matches!(
        verify(TeeKind::Kvm, &ev, &opts(&[other])),
        Err(VerifyError::UntrustedRoot { .. })
    ));
    let mut o = VerifyOptions::at(VerifyTime::from_unix(0));
    o.certs
        .push(("not-json".into(), b"-----BEGIN CERTIFICATE-----".to_vec()));
    assert!(matches!(
        verify(TeeKind::Kvm, &ev, &o),
        Err(VerifyError::Input { .. })
    ));
}
