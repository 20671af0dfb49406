//! What the host signs is the documented envelope: a tagged COSE_Sign1, ES384, `kid` = the
//! RFC 7638 thumbprint, the documented content type, the claims under their documented keys,
//! and a signature only the platform key verifies. (The verifier's own tests check that
//! `ironclaw_verifier::kvm::verify` accepts it.)

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ciborium::Value as Cbor;
use coset::{iana, CoseSign1, TaggedCborSerializable};
use ironclaw_kvm_evidence::{
    key_id, public_jwk, sign, thumbprint, KvmClaims, LaunchValue, CONTENT_TYPE, FORMAT,
    ROOT_OF_TRUST, VERSION,
};
use p384::ecdsa::{signature::Verifier, Signature, SigningKey};
use sha2::{Digest, Sha256};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 48]).expect("valid scalar")
}

fn claims() -> KvmClaims {
    let mut launch_config = BTreeMap::new();
    launch_config.insert("memory_mib".into(), LaunchValue::Uint(64));
    launch_config.insert("debug".into(), LaunchValue::Bool(true));
    launch_config.insert("shim".into(), LaunchValue::Text("v1".into()));
    KvmClaims {
        measurement: [0xab; 48],
        report_data: [0x11; 64],
        debug: true,
        launch_config,
    }
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

#[test]
fn signed_evidence_is_the_documented_cose_sign1() {
    let k = key(1);
    let evidence = sign(&claims(), &k).expect("sign");
    let sign1 = CoseSign1::from_tagged_slice(&evidence).expect("a tagged COSE_Sign1");

    let header = &sign1.protected.header;
    assert_eq!(
        header.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::ES384
        ))
    );
    assert_eq!(header.key_id, thumbprint(k.verifying_key()).to_vec());
    assert_eq!(
        header.content_type,
        Some(coset::ContentType::Text(CONTENT_TYPE.into()))
    );

    let payload: Cbor =
        ciborium::from_reader(sign1.payload.as_deref().expect("attached payload")).expect("CBOR");
    let expected = Cbor::Map(vec![
        (text("format"), text(FORMAT)),
        (text("version"), Cbor::Integer(VERSION.into())),
        (text("tee"), text("kvm")),
        (text("root-of-trust"), text(ROOT_OF_TRUST)),
        (text("measurement"), Cbor::Bytes(vec![0xab; 48])),
        (text("report-data"), Cbor::Bytes(vec![0x11; 64])),
        (text("debug"), Cbor::Bool(true)),
        (
            text("launch-config"),
            Cbor::Map(vec![
                (text("debug"), Cbor::Bool(true)),
                (text("memory_mib"), Cbor::Integer(64.into())),
                (text("shim"), text("v1")),
            ]),
        ),
    ]);
    assert_eq!(payload, expected);

    // The signature is the platform key's, over the COSE Sig_structure, and no other key's.
    let verify_with = |key: &SigningKey| {
        sign1.verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            key.verifying_key().verify(data, &sig).map_err(|_| ())
        })
    };
    assert_eq!(verify_with(&k), Ok(()));
    assert_eq!(verify_with(&key(2)), Err(()));
}

#[test]
fn the_public_jwk_and_kid_follow_rfc_7638() {
    let k = key(5);
    let jwk = public_jwk(k.verifying_key());
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-384");
    assert_eq!(jwk["alg"], "ES384");
    let x = jwk["x"].as_str().expect("x");
    let y = jwk["y"].as_str().expect("y");
    assert_eq!(B64.decode(x).expect("base64url x").len(), 48);
    assert_eq!(B64.decode(y).expect("base64url y").len(), 48);

    // RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let expected: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    assert_eq!(thumbprint(k.verifying_key()), expected);
    assert_eq!(key_id(k.verifying_key()), B64.encode(expected));
    assert_eq!(jwk["kid"], B64.encode(expected));
    assert_ne!(key_id(key(6).verifying_key()), key_id(k.verifying_key()));
}

#[test]
fn launch_values_as_json() {
    assert_eq!(LaunchValue::Uint(7).to_json(), serde_json::json!(7));
    assert_eq!(LaunchValue::Bool(false).to_json(), serde_json::json!(false));
    assert_eq!(
        LaunchValue::Text("x".into()).to_json(),
        serde_json::json!("x")
    );
}
