//! IronClaw's own `kvm` evidence: what an enclave on plain KVM can prove. This crate is the
//! format and its producer side (the host's platform key signs); `ironclaw_verifier::kvm`
//! decodes and verifies it.
//!
//! On plain KVM nothing in the CPU attests the guest: the host's VMM computed the
//! launch measurement and the host signs it. The evidence says so in so many
//! words (`"root-of-trust": "host"`), its result has no hardware TCB, and a
//! verifier accepts it only under a platform key it was explicitly told to trust.
//!
//! Envelope: a tagged COSE_Sign1 (RFC 9052), algorithm ES384 (P-384, SHA-384),
//! protected header `alg`, `kid` = the platform key's RFC 7638 JWK thumbprint
//! (SHA-256, raw bytes), `content type` = [`CONTENT_TYPE`]. The payload is a CBOR
//! map with text keys:
//!
//! | key | CBOR type | meaning |
//! |---|---|---|
//! | `format` | text | [`FORMAT`] |
//! | `version` | uint | [`VERSION`] |
//! | `tee` | text | `"kvm"` |
//! | `root-of-trust` | text | `"host"` |
//! | `measurement` | bstr (48) | the launch measurement (SHA-384) the host computed |
//! | `report-data` | bstr (64) | caller data, e.g. the KBS runtime-data digest, zero-padded |
//! | `debug` | bool | the enclave was launched debuggable |
//! | `launch-config` | map text → uint / bool / text | the launch parameters the measurement covers |
//!
//! The verifier refuses unknown payload keys (it must not accept claims it does not
//! understand) and duplicate keys.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ciborium::Value as Cbor;
use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use p384::ecdsa::{signature::Signer, Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// COSE content type of the payload.
pub const CONTENT_TYPE: &str = "application/vnd.ironclaw.kvm-evidence+cbor";
/// `format` claim.
pub const FORMAT: &str = "ironclaw-kvm-evidence";
/// `version` claim.
pub const VERSION: u64 = 1;
/// `root-of-trust` claim: always the host on plain KVM.
pub const ROOT_OF_TRUST: &str = "host";
/// Launch measurement length.
pub const MEASUREMENT_LEN: usize = 48;
/// report_data length.
pub const REPORT_DATA_LEN: usize = 64;
/// One launch-config value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchValue {
    /// An unsigned integer (sizes, limits).
    Uint(u64),
    /// A flag.
    Bool(bool),
    /// A name.
    Text(String),
}

impl LaunchValue {
    /// The value as JSON (what a verifier reports).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            LaunchValue::Uint(n) => serde_json::Value::from(*n),
            LaunchValue::Bool(b) => serde_json::Value::Bool(*b),
            LaunchValue::Text(s) => serde_json::Value::String(s.clone()),
        }
    }
    fn to_cbor(&self) -> Cbor {
        match self {
            LaunchValue::Uint(n) => Cbor::Integer((*n).into()),
            LaunchValue::Bool(b) => Cbor::Bool(*b),
            LaunchValue::Text(s) => Cbor::Text(s.clone()),
        }
    }
}

/// What the host asserts about one enclave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvmClaims {
    /// Launch measurement (SHA-384) computed by the host over what it loaded.
    pub measurement: [u8; MEASUREMENT_LEN],
    /// Caller data bound into the evidence.
    pub report_data: [u8; REPORT_DATA_LEN],
    /// Whether the enclave was launched debuggable.
    pub debug: bool,
    /// Launch parameters covered by the measurement.
    pub launch_config: BTreeMap<String, LaunchValue>,
}

/// RFC 7638 JWK thumbprint (SHA-256) of a P-384 public key.
pub fn thumbprint(key: &VerifyingKey) -> [u8; 32] {
    let (x, y) = xy(key);
    // Members in lexicographic order, no whitespace (RFC 7638 section 3).
    let canonical = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
    Sha256::digest(canonical.as_bytes()).into()
}

/// The thumbprint as base64url text (the `kid` shown to operators).
pub fn key_id(key: &VerifyingKey) -> String {
    B64.encode(thumbprint(key))
}

fn xy(key: &VerifyingKey) -> (String, String) {
    let point = p384::PublicKey::from(key).to_sec1_bytes();
    let x = point.get(1..1 + MEASUREMENT_LEN).unwrap_or_default();
    let y = point.get(1 + MEASUREMENT_LEN..).unwrap_or_default();
    (B64.encode(x), B64.encode(y))
}

/// The public JWK a broker is told to trust (`ironclaw platform-key` prints it).
pub fn public_jwk(key: &VerifyingKey) -> serde_json::Value {
    let (x, y) = xy(key);
    serde_json::json!({
        "kty": "EC", "crv": "P-384", "x": x, "y": y,
        "alg": "ES384", "use": "sig", "kid": key_id(key),
    })
}

fn payload(claims: &KvmClaims) -> Cbor {
    let text = |s: &str| Cbor::Text(s.to_string());
    let config = claims
        .launch_config
        .iter()
        .map(|(k, v)| (text(k), v.to_cbor()))
        .collect();
    Cbor::Map(vec![
        (text("format"), text(FORMAT)),
        (text("version"), Cbor::Integer(VERSION.into())),
        (text("tee"), text("kvm")),
        (text("root-of-trust"), text(ROOT_OF_TRUST)),
        (
            text("measurement"),
            Cbor::Bytes(claims.measurement.to_vec()),
        ),
        (
            text("report-data"),
            Cbor::Bytes(claims.report_data.to_vec()),
        ),
        (text("debug"), Cbor::Bool(claims.debug)),
        (text("launch-config"), Cbor::Map(config)),
    ])
}

/// Encoding errors of [`sign`].
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// CBOR or COSE serialization failed.
    #[error("kvm evidence encoding: {0}")]
    Encoding(String),
}

/// Signs `claims` with the platform key: tagged COSE_Sign1 bytes.
pub fn sign(claims: &KvmClaims, key: &SigningKey) -> Result<Vec<u8>, EncodeError> {
    let enc_err = |e: String| EncodeError::Encoding(e);
    let mut body = Vec::new();
    ciborium::into_writer(&payload(claims), &mut body).map_err(|e| enc_err(e.to_string()))?;
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES384)
        .key_id(thumbprint(key.verifying_key()).to_vec())
        .content_type(CONTENT_TYPE.to_string())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(body)
        .create_signature(b"", |data| {
            let sig: Signature = key.sign(data);
            sig.to_bytes().to_vec()
        })
        .build();
    sign1.to_tagged_vec().map_err(|e| enc_err(e.to_string()))
}
