//! JWE for KBS resources: `ECDH-ES+A256KW` key management with `A256GCM`
//! content encryption, in the flattened JSON shape of `kbs_types::Response`.
//!
//! Composed from RustCrypto primitives exactly as RFC 7516 / RFC 7518 specify:
//! - RFC 7518 4.6: ECDH-ES on P-256 with an ephemeral sender key (`epk` in the
//!   protected header), Concat KDF (NIST SP 800-56A, SHA-256) with
//!   AlgorithmID = `"ECDH-ES+A256KW"`, empty PartyUInfo/PartyVInfo, and
//!   SuppPubInfo = 256 (bits);
//! - RFC 7518 4.4: the derived key wraps a random 256-bit CEK with AES Key Wrap
//!   (RFC 3394);
//! - RFC 7518 5.3 / RFC 7516 5.1: AES-256-GCM over the payload with a 96-bit IV
//!   and AAD = ASCII(BASE64URL(UTF8(protected header))).
//!
//! No JOSE crate was used because none builds for `no_std` without OpenSSL or
//! ring, and this code runs inside the enclave. trustee's KBS uses the same
//! `alg`/`enc` pair for EC tee-pubkeys.
//!
//! The parsers here take untrusted input: on the enclave side a `Response`
//! relayed by the host, on the broker side a `tee-pubkey` JWK from the network.

use alloc::{format, string::String, vec, vec::Vec};

use aes_gcm::{aead::AeadInOut, Aes256Gcm, KeyInit};
use aes_kw::KwAes256;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use kbs_types::{ProtectedHeader, Response, TeePubKey};
use p256::{
    elliptic_curve::{ecdh, Generate},
    PublicKey, SecretKey,
};
use rand_core::CryptoRng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The key management algorithm.
pub const ALG: &str = "ECDH-ES+A256KW";
/// The content encryption algorithm.
pub const ENC: &str = "A256GCM";
/// The only curve supported.
pub const CRV: &str = "P-256";

const COORD_LEN: usize = 32;
const CEK_LEN: usize = 32;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;

/// Why a JWK or JWE was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    /// The JWK is not an EC key (`kty`).
    #[error("tee-pubkey: unsupported key type {kty:?} (expected \"EC\" with {CRV} and {ALG})")]
    UnsupportedKeyType {
        /// The `kty` found.
        kty: String,
    },
    /// A JWK member has an unsupported value.
    #[error("{what}: field `{field}` is {found:?}, expected {expected:?}")]
    UnsupportedValue {
        /// Which object (`tee-pubkey`, `protected`, `epk`).
        what: &'static str,
        /// The member name.
        field: &'static str,
        /// What was found.
        found: String,
        /// What is supported.
        expected: &'static str,
    },
    /// A member is not valid base64url (no padding) or has the wrong length.
    #[error("{what}: field `{field}`: {reason}")]
    BadField {
        /// Which object.
        what: &'static str,
        /// The member name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The coordinates are not a point on P-256.
    #[error("{what}: (x, y) is not a valid P-256 public key")]
    NotOnCurve {
        /// Which object.
        what: &'static str,
    },
    /// The protected header has no `epk`.
    #[error("protected header: missing `epk`")]
    MissingEpk,
    /// AES key unwrap failed its integrity check: wrong recipient key or tampering.
    #[error(
        "encrypted_key: AES key unwrap integrity check failed (not for this key, or tampered)"
    )]
    KeyUnwrap,
    /// AES-GCM authentication failed.
    #[error("ciphertext: AES-GCM authentication failed (tampered ciphertext, tag, iv or header)")]
    Decrypt,
    /// Encryption failed (payload too large for AES-GCM).
    #[error("payload of {len} bytes cannot be encrypted")]
    Encrypt {
        /// The payload length.
        len: usize,
    },
    /// The `aad` member is not supported (KBS responses never carry one).
    #[error("response: the `aad` member is not supported")]
    UnexpectedAad,
}

fn b64_field(
    what: &'static str,
    field: &'static str,
    s: &str,
    len: usize,
) -> Result<Vec<u8>, JweError> {
    let bytes = B64.decode(s).map_err(|e| JweError::BadField {
        what,
        field,
        reason: format!("not base64url without padding: {e}"),
    })?;
    if bytes.len() != len {
        return Err(JweError::BadField {
            what,
            field,
            reason: format!("decodes to {} bytes, expected {len}", bytes.len()),
        });
    }
    Ok(bytes)
}

fn point_from_xy(what: &'static str, x: &str, y: &str) -> Result<PublicKey, JweError> {
    let x = b64_field(what, "x", x, COORD_LEN)?;
    let y = b64_field(what, "y", y, COORD_LEN)?;
    let mut sec1 = Vec::with_capacity(1 + 2 * COORD_LEN);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    PublicKey::from_sec1_bytes(&sec1).map_err(|_| JweError::NotOnCurve { what })
}

fn xy_of(key: &PublicKey) -> (String, String) {
    let sec1 = key.to_sec1_bytes();
    // Uncompressed SEC1: 0x04 || x || y (P-256 does not compress by default).
    let x = sec1.get(1..1 + COORD_LEN).unwrap_or_default();
    let y = sec1.get(1 + COORD_LEN..).unwrap_or_default();
    (B64.encode(x), B64.encode(y))
}

/// Parses and validates a `tee-pubkey`: an EC P-256 JWK for `ECDH-ES+A256KW`
/// whose point is on the curve.
pub fn parse_tee_pubkey(jwk: &TeePubKey) -> Result<PublicKey, JweError> {
    const WHAT: &str = "tee-pubkey";
    match jwk {
        TeePubKey::EC { crv, alg, x, y } => {
            if crv != CRV {
                return Err(JweError::UnsupportedValue {
                    what: WHAT,
                    field: "crv",
                    found: crv.clone(),
                    expected: CRV,
                });
            }
            if alg != ALG {
                return Err(JweError::UnsupportedValue {
                    what: WHAT,
                    field: "alg",
                    found: alg.clone(),
                    expected: ALG,
                });
            }
            point_from_xy(WHAT, x, y)
        }
        TeePubKey::RSA { .. } => Err(JweError::UnsupportedKeyType { kty: "RSA".into() }),
        TeePubKey::AKP { .. } => Err(JweError::UnsupportedKeyType { kty: "AKP".into() }),
    }
}

/// Concat KDF (NIST SP 800-56A 5.8.1, SHA-256) as RFC 7518 4.6.2 uses it, for a
/// 256-bit output (one hash block). `alg_id` is the `alg` (key wrapping) or `enc`
/// (direct agreement) value.
pub fn concat_kdf_256(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; 32]> {
    concat_kdf(z, alg_id, apu, apv, 256)
}

/// Concat KDF producing `keydatalen_bits` (at most 256) bits, truncated from one SHA-256 block.
fn concat_kdf(
    z: &[u8],
    alg_id: &str,
    apu: &[u8],
    apv: &[u8],
    keydatalen_bits: u32,
) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for field in [alg_id.as_bytes(), apu, apv] {
        // Lengths here are header strings / fixed inputs, far below u32::MAX.
        h.update((field.len() as u32).to_be_bytes());
        h.update(field);
    }
    h.update(keydatalen_bits.to_be_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

/// Exposed for RFC 7518 Appendix C's test vector (ECDH-ES direct, A128GCM).
#[doc(hidden)]
pub fn concat_kdf_bits(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], bits: u32) -> Vec<u8> {
    let out = concat_kdf(z, alg_id, apu, apv, bits);
    out[..(bits as usize / 8).min(32)].to_vec()
}

fn kek(secret: &p256::NonZeroScalar, public: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = ecdh::diffie_hellman(secret, public.as_affine());
    concat_kdf_256(shared.raw_secret_bytes().as_slice(), ALG, &[], &[])
}

fn epk_value(key: &PublicKey) -> Value {
    let (x, y) = xy_of(key);
    let mut m = Map::new();
    m.insert("crv".into(), Value::String(CRV.into()));
    m.insert("kty".into(), Value::String("EC".into()));
    m.insert("x".into(), Value::String(x));
    m.insert("y".into(), Value::String(y));
    Value::Object(m)
}

/// `v` with the members of every object, at every depth, in sorted (byte-wise)
/// order.
///
/// Why: KBS clients (CoCo guest-components' kbs_protocol) do not use the
/// `protected` member as received for the AAD; they parse it into a
/// `kbs_types::ProtectedHeader` and serialize it again (`generate_aad`). Built
/// without serde_json's `preserve_order` (as they are, and as trustee is),
/// `serde_json::Map` is a BTreeMap, so that re-serialization lists nested
/// members sorted. A header sent in any other order fails their tag check.
/// With `preserve_order` (on in this workspace through a dependency) a Map
/// keeps insertion order, so the order has to be made explicit here.
pub fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(String, Value)> = m.into_iter().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// The protected header of a resource JWE exactly as trustee's KBS writes it
/// and as KBS clients re-serialize it before checking the tag: `alg`, `enc`
/// (the struct's members, in that order), then the other members sorted, with
/// every nested object sorted too (see [`sort_keys`]).
pub fn protected_header(alg: &str, enc: &str, other: Map<String, Value>) -> ProtectedHeader {
    let other = match sort_keys(Value::Object(other)) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    ProtectedHeader {
        alg: alg.into(),
        enc: enc.into(),
        other_fields: other,
    }
}

/// Encrypts `plaintext` to `recipient` (broker side).
pub fn encrypt<R: CryptoRng + ?Sized>(
    recipient: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Response, JweError> {
    let eph = SecretKey::generate_from_rng(rng);
    let kek = kek(&eph.to_nonzero_scalar(), recipient);

    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rng.fill_bytes(cek.as_mut());
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);

    let kw = KwAes256::new_from_slice(kek.as_ref()).map_err(|_| JweError::KeyUnwrap)?;
    let mut wrapped = [0u8; WRAPPED_CEK_LEN];
    let wrapped = kw
        .wrap_key(cek.as_ref(), &mut wrapped)
        .map_err(|_| JweError::Encrypt {
            len: plaintext.len(),
        })?
        .to_vec();

    let mut other = Map::new();
    other.insert("epk".into(), epk_value(&eph.public_key()));
    let protected = protected_header(ALG, ENC, other);
    let aad = protected.generate_aad().map_err(|_| JweError::Encrypt {
        len: plaintext.len(),
    })?;

    let cipher = Aes256Gcm::new_from_slice(cek.as_ref()).map_err(|_| JweError::Encrypt {
        len: plaintext.len(),
    })?;
    let mut buf = plaintext.to_vec();
    let nonce = aes_gcm::Nonce::from(iv);
    let tag = cipher
        .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
        .map_err(|_| JweError::Encrypt {
            len: plaintext.len(),
        })?;

    Ok(Response {
        protected,
        encrypted_key: wrapped,
        aad: None,
        iv: iv.to_vec(),
        ciphertext: buf,
        tag: tag.to_vec(),
    })
}

/// The enclave's ephemeral key pair. The secret half never leaves this value.
pub struct EnclaveKey {
    secret: SecretKey,
}

impl EnclaveKey {
    /// Generates a fresh key from `rng` (RDRAND inside the shim).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        EnclaveKey {
            secret: SecretKey::generate_from_rng(rng),
        }
    }

    /// The public half as the KBS `tee-pubkey` JWK.
    pub fn tee_pubkey(&self) -> TeePubKey {
        let (x, y) = xy_of(&self.secret.public_key());
        TeePubKey::EC {
            crv: CRV.into(),
            alg: ALG.into(),
            x,
            y,
        }
    }

    /// Decrypts a resource `Response` addressed to this key, with the AAD
    /// recomputed from the parsed header (only correct when the sender serialized
    /// the header the same way: prefer [`EnclaveKey::decrypt_wire`]).
    pub fn decrypt(&self, response: &Response) -> Result<Vec<u8>, JweError> {
        let aad = response
            .protected
            .generate_aad()
            .map_err(|_| JweError::Decrypt)?;
        decrypt_with(&self.secret, response, &aad)
    }

    /// Decrypts a `Response` as received (JSON bytes). The AAD is the `protected`
    /// member exactly as sent (RFC 7516 5.2 step 14), not a re-serialization: JSON
    /// member order differs between serializers.
    pub fn decrypt_wire(&self, body: &[u8]) -> Result<Vec<u8>, JweError> {
        let bad = |reason: String| JweError::BadField {
            what: "response",
            field: "protected",
            reason,
        };
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let aad = value
            .get("protected")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing or not a string".into()))?
            .as_bytes()
            .to_vec();
        let response: Response =
            serde_json::from_value(value).map_err(|e| bad(format!("not a KBS Response: {e}")))?;
        decrypt_with(&self.secret, &response, &aad)
    }
}

fn str_member<'a>(
    m: &'a Map<String, Value>,
    what: &'static str,
    field: &'static str,
) -> Result<&'a str, JweError> {
    m.get(field)
        .and_then(Value::as_str)
        .ok_or(JweError::BadField {
            what,
            field,
            reason: "missing or not a string".into(),
        })
}

fn decrypt_with(secret: &SecretKey, response: &Response, aad: &[u8]) -> Result<Vec<u8>, JweError> {
    let h = &response.protected;
    if h.alg != ALG {
        return Err(JweError::UnsupportedValue {
            what: "protected",
            field: "alg",
            found: h.alg.clone(),
            expected: ALG,
        });
    }
    if h.enc != ENC {
        return Err(JweError::UnsupportedValue {
            what: "protected",
            field: "enc",
            found: h.enc.clone(),
            expected: ENC,
        });
    }
    if response.aad.is_some() {
        return Err(JweError::UnexpectedAad);
    }
    let epk = match h.other_fields.get("epk") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(JweError::BadField {
                what: "protected",
                field: "epk",
                reason: "not a JSON object".into(),
            })
        }
        None => return Err(JweError::MissingEpk),
    };
    let kty = str_member(epk, "epk", "kty")?;
    if kty != "EC" {
        return Err(JweError::UnsupportedValue {
            what: "epk",
            field: "kty",
            found: kty.into(),
            expected: "EC",
        });
    }
    let crv = str_member(epk, "epk", "crv")?;
    if crv != CRV {
        return Err(JweError::UnsupportedValue {
            what: "epk",
            field: "crv",
            found: crv.into(),
            expected: CRV,
        });
    }
    let epk = point_from_xy(
        "epk",
        str_member(epk, "epk", "x")?,
        str_member(epk, "epk", "y")?,
    )?;

    if response.encrypted_key.len() != WRAPPED_CEK_LEN {
        return Err(JweError::BadField {
            what: "response",
            field: "encrypted_key",
            reason: format!(
                "{} bytes, expected {WRAPPED_CEK_LEN}",
                response.encrypted_key.len()
            ),
        });
    }
    let iv: [u8; IV_LEN] = response
        .iv
        .as_slice()
        .try_into()
        .map_err(|_| JweError::BadField {
            what: "response",
            field: "iv",
            reason: format!("{} bytes, expected {IV_LEN}", response.iv.len()),
        })?;
    let tag: [u8; TAG_LEN] =
        response
            .tag
            .as_slice()
            .try_into()
            .map_err(|_| JweError::BadField {
                what: "response",
                field: "tag",
                reason: format!("{} bytes, expected {TAG_LEN}", response.tag.len()),
            })?;

    let kek = kek(&secret.to_nonzero_scalar(), &epk);
    let kw = KwAes256::new_from_slice(kek.as_ref()).map_err(|_| JweError::KeyUnwrap)?;
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    kw.unwrap_key(&response.encrypted_key, cek.as_mut())
        .map_err(|_| JweError::KeyUnwrap)?;

    gcm_decrypt(cek.as_ref(), &iv, aad, &response.ciphertext, &tag)
}

/// AES-256-GCM decryption with a detached tag (the JWE content layer).
pub fn gcm_decrypt(
    cek: &[u8],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<Vec<u8>, JweError> {
    let cipher = Aes256Gcm::new_from_slice(cek).map_err(|_| JweError::Decrypt)?;
    let mut buf = vec![0u8; ciphertext.len()];
    buf.copy_from_slice(ciphertext);
    let nonce = aes_gcm::Nonce::from(*iv);
    let tag = aes_gcm::Tag::from(*tag);
    cipher
        .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
        .map_err(|_| JweError::Decrypt)?;
    Ok(buf)
}
