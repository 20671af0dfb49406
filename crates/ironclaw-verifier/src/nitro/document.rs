//! The AWS Nitro Enclaves attestation document (aws-nitro-enclaves-nsm-api
//! `docs/attestation_process.md`): a COSE_Sign1 (RFC 9052), tagged (CBOR tag 18)
//! or untagged, ES384, whose payload is a CBOR map with module_id, digest,
//! timestamp, pcrs, certificate, cabundle and the optional public_key, user_data
//! and nonce. Untrusted input: field types and sizes are checked as the AWS
//! document specifies, and each error names the field.

use std::collections::BTreeMap;

use ciborium::Value;
use coset::{iana, AsCborValue, CborSerializable, CoseSign1, TaggedCborSerializable};

use crate::error::VerifyError;

const FORMAT: &str = "Nitro attestation document";

/// The decoded document (not yet verified).
#[derive(Clone, Debug)]
pub struct Document {
    pub sign1: CoseSign1,
    /// Byte offset of the COSE structure in the input (non-zero when a framing
    /// prefix preceded it).
    pub offset: usize,
    /// Length of the COSE structure in the input.
    pub len: usize,
    pub module_id: String,
    pub digest: String,
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u16, Vec<u8>>,
    pub certificate: Vec<u8>,
    pub cabundle: Vec<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

fn bad(field: &'static str, offset: usize, reason: impl Into<String>) -> VerifyError {
    VerifyError::malformed(FORMAT, field, offset, reason)
}

/// Decode the COSE_Sign1 at `b` (tagged or untagged), which must be the whole input.
fn decode_cose(b: &[u8]) -> Result<CoseSign1, coset::CoseError> {
    match b.first() {
        Some(0xd2) => CoseSign1::from_tagged_slice(b),
        _ => CoseSign1::from_slice(b),
    }
}

/// Decode exactly one CBOR item at the start of `b` as a COSE_Sign1 (tagged or
/// untagged); bytes after it belong to the surrounding container.
fn decode_cose_prefix(b: &[u8]) -> Result<(CoseSign1, usize), String> {
    let mut reader = b;
    let value: Value = ciborium::from_reader(&mut reader).map_err(|e| format!("not CBOR: {e}"))?;
    let value = match value {
        Value::Tag(18, inner) => *inner,
        Value::Tag(t, _) => return Err(format!("CBOR tag {t} is not COSE_Sign1 (18)")),
        v => v,
    };
    let used = b.len() - reader.len();
    CoseSign1::from_cbor_value(value)
        .map(|s| (s, used))
        .map_err(|e| e.to_string())
}

/// The start of an ES384 COSE_Sign1 whose protected header is `{1: -35}`:
/// array(4), bstr(4) { 1: -35 }.
const COSE_ES384_START: [u8; 6] = [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22];
/// Upper bound on every byte-string field. AWS's document lists 512/1024-byte
/// limits, but real documents carry 1024-byte user_data; the bound here only keeps
/// sizes sane (the COSE signature is what makes the fields trustworthy).
const MAX_FIELD: usize = 4096;
/// Longest framing prefix skipped before the COSE structure.
const MAX_PREFIX: usize = 16;

impl Document {
    /// Parse a document. The whole input must be the COSE_Sign1, except that a
    /// document embedded in a container (a short framing prefix of at most 16 bytes,
    /// e.g. a SCALE length, and possibly other data after it) is found by its ES384
    /// COSE header and decoded as one CBOR item. Framing is not covered by the
    /// signature and nothing is taken from it.
    pub fn parse(b: &[u8]) -> Result<Document, VerifyError> {
        let (sign1, offset, len) = match decode_cose(b) {
            Ok(s) => (s, 0, b.len()),
            Err(first) => {
                let found = b
                    .windows(COSE_ES384_START.len())
                    .take(MAX_PREFIX + 1)
                    .position(|w| w == COSE_ES384_START)
                    .filter(|p| *p > 0);
                match found {
                    Some(p) => {
                        let start = if b.get(p - 1) == Some(&0xd2) {
                            p - 1
                        } else {
                            p
                        };
                        let rest = b.get(start..).unwrap_or_default();
                        let (s, len) =
                            decode_cose_prefix(rest).map_err(|e| bad("COSE_Sign1", start, e))?;
                        (s, start, len)
                    }
                    None => {
                        return Err(bad(
                            "COSE_Sign1",
                            0,
                            format!("not a COSE_Sign1 structure: {first}"),
                        ))
                    }
                }
            }
        };
        if sign1.protected.header.alg
            != Some(coset::RegisteredLabelWithPrivate::Assigned(
                iana::Algorithm::ES384,
            ))
        {
            return Err(bad(
                "protected.alg",
                offset,
                format!(
                    "{:?} (Nitro documents are signed with ES384)",
                    sign1.protected.header.alg
                ),
            ));
        }
        let payload = sign1
            .payload
            .as_ref()
            .ok_or_else(|| bad("payload", offset, "detached payload"))?;
        let value: Value = ciborium::from_reader(payload.as_slice())
            .map_err(|e| bad("payload", offset, format!("not CBOR: {e}")))?;
        let map = match value {
            Value::Map(m) => m,
            _ => return Err(bad("payload", offset, "not a CBOR map")),
        };
        let mut fields: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in map {
            let Value::Text(k) = k else {
                return Err(bad("payload", offset, "map key is not a text string"));
            };
            if fields.insert(k.clone(), v).is_some() {
                return Err(bad("payload", offset, format!("duplicate key {k:?}")));
            }
        }
        let take = |name: &'static str| fields.get(name).cloned();
        let need = |name: &'static str| take(name).ok_or_else(|| bad(name, offset, "missing"));
        let bytes = |name: &'static str,
                     v: Value,
                     min: usize,
                     max: usize|
         -> Result<Vec<u8>, VerifyError> {
            match v {
                Value::Bytes(b) if (min..=max).contains(&b.len()) => Ok(b),
                Value::Bytes(b) => Err(bad(
                    name,
                    offset,
                    format!("{} bytes, must be {min}..={max}", b.len()),
                )),
                _ => Err(bad(name, offset, "not a byte string")),
            }
        };
        let optional = |name: &'static str, max: usize| -> Result<Option<Vec<u8>>, VerifyError> {
            match take(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => bytes(name, v, 0, max).map(Some),
            }
        };

        let module_id = match need("module_id")? {
            Value::Text(t) if !t.is_empty() => t,
            _ => return Err(bad("module_id", offset, "not a non-empty text string")),
        };
        let digest = match need("digest")? {
            Value::Text(t) if t == "SHA384" || t == "SHA256" || t == "SHA512" => t,
            _ => return Err(bad("digest", offset, "not one of SHA256, SHA384, SHA512")),
        };
        let pcr_len = match digest.as_str() {
            "SHA256" => 32,
            "SHA512" => 64,
            _ => 48,
        };
        let timestamp_ms = match need("timestamp")? {
            Value::Integer(i) => u64::try_from(i128::from(i))
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| bad("timestamp", offset, "not a positive integer"))?,
            _ => return Err(bad("timestamp", offset, "not an integer")),
        };
        let pcrs_map = match need("pcrs")? {
            Value::Map(m) if (1..=32).contains(&m.len()) => m,
            _ => return Err(bad("pcrs", offset, "not a map of 1..=32 PCRs")),
        };
        let mut pcrs = BTreeMap::new();
        for (k, v) in pcrs_map {
            let idx = match k {
                Value::Integer(i) => u16::try_from(i128::from(i)).ok().filter(|i| *i < 32),
                _ => None,
            }
            .ok_or_else(|| bad("pcrs", offset, "PCR index is not an integer in 0..32"))?;
            let val = bytes("pcrs", v, pcr_len, pcr_len)?;
            if pcrs.insert(idx, val).is_some() {
                return Err(bad("pcrs", offset, format!("duplicate PCR{idx}")));
            }
        }
        let certificate = bytes("certificate", need("certificate")?, 1, MAX_FIELD)?;
        let cabundle = match need("cabundle")? {
            Value::Array(a) if !a.is_empty() => a
                .into_iter()
                .map(|c| bytes("cabundle", c, 1, MAX_FIELD))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad("cabundle", offset, "not a non-empty array")),
        };
        Ok(Document {
            offset,
            len,
            module_id,
            digest,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key: optional("public_key", MAX_FIELD)?,
            user_data: optional("user_data", MAX_FIELD)?,
            nonce: optional("nonce", MAX_FIELD)?,
            sign1,
        })
    }
}
