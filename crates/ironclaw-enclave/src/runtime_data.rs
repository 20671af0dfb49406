//! The binding between KBS `runtime-data` and the evidence's `report_data`.
//!
//! trustee's KBS rebuilds the object
//! `{"tee-pubkey": <JWK>, "nonce": <challenge nonce>, "additional-evidence": <string>}`
//! from the `Attestation` it receives, serializes it as canonical JSON
//! (RFC 8785: no whitespace, object keys sorted) and hashes it with SHA-384 (the
//! `kbs_types::HashAlgorithm` default). The evidence's report_data must carry that
//! digest; 64-byte report_data fields (SEV-SNP, TDX, IronClaw kvm) carry it
//! followed by 16 zero bytes. Both the enclave (to ask for evidence) and the
//! broker (to check it) compute it with [`report_data`].

use alloc::string::String;

use kbs_types::TeePubKey;
use serde_json::{Map, Value};
use sha2::{Digest, Sha384};

/// Length of the digest (SHA-384).
pub const DIGEST_LEN: usize = 48;
/// Length of the report_data field of SNP/TDX/kvm evidence.
pub const REPORT_DATA_LEN: usize = 64;

/// The runtime-data object the KBS hashes, as a JSON value.
pub fn runtime_data_value(nonce: &str, tee_pubkey: &TeePubKey, additional_evidence: &str) -> Value {
    let mut map = Map::new();
    // `TeePubKey` serializes to a JSON object of strings; serde_json cannot fail on it.
    let key = serde_json::to_value(tee_pubkey).unwrap_or(Value::Null);
    map.insert("tee-pubkey".into(), key);
    map.insert("nonce".into(), Value::String(nonce.into()));
    map.insert(
        "additional-evidence".into(),
        Value::String(additional_evidence.into()),
    );
    Value::Object(map)
}

/// RFC 8785 canonical JSON of `value`: compact, object members sorted by key.
///
/// Keys are sorted by their UTF-8 bytes, which equals RFC 8785's UTF-16 order for
/// the ASCII keys the protocol uses; strings are escaped the way serde_json and
/// RFC 8785 agree on (short escapes, `\u00xx` lowercase for other controls).
/// Integers print identically; the protocol carries no floating-point numbers.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: alloc::vec::Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if let Some(v) = map.get(k.as_str()) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => {
            // null, bool and numbers: serde_json's compact text is canonical for them.
            if let Ok(s) = serde_json::to_string(other) {
                out.push_str(&s);
            }
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // A JSON string serializes infallibly.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// SHA-384 of the canonical runtime-data: what the evidence must bind.
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> [u8; DIGEST_LEN] {
    let json = canonical_json(&runtime_data_value(nonce, tee_pubkey, additional_evidence));
    Sha384::digest(json.as_bytes()).into()
}

/// The 64-byte report_data: the digest followed by 16 zero bytes.
pub fn report_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> [u8; REPORT_DATA_LEN] {
    pad_report_data(&runtime_data_digest(nonce, tee_pubkey, additional_evidence))
}

/// Zero-pads a digest to a 64-byte report_data.
pub fn pad_report_data(digest: &[u8; DIGEST_LEN]) -> [u8; REPORT_DATA_LEN] {
    let mut out = [0u8; REPORT_DATA_LEN];
    out[..DIGEST_LEN].copy_from_slice(digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "xx".into(),
            y: "yy".into(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let v = runtime_data_value("n0nce", &key(), "");
        assert_eq!(
            canonical_json(&v),
            r#"{"additional-evidence":"","nonce":"n0nce","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"xx","y":"yy"}}"#
        );
    }

    #[test]
    fn canonical_form_escapes_like_rfc8785() {
        let v: Value = serde_json::from_str(r#"{"b":"\u0001\n\"/é","a":[1,true,null]}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            "{\"a\":[1,true,null],\"b\":\"\\u0001\\n\\\"/é\"}"
        );
    }

    #[test]
    fn digest_is_sha384_of_the_canonical_text_and_binds_the_nonce() {
        let text = canonical_json(&runtime_data_value("abc", &key(), ""));
        let expect: [u8; 48] = Sha384::digest(text.as_bytes()).into();
        assert_eq!(runtime_data_digest("abc", &key(), ""), expect);
        assert_ne!(runtime_data_digest("abd", &key(), ""), expect);
        let rd = report_data("abc", &key(), "");
        assert_eq!(&rd[..48], &expect);
        assert_eq!(&rd[48..], &[0u8; 16]);
    }
}
