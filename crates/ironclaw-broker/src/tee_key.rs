//! The enclave's `tee-pubkey` (untrusted JWK from `/attest`) and the resource
//! JWE encrypted to it.
//!
//! Two key types are accepted, as trustee's KBS accepts them (kbs-types 0.18
//! `TeePubKey`):
//!
//! - `{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":..,"y":..}`: IronClaw's
//!   own enclave and current CoCo guest-components. Parsed and encrypted to by
//!   [`ironclaw_enclave::jwe`] (the same code the enclave decrypts with).
//! - `{"kty":"EC","crv":"P-521","alg":"ECDH-ES+A256KW",..}` (66-byte coordinates):
//!   kbs_protocol's `ECDH-ES+A256KW-P521` key, which trustee accepts. The same
//!   RFC 7518 4.6 composition (Concat KDF SHA-256, A256KW) on P-521, here.
//! - `{"kty":"RSA","alg":..,"n":..,"e":..}`: CoCo guest-components' RSA tee key
//!   (older releases' default). `alg` is the JWE key management algorithm the
//!   client will decrypt the content key with (RFC 7518 4.2, 4.3):
//!   - `RSA-OAEP-256`: RSAES-OAEP, SHA-256 and MGF1-SHA-256 (guest-components'
//!     current RSA key, trustee's `RSA_OAEP256_ALGORITHM`);
//!   - `RSA-OAEP`: RSAES-OAEP, SHA-1 and MGF1-SHA-1, as RFC 7518 4.3 defines it;
//!   - `RSA1_5`: RSAES-PKCS1-v1_5. A known-weak padding (Bleichenbacher-style
//!     oracles), accepted only because released guest-components versions
//!     exported their tee key with `alg: "RSA1_5"` and trustee still serves them.
//!     The weakness is on the decrypting side (the guest), which chose this
//!     padding for its own ephemeral key; the broker only encrypts, so it exposes
//!     no padding oracle, and the `alg` cannot be downgraded by a third party: the
//!     whole JWK is bound into the attested report_data.
//!
//!   The modulus must be 2048 to 8192 bits and odd, the exponent odd, at least 3
//!   and at most 2^33 - 1 (RustCrypto rsa's RSADoS bound).
//!
//! The resource JWE has trustee's flattened JSON shape (kbs-types `Response`):
//! protected header `{"alg": <the key's alg>, "enc": "A256GCM"}` (plus `epk` for
//! ECDH-ES), a random 256-bit CEK encrypted to the key, a 96-bit IV, AES-256-GCM
//! over the payload with AAD = ASCII(BASE64URL(protected header)) (RFC 7516 5.1).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ironclaw_enclave::jwe::{self, JweError};
use kbs_types::{Response, TeePubKey};
use rand_core::CryptoRng;
use rsa::BoxedUint;
use zeroize::Zeroizing;

/// Smallest accepted RSA modulus, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const RSA_MAX_BITS: usize = 8192;
/// Largest accepted RSA public exponent (RustCrypto rsa's `MAX_PUB_EXPONENT`).
pub const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;
/// The content encryption algorithm of every resource JWE.
pub const ENC: &str = "A256GCM";

const CEK_LEN: usize = 32;
const IV_LEN: usize = 12;

/// The RSA key management algorithms (RFC 7518 4.2, 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaAlg {
    /// `RSA-OAEP-256`.
    OaepSha256,
    /// `RSA-OAEP` (SHA-1).
    OaepSha1,
    /// `RSA1_5` (legacy, see the module documentation).
    Pkcs1v15,
}

impl RsaAlg {
    /// The accepted `alg` values, for error messages.
    pub const ACCEPTED: &'static str = "\"RSA-OAEP-256\", \"RSA-OAEP\" or \"RSA1_5\"";

    /// Parses a JWK / JWE `alg`.
    pub fn from_jwa(alg: &str) -> Option<Self> {
        match alg {
            "RSA-OAEP-256" => Some(RsaAlg::OaepSha256),
            "RSA-OAEP" => Some(RsaAlg::OaepSha1),
            "RSA1_5" => Some(RsaAlg::Pkcs1v15),
            _ => None,
        }
    }

    /// The JWA name.
    pub fn name(self) -> &'static str {
        match self {
            RsaAlg::OaepSha256 => "RSA-OAEP-256",
            RsaAlg::OaepSha1 => "RSA-OAEP",
            RsaAlg::Pkcs1v15 => "RSA1_5",
        }
    }
}

/// Why a tee-pubkey was refused. Every variant names the JWK member it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeeKeyError {
    /// `kty` is neither `EC` nor `RSA`.
    #[error("tee-pubkey: field `kty` is {kty:?}: only \"EC\" (P-256, ECDH-ES+A256KW) and \"RSA\" keys are supported")]
    UnsupportedKeyType {
        /// The `kty` found.
        kty: String,
    },
    /// `alg` names a key management algorithm the broker does not implement.
    #[error("tee-pubkey: field `alg` is {found:?}, expected {expected} for kty {kty:?}")]
    UnsupportedAlg {
        /// The key type.
        kty: &'static str,
        /// The `alg` found.
        found: String,
        /// What is supported.
        expected: &'static str,
    },
    /// A member is not valid (not base64url without padding, empty, even, ...).
    #[error("tee-pubkey: field `{field}`: {reason}")]
    BadField {
        /// The JWK member (`n`, `e`, `x`, `y`, `crv`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The RSA modulus is smaller than [`RSA_MIN_BITS`].
    #[error("tee-pubkey: field `n` is a {bits}-bit modulus, at least {min} bits are required")]
    ModulusTooSmall {
        /// The modulus size.
        bits: usize,
        /// The minimum.
        min: usize,
    },
    /// The RSA modulus is larger than [`RSA_MAX_BITS`].
    #[error("tee-pubkey: field `n` is a {bits}-bit modulus, at most {max} bits are accepted")]
    ModulusTooLarge {
        /// The modulus size.
        bits: usize,
        /// The maximum.
        max: usize,
    },
    /// The EC key was refused by the enclave-side JWK parser.
    #[error(transparent)]
    Ec(JweError),
}

impl TeeKeyError {
    /// True when the key is well formed but too weak (a policy refusal, not a
    /// syntax error).
    pub fn is_weak(&self) -> bool {
        matches!(self, TeeKeyError::ModulusTooSmall { .. })
    }

    /// True when the key type or algorithm is not implemented.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            TeeKeyError::UnsupportedKeyType { .. }
                | TeeKeyError::UnsupportedAlg { .. }
                | TeeKeyError::Ec(JweError::UnsupportedKeyType { .. })
                | TeeKeyError::Ec(JweError::UnsupportedValue { .. })
        )
    }
}

/// Why a resource could not be encrypted (a server-side fault: the key was
/// validated at `/attest`).
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// EC path.
    #[error("ECDH-ES+A256KW: {0}")]
    Ec(JweError),
    /// RSA path (the CEK is far below any accepted modulus' capacity, so this is
    /// an RNG or arithmetic failure).
    #[error("{alg}: encrypting the content key failed: {reason}")]
    Rsa {
        /// The algorithm.
        alg: &'static str,
        /// The rsa crate's error.
        reason: String,
    },
    /// AES-256-GCM refused the payload (larger than GCM's limit) or the header.
    #[error("A256GCM: cannot encrypt a {len}-byte payload")]
    Content {
        /// The payload length.
        len: usize,
    },
}

/// A validated tee-pubkey.
#[derive(Debug, Clone)]
pub enum TeeKey {
    /// P-256 for `ECDH-ES+A256KW`.
    Ec(p256::PublicKey),
    /// P-521 for `ECDH-ES+A256KW`.
    EcP521(p521::PublicKey),
    /// RSA with the key management algorithm the client declared.
    Rsa {
        /// The public key (size and exponent checked).
        key: rsa::PublicKey,
        /// The declared `alg`.
        alg: RsaAlg,
    },
}

fn b64_member(field: &'static str, value: &str) -> Result<Vec<u8>, TeeKeyError> {
    if value.is_empty() {
        return Err(TeeKeyError::BadField {
            field,
            reason: "empty".into(),
        });
    }
    B64.decode(value).map_err(|e| TeeKeyError::BadField {
        field,
        reason: format!("not base64url without padding: {e}"),
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn parse_rsa(alg: &str, n: &str, e: &str) -> Result<TeeKey, TeeKeyError> {
    let alg = RsaAlg::from_jwa(alg).ok_or_else(|| TeeKeyError::UnsupportedAlg {
        kty: "RSA",
        found: alg.chars().take(64).collect(),
        expected: RsaAlg::ACCEPTED,
    })?;
    let n_raw = b64_member("n", n)?;
    let n_bytes = strip_leading_zeros(&n_raw);
    let bits = bit_len(n_bytes);
    if bits < RSA_MIN_BITS {
        return Err(TeeKeyError::ModulusTooSmall {
            bits,
            min: RSA_MIN_BITS,
        });
    }
    if bits > RSA_MAX_BITS {
        return Err(TeeKeyError::ModulusTooLarge {
            bits,
            max: RSA_MAX_BITS,
        });
    }
    if n_bytes.last().is_some_and(|b| b & 1 == 0) {
        return Err(TeeKeyError::BadField {
            field: "n",
            reason: "the modulus is even".into(),
        });
    }
    let e_raw = b64_member("e", e)?;
    let e_bytes = strip_leading_zeros(&e_raw);
    if e_bytes.len() > 8 {
        return Err(TeeKeyError::BadField {
            field: "e",
            reason: format!(
                "{}-byte exponent, at most {RSA_MAX_EXPONENT} is accepted",
                e_bytes.len()
            ),
        });
    }
    let e_val = e_bytes
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e_val < 3 || e_val % 2 == 0 || e_val > RSA_MAX_EXPONENT {
        return Err(TeeKeyError::BadField {
            field: "e",
            reason: format!("exponent {e_val} is not an odd number in 3..={RSA_MAX_EXPONENT}"),
        });
    }
    // Precisions are byte lengths * 8: bounded by RSA_MAX_BITS / 64 above.
    let n_big = BoxedUint::from_be_slice(n_bytes, (n_bytes.len() * 8) as u32).map_err(|e| {
        TeeKeyError::BadField {
            field: "n",
            reason: format!("{e:?}"),
        }
    })?;
    let e_big = BoxedUint::from(e_val);
    let key = rsa::PublicKey::new_with_size_limits(n_big, e_big, RSA_MIN_BITS..=RSA_MAX_BITS)
        .map_err(|e| TeeKeyError::BadField {
            field: "n",
            reason: format!("not a valid RSA public key with this `e`: {e}"),
        })?;
    Ok(TeeKey::Rsa { key, alg })
}

/// P-521 coordinates are 66 bytes (RFC 7518 6.2.1.2: the full field size).
const P521_COORD_LEN: usize = 66;

fn p521_coord(field: &'static str, v: &str) -> Result<Vec<u8>, TeeKeyError> {
    let b = b64_member(field, v)?;
    if b.len() != P521_COORD_LEN {
        return Err(TeeKeyError::BadField {
            field,
            reason: format!(
                "decodes to {} bytes, expected {P521_COORD_LEN} for P-521",
                b.len()
            ),
        });
    }
    Ok(b)
}

fn parse_p521(alg: &str, x: &str, y: &str) -> Result<TeeKey, TeeKeyError> {
    if alg != jwe::ALG {
        return Err(TeeKeyError::UnsupportedAlg {
            kty: "EC",
            found: alg.chars().take(64).collect(),
            expected: "\"ECDH-ES+A256KW\"",
        });
    }
    let mut sec1 = vec![0x04];
    sec1.extend(p521_coord("x", x)?);
    sec1.extend(p521_coord("y", y)?);
    p521::PublicKey::from_sec1_bytes(&sec1)
        .map(TeeKey::EcP521)
        .map_err(|_| TeeKeyError::BadField {
            field: "x",
            reason: "(x, y) is not a valid P-521 public key".into(),
        })
}

/// Parses and validates the `tee-pubkey` of an `/attest` request.
pub fn parse(jwk: &TeePubKey) -> Result<TeeKey, TeeKeyError> {
    match jwk {
        TeePubKey::EC { crv, alg, x, y } if crv == "P-521" => parse_p521(alg, x, y),
        TeePubKey::EC { .. } => jwe::parse_tee_pubkey(jwk)
            .map(TeeKey::Ec)
            .map_err(TeeKeyError::Ec),
        TeePubKey::RSA { alg, k_mod, k_exp } => parse_rsa(alg, k_mod, k_exp),
        TeePubKey::AKP { .. } => Err(TeeKeyError::UnsupportedKeyType { kty: "AKP".into() }),
    }
}

/// Parses a `tee-pubkey` given as JSON (the attestation token's claim; also the
/// fuzzing entry point): a JWK object with a `kty` member.
pub fn parse_json(value: &serde_json::Value) -> Result<TeeKey, TeeKeyError> {
    let jwk: TeePubKey = match serde_json::from_value(value.clone()) {
        Ok(k) => k,
        Err(e) => {
            let kty = value.get("kty").and_then(|k| k.as_str());
            return Err(match kty {
                Some(k) if !matches!(k, "EC" | "RSA" | "AKP") => TeeKeyError::UnsupportedKeyType {
                    kty: k.chars().take(64).collect(),
                },
                _ => TeeKeyError::BadField {
                    field: "kty",
                    reason: format!("not a JWK of a known key type: {e}"),
                },
            });
        }
    };
    parse(&jwk)
}

impl TeeKey {
    /// The `alg` the resource JWE will carry.
    pub fn alg(&self) -> &'static str {
        match self {
            TeeKey::Ec(_) | TeeKey::EcP521(_) => jwe::ALG,
            TeeKey::Rsa { alg, .. } => alg.name(),
        }
    }

    /// Encrypts `plaintext` to this key as a KBS `Response`.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Response, EncryptError> {
        match self {
            TeeKey::Ec(k) => jwe::encrypt(k, plaintext, rng).map_err(EncryptError::Ec),
            TeeKey::EcP521(k) => p521_jwe(k, plaintext, rng),
            TeeKey::Rsa { key, alg } => rsa_jwe(key, *alg, plaintext, rng),
        }
    }
}

fn rsa_jwe<R: CryptoRng + ?Sized>(
    key: &rsa::PublicKey,
    alg: RsaAlg,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Response, EncryptError> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rng.fill_bytes(cek.as_mut());
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);

    let rsa_err = |e: rsa::Error| EncryptError::Rsa {
        alg: alg.name(),
        reason: e.to_string(),
    };
    let encrypted_key = match alg {
        RsaAlg::OaepSha256 => key.encrypt(rng, rsa::Oaep::<sha2::Sha256>::new(), cek.as_ref()),
        RsaAlg::OaepSha1 => key.encrypt(rng, rsa::Oaep::<sha1::Sha1>::new(), cek.as_ref()),
        RsaAlg::Pkcs1v15 => key.encrypt(rng, rsa::Pkcs1v15Encrypt, cek.as_ref()),
    }
    .map_err(rsa_err)?;

    let protected = jwe::protected_header(alg.name(), ENC, serde_json::Map::new());
    let content_err = || EncryptError::Content {
        len: plaintext.len(),
    };
    let aad = protected.generate_aad().map_err(|_| content_err())?;
    let (ciphertext, tag) =
        gcm_encrypt(cek.as_ref(), &iv, &aad, plaintext).ok_or_else(content_err)?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag,
    })
}

/// `ECDH-ES+A256KW` + `A256GCM` to a P-521 key (RFC 7518 4.6: ephemeral P-521
/// key in `epk`, Concat KDF SHA-256 over the shared x coordinate, A256KW of a
/// random CEK).
fn p521_jwe<R: CryptoRng + ?Sized>(
    recipient: &p521::PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Response, EncryptError> {
    use aes_kw::{KeyInit, KwAes256};
    use p521::elliptic_curve::Generate;
    let content_err = || EncryptError::Content {
        len: plaintext.len(),
    };
    let eph = p521::SecretKey::generate_from_rng(rng);
    let shared =
        p521::elliptic_curve::ecdh::diffie_hellman(eph.to_nonzero_scalar(), recipient.as_affine());
    let kek = jwe::concat_kdf_256(shared.raw_secret_bytes().as_slice(), jwe::ALG, &[], &[]);
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rng.fill_bytes(cek.as_mut());
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut wrapped = [0u8; CEK_LEN + 8];
    let encrypted_key = KwAes256::new_from_slice(kek.as_ref())
        .map_err(|_| content_err())?
        .wrap_key(cek.as_ref(), &mut wrapped)
        .map_err(|_| content_err())?
        .to_vec();
    let sec1 = eph.public_key().to_sec1_bytes();
    let (x, y) = (
        sec1.get(1..1 + P521_COORD_LEN).unwrap_or_default(),
        sec1.get(1 + P521_COORD_LEN..).unwrap_or_default(),
    );
    let mut epk = serde_json::Map::new();
    epk.insert("crv".into(), "P-521".into());
    epk.insert("kty".into(), "EC".into());
    epk.insert("x".into(), B64.encode(x).into());
    epk.insert("y".into(), B64.encode(y).into());
    let mut other = serde_json::Map::new();
    other.insert("epk".into(), serde_json::Value::Object(epk));
    let protected = jwe::protected_header(jwe::ALG, ENC, other);
    let aad = protected.generate_aad().map_err(|_| content_err())?;
    let (ciphertext, tag) =
        gcm_encrypt(cek.as_ref(), &iv, &aad, plaintext).ok_or_else(content_err)?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag,
    })
}

/// AES-256-GCM with a detached tag: (ciphertext, tag).
fn gcm_encrypt(
    cek: &[u8],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    use aes_gcm::{aead::AeadInOut, Aes256Gcm, KeyInit};
    let cipher = Aes256Gcm::new_from_slice(cek).ok()?;
    let mut buf = plaintext.to_vec();
    let nonce = aes_gcm::Nonce::from(*iv);
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
        .ok()?;
    Some((buf, tag.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(alg: &str, n: &str, e: &str) -> TeePubKey {
        TeePubKey::RSA {
            alg: alg.into(),
            k_mod: n.into(),
            k_exp: e.into(),
        }
    }

    /// A 2048-bit odd modulus (not a real key: parsing only checks its shape).
    fn modulus(bits: usize) -> String {
        let mut n = vec![0xffu8; bits / 8];
        if let Some(first) = n.first_mut() {
            *first = 0xc3;
        }
        B64.encode(n)
    }

    #[test]
    fn rsa_fields_are_checked_by_name() {
        let ok = parse(&rsa_jwk("RSA-OAEP-256", &modulus(2048), "AQAB")).unwrap();
        assert_eq!(ok.alg(), "RSA-OAEP-256");
        assert!(matches!(
            parse(&rsa_jwk("RSA-OAEP-256", &modulus(1024), "AQAB")),
            Err(TeeKeyError::ModulusTooSmall { bits: 1024, .. })
        ));
        assert!(matches!(
            parse(&rsa_jwk("RSA-OAEP-256", &modulus(8200), "AQAB")),
            Err(TeeKeyError::ModulusTooLarge { .. })
        ));
        assert!(matches!(
            parse(&rsa_jwk("RSA-OAEP-384", &modulus(2048), "AQAB")),
            Err(TeeKeyError::UnsupportedAlg { .. })
        ));
        for (n, e, field) in [
            ("", "AQAB", "n"),
            ("!!!", "AQAB", "n"),
            ("AQAB==", "AQAB", "n"),
            (&modulus(2048)[..], "", "e"),
            (&modulus(2048)[..], "AQA", "e"),
            (&modulus(2048)[..], "Ag", "e"),
            (&modulus(2048)[..], "AQ", "e"),
            (&modulus(2048)[..], "AQEBAQEBAQEB", "e"),
        ] {
            match parse(&rsa_jwk("RSA-OAEP", n, e)) {
                Err(TeeKeyError::BadField { field: f, .. }) => assert_eq!(f, field, "{n} {e}"),
                other => panic!("{n:?} {e:?}: {other:?}"),
            }
        }
        let mut even = B64.decode(modulus(2048)).unwrap();
        *even.last_mut().unwrap() = 0xfe;
        assert!(matches!(
            parse(&rsa_jwk("RSA1_5", &B64.encode(even), "AQAB")),
            Err(TeeKeyError::BadField { field: "n", .. })
        ));
    }

    #[test]
    fn unknown_key_types_from_json() {
        let e = parse_json(&serde_json::json!({"kty": "OKP", "crv": "X25519"})).unwrap_err();
        assert!(matches!(e, TeeKeyError::UnsupportedKeyType { .. }));
        assert!(e.is_unsupported());
        let e = parse_json(&serde_json::json!({"kty": "RSA", "n": "AQAB"})).unwrap_err();
        assert!(matches!(e, TeeKeyError::BadField { field: "kty", .. }));
    }
}
