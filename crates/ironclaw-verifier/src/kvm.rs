//! IronClaw's own `kvm` evidence, verifier side: decode, check the signature under a trusted
//! platform key, normalize into an [`AttestationResult`]. The format (envelope, claims) and the
//! producer side live in `ironclaw-kvm-evidence` (re-exported here), so the host's VMM signs
//! evidence without linking this crate.
//!
//! On plain KVM nothing in the CPU attests the guest: the host's VMM computed the
//! launch measurement and the host signs it. The evidence says so in so many
//! words (`"root-of-trust": "host"`), its result has no hardware TCB, and a
//! verifier accepts it only under a platform key it was explicitly told to trust.
//!
//! The envelope and the claims are documented in `ironclaw_kvm_evidence`.
//! Unknown payload keys are refused (a verifier must not accept claims it does
//! not understand), as are duplicate keys.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ciborium::Value as Cbor;
use coset::{iana, CborSerializable, CoseSign1, TaggedCborSerializable};
use p384::ecdsa::{signature::Verifier, Signature, VerifyingKey};

pub use ironclaw_kvm_evidence::{
    key_id, public_jwk, sign, thumbprint, EncodeError, KvmClaims, LaunchValue, CONTENT_TYPE,
    FORMAT, MEASUREMENT_LEN, REPORT_DATA_LEN, ROOT_OF_TRUST, VERSION,
};

use crate::result::{
    AttestationResult, Bytes, CertInfo, Measurements, PolicyBits, TcbInfo, TcbStatus, TeeKind,
};
use crate::time::VerifyTime;
use crate::VerifyError;

/// Largest evidence accepted (the real thing is well under 1 KiB).
pub const MAX_EVIDENCE_LEN: usize = 16 * 1024;

const FMT: &str = "kvm evidence";

/// Parses a public P-384 JWK (as [`public_jwk`] writes it). A `kid`, if present,
/// must be the key's thumbprint.
pub fn parse_public_jwk(jwk: &serde_json::Value) -> Result<VerifyingKey, VerifyError> {
    let bad = |field: &'static str, reason: &str| VerifyError::Malformed {
        format: "platform key JWK",
        field,
        offset: 0,
        reason: reason.to_string(),
    };
    let member = |field: &'static str| {
        jwk.get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(field, "missing or not a string"))
    };
    if member("kty")? != "EC" {
        return Err(bad("kty", "must be \"EC\""));
    }
    if member("crv")? != "P-384" {
        return Err(bad("crv", "must be \"P-384\""));
    }
    let x = B64
        .decode(member("x")?)
        .map_err(|e| bad("x", &format!("not base64url: {e}")))?;
    let y = B64
        .decode(member("y")?)
        .map_err(|e| bad("y", &format!("not base64url: {e}")))?;
    if x.len() != MEASUREMENT_LEN || y.len() != MEASUREMENT_LEN {
        return Err(bad("x", "coordinates must be 48 bytes each"));
    }
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad("x", "not a point on P-384"))?;
    if let Some(kid) = jwk.get("kid").and_then(|v| v.as_str()) {
        if kid != key_id(&key) {
            return Err(bad("kid", "is not the RFC 7638 thumbprint of the key"));
        }
    }
    Ok(key)
}

fn malformed(field: &'static str, reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        format: FMT,
        field,
        offset: 0,
        reason: reason.into(),
    }
}

/// Decodes the claims without checking the signature (for display and fuzzing).
pub fn decode_unverified(evidence: &[u8]) -> Result<(CoseSign1, KvmClaims), VerifyError> {
    if evidence.len() > MAX_EVIDENCE_LEN {
        return Err(malformed(
            "COSE_Sign1",
            format!("{} bytes (at most {MAX_EVIDENCE_LEN})", evidence.len()),
        ));
    }
    let sign1 = CoseSign1::from_tagged_slice(evidence)
        .or_else(|_| CoseSign1::from_slice(evidence))
        .map_err(|e| malformed("COSE_Sign1", e.to_string()))?;
    if sign1.protected.header.alg
        != Some(coset::RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::ES384,
        ))
    {
        return Err(malformed("alg", "protected header algorithm must be ES384"));
    }
    match &sign1.protected.header.content_type {
        Some(coset::ContentType::Text(t)) if t == CONTENT_TYPE => {}
        _ => return Err(malformed("content type", format!("must be {CONTENT_TYPE}"))),
    }
    let body = sign1
        .payload
        .as_deref()
        .ok_or_else(|| malformed("payload", "detached payload is not allowed"))?;
    let value: Cbor =
        ciborium::from_reader(body).map_err(|e| malformed("payload", format!("not CBOR: {e}")))?;
    let claims = parse_claims(&value)?;
    Ok((sign1, claims))
}

fn parse_claims(value: &Cbor) -> Result<KvmClaims, VerifyError> {
    let Cbor::Map(entries) = value else {
        return Err(malformed("payload", "not a CBOR map"));
    };
    let mut seen: BTreeMap<&str, &Cbor> = BTreeMap::new();
    for (k, v) in entries {
        let Cbor::Text(k) = k else {
            return Err(malformed("payload", "map key is not text"));
        };
        if seen.insert(k.as_str(), v).is_some() {
            return Err(malformed("payload", format!("duplicate key {k:?}")));
        }
    }
    const KNOWN: [&str; 8] = [
        "format",
        "version",
        "tee",
        "root-of-trust",
        "measurement",
        "report-data",
        "debug",
        "launch-config",
    ];
    if let Some(k) = seen.keys().find(|k| !KNOWN.contains(k)) {
        return Err(malformed("payload", format!("unknown claim {k:?}")));
    }
    let get = |k: &'static str| seen.get(k).copied().ok_or_else(|| malformed(k, "missing"));
    let text = |k: &'static str| match get(k)? {
        Cbor::Text(s) => Ok(s.as_str()),
        _ => Err(malformed(k, "not text")),
    };
    if text("format")? != FORMAT {
        return Err(malformed("format", format!("must be {FORMAT:?}")));
    }
    match get("version")? {
        Cbor::Integer(i) if u64::try_from(*i).ok() == Some(VERSION) => {}
        Cbor::Integer(i) => {
            return Err(VerifyError::Unsupported {
                format: FMT,
                field: "version",
                found: u64::try_from(*i).unwrap_or(u64::MAX),
                supported: "1",
            })
        }
        _ => return Err(malformed("version", "not an integer")),
    }
    if text("tee")? != "kvm" {
        return Err(malformed("tee", "must be \"kvm\""));
    }
    if text("root-of-trust")? != ROOT_OF_TRUST {
        return Err(malformed("root-of-trust", "must be \"host\""));
    }
    let bytes = |k: &'static str, len: usize| match get(k)? {
        Cbor::Bytes(b) if b.len() == len => Ok(b.clone()),
        Cbor::Bytes(b) => Err(malformed(k, format!("{} bytes, expected {len}", b.len()))),
        _ => Err(malformed(k, "not a byte string")),
    };
    let mut measurement = [0u8; MEASUREMENT_LEN];
    measurement.copy_from_slice(&bytes("measurement", MEASUREMENT_LEN)?);
    let mut report_data = [0u8; REPORT_DATA_LEN];
    report_data.copy_from_slice(&bytes("report-data", REPORT_DATA_LEN)?);
    let debug = match get("debug")? {
        Cbor::Bool(b) => *b,
        _ => return Err(malformed("debug", "not a bool")),
    };
    let Cbor::Map(cfg) = get("launch-config")? else {
        return Err(malformed("launch-config", "not a map"));
    };
    let mut launch_config = BTreeMap::new();
    for (k, v) in cfg {
        let Cbor::Text(k) = k else {
            return Err(malformed("launch-config", "key is not text"));
        };
        let v =
            match v {
                Cbor::Integer(i) => LaunchValue::Uint(u64::try_from(*i).map_err(|_| {
                    malformed("launch-config", format!("{k}: negative or too large"))
                })?),
                Cbor::Bool(b) => LaunchValue::Bool(*b),
                Cbor::Text(s) => LaunchValue::Text(s.clone()),
                _ => {
                    return Err(malformed(
                        "launch-config",
                        format!("{k}: unsupported value type"),
                    ))
                }
            };
        if launch_config.insert(k.clone(), v).is_some() {
            return Err(malformed("launch-config", format!("duplicate key {k:?}")));
        }
    }
    Ok(KvmClaims {
        measurement,
        report_data,
        debug,
        launch_config,
    })
}

/// Verifies `evidence` against the platform keys the caller trusts.
///
/// Refusals: `Malformed`/`Unsupported` (encoding), `UntrustedRoot` (the `kid`
/// names no trusted key: e.g. evidence re-signed by another host),
/// `BadSignature` (the trusted key did not sign these bytes: forged or altered).
pub fn verify(
    evidence: &[u8],
    trusted: &[VerifyingKey],
    at: VerifyTime,
) -> Result<AttestationResult, VerifyError> {
    let (sign1, claims) = decode_unverified(evidence)?;
    let kid = sign1.protected.header.key_id.clone();
    let key = trusted
        .iter()
        .find(|k| thumbprint(k).as_slice() == kid.as_slice())
        .ok_or_else(|| VerifyError::UntrustedRoot {
            reason: format!(
                "kvm evidence is signed by platform key {} which is not trusted",
                B64.encode(&kid)
            ),
        })?;
    let kid_text = key_id(key);
    sign1
        .verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            key.verify(data, &sig).map_err(|_| ())
        })
        .map_err(|()| VerifyError::BadSignature {
            what: FMT,
            cert: format!("platform key {kid_text}"),
        })?;

    let config_json: BTreeMap<String, serde_json::Value> = claims
        .launch_config
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let mut extra = BTreeMap::new();
    extra.insert(
        "root_of_trust".to_string(),
        serde_json::Value::String(ROOT_OF_TRUST.into()),
    );
    extra.insert(
        "platform_key".to_string(),
        serde_json::Value::String(kid_text.clone()),
    );
    extra.insert(
        "launch_config".to_string(),
        serde_json::to_value(&config_json).unwrap_or_default(),
    );
    let tp = hex::encode(thumbprint(key));
    Ok(AttestationResult {
        tee: TeeKind::Kvm,
        measurements: Measurements::Kvm {
            launch_measurement: Bytes(claims.measurement.to_vec()),
            extra,
        },
        report_data: Some(Bytes(claims.report_data.to_vec())),
        user_data: None,
        nonce: None,
        public_key: None,
        debug: claims.debug,
        policy: PolicyBits::Kvm { raw: config_json },
        tcb: TcbInfo {
            status: TcbStatus::NotEvaluated,
            advisory_ids: Vec::new(),
            note: "root of trust is the host (plain KVM): no hardware TCB to evaluate".into(),
        },
        signer_chain: vec![CertInfo {
            subject: format!("IronClaw platform key {kid_text}"),
            issuer: format!("IronClaw platform key {kid_text}"),
            serial: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            sha256: tp,
        }],
        verified_at: at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::{signature::Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 48]).expect("valid scalar")
    }

    fn claims() -> KvmClaims {
        let mut launch_config = BTreeMap::new();
        launch_config.insert("memory_mib".into(), LaunchValue::Uint(64));
        KvmClaims {
            measurement: [0xab; 48],
            report_data: [0x11; 64],
            debug: false,
            launch_config,
        }
    }

    #[test]
    fn signs_and_verifies_into_the_normalized_result() {
        let k = key(1);
        let ev = sign(&claims(), &k).unwrap();
        let r = verify(
            &ev,
            &[*key(2).verifying_key(), *k.verifying_key()],
            VerifyTime::from_unix(0),
        )
        .unwrap();
        assert_eq!(r.tee, TeeKind::Kvm);
        assert_eq!(r.measurements.primary().unwrap().0, vec![0xab; 48]);
        assert_eq!(r.report_data.unwrap().0, vec![0x11; 64]);
        assert!(!r.debug);
        assert_eq!(r.tcb.status, TcbStatus::NotEvaluated);
    }

    #[test]
    fn untrusted_key_and_altered_bytes_are_refused() {
        let ev = sign(&claims(), &key(1)).unwrap();
        let err = verify(&ev, &[*key(2).verifying_key()], VerifyTime::from_unix(0)).unwrap_err();
        assert_eq!(err.kind(), "untrusted_root");

        // Flip one bit of the measurement inside the payload: the signature no longer verifies.
        let pos = ev.windows(4).position(|w| w == [0xab; 4]).unwrap();
        let mut bad = ev.clone();
        bad[pos] ^= 1;
        let err = verify(&bad, &[*key(1).verifying_key()], VerifyTime::from_unix(0)).unwrap_err();
        assert_eq!(err.kind(), "bad_signature");

        // Re-signed by another key claiming the trusted key's kid.
        let mut s = CoseSign1::from_tagged_slice(&ev).unwrap();
        let other = key(3);
        let tbs = coset::sig_structure_data(
            coset::SignatureContext::CoseSign1,
            s.protected.clone(),
            None,
            b"",
            s.payload.as_deref().unwrap(),
        );
        let sig: Signature = other.sign(&tbs);
        s.signature = sig.to_bytes().to_vec();
        let forged = s.to_tagged_vec().unwrap();
        let err = verify(
            &forged,
            &[*key(1).verifying_key()],
            VerifyTime::from_unix(0),
        )
        .unwrap_err();
        assert_eq!(err.kind(), "bad_signature");
    }

    #[test]
    fn jwk_round_trips_and_kid_is_checked() {
        let k = key(5);
        let jwk = public_jwk(k.verifying_key());
        assert_eq!(parse_public_jwk(&jwk).unwrap(), *k.verifying_key());
        let mut wrong = jwk.clone();
        wrong["kid"] = serde_json::Value::String(key_id(key(6).verifying_key()));
        assert!(parse_public_jwk(&wrong).is_err());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [&b""[..], b"\xd2\x84", b"\xff\xff\xff", &[0xd2; 64]] {
            assert!(verify(input, &[], VerifyTime::from_unix(0)).is_err());
        }
    }
}
