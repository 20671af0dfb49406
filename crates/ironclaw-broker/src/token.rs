//! The attestation token: a JWT (RFC 7519) signed ES256 (RFC 7515/7518) with the
//! broker's token key (`STATE/token.key`). Composed from p256's ECDSA: a JWS
//! compact serialization is `b64(header).b64(claims).b64(r || s)`.
//!
//! The token is issued at `/attest` and may be presented back as
//! `Authorization: Bearer <token>` to `/kbs/v0/resource/...` instead of the
//! session cookie (trustee clients do). Everything the resource endpoint needs
//! is therefore in the signed claims ([`TokenClaims`]): the verified evidence
//! claims the policy evaluates and the tee-pubkey the resource is encrypted to.
//! A stolen token is useless without the tee-pubkey's private half, which never
//! leaves the TEE.
//!
//! [`verify`] is a parser of untrusted bytes: nothing in a token is used before
//! its signature has been checked against the broker's key, except the header's
//! `alg` and `kid` to pick the refusal reason.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ironclaw_verifier::TcbStatus;
use p256::ecdsa::{signature::Signer, signature::Verifier, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::evidence::Claims;
use crate::policy::KNOWN_TEES;

/// The `iss` of every token.
pub const ISSUER: &str = "ironclaw-broker";
/// Largest token accepted (an RSA-8192 tee-pubkey is ~1.4 KiB of base64url, twice
/// encoded; anything far larger is not ours).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `iat` (a token from the future is refused).
pub const MAX_SKEW_SECS: u64 = 60;

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS, bad base64url, bad JSON, missing or ill-typed claim.
    #[error("attestation token: {0}")]
    Malformed(String),
    /// The header names another algorithm.
    #[error("attestation token: header `alg` is {0:?}, expected \"ES256\"")]
    UnsupportedAlg(String),
    /// The header names a key that is not this broker's token key.
    #[error("attestation token: header `kid` {kid:?} is not this broker's token key ({ours})")]
    UnknownKey {
        /// The `kid` presented.
        kid: String,
        /// This broker's key id.
        ours: String,
    },
    /// The signature does not verify with the broker's token key.
    #[error("attestation token: the ES256 signature does not verify with this broker's token key")]
    BadSignature,
    /// `exp` has passed.
    #[error("attestation token expired at {exp} (now {now})")]
    Expired {
        /// `exp` claim.
        exp: u64,
        /// Current time.
        now: u64,
    },
    /// `iat` is in the future.
    #[error("attestation token issued in the future (iat {iat}, now {now})")]
    NotYetValid {
        /// `iat` claim.
        iat: u64,
        /// Current time.
        now: u64,
    },
    /// `iss` is not this broker.
    #[error("attestation token: `iss` is {0:?}, expected {ISSUER:?}")]
    WrongIssuer(String),
}

/// The claims of an attestation token (everything below the signature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Issuer ([`ISSUER`]).
    pub iss: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// TEE kind name.
    pub tee: String,
    /// Primary measurement, lowercase hex.
    pub measurement: Option<String>,
    /// Debuggable enclave.
    pub debug: bool,
    /// TCB status.
    pub tcb_status: Option<TcbStatus>,
    /// The tee-pubkey JWK from runtime-data (validated at `/attest`).
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

impl TokenClaims {
    /// The claims for verified evidence `c` bound to `tee_pubkey`, valid `ttl_secs` from `now`.
    pub fn new(c: &Claims, tee_pubkey: Value, now: u64, ttl_secs: u64) -> Self {
        TokenClaims {
            iss: ISSUER.into(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            tee: c.tee.into(),
            measurement: c.measurement.as_deref().map(hex::encode),
            debug: c.debug,
            tcb_status: c.tcb,
            tee_pubkey,
        }
    }

    /// The evidence claims for the policy. `result` (the verifier's full report)
    /// is not carried: a policy clause that needs it refuses a Bearer request.
    pub fn evidence_claims(&self) -> Result<Claims, TokenError> {
        let tee = KNOWN_TEES
            .iter()
            .find(|t| **t == self.tee)
            .ok_or_else(|| TokenError::Malformed(format!("unknown `tee` {:?}", self.tee)))?;
        let measurement = match &self.measurement {
            None => None,
            Some(m) => Some(
                hex::decode(m)
                    .map_err(|e| TokenError::Malformed(format!("`measurement` is not hex: {e}")))?,
            ),
        };
        Ok(Claims {
            tee,
            measurement,
            debug: self.debug,
            tcb: self.tcb_status,
            result: None,
        })
    }
}

/// The `kid` of `key`: its RFC 7638 JWK thumbprint (SHA-256, base64url).
pub fn key_id(key: &VerifyingKey) -> String {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    let x = bytes.get(1..33).unwrap_or_default();
    let y = bytes.get(33..65).unwrap_or_default();
    // RFC 7638 3.2: required members only, lexicographic order, no whitespace.
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        B64.encode(x),
        B64.encode(y)
    );
    B64.encode(Sha256::digest(jwk.as_bytes()))
}

/// Signs `claims` as a compact JWS with header `{"alg":"ES256","typ":"JWT","kid":..}`.
pub fn sign(key: &SigningKey, claims: &impl Serialize) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key_id(key.verifying_key())});
    let claims = serde_json::to_string(claims).unwrap_or_default();
    let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims));
    let sig: Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
}

fn part(parts: &mut std::str::Split<'_, char>, name: &str) -> Result<Vec<u8>, TokenError> {
    let p = parts.next().ok_or_else(|| {
        TokenError::Malformed(format!("no {name} (expected header.claims.signature)"))
    })?;
    B64.decode(p)
        .map_err(|e| TokenError::Malformed(format!("{name} is not base64url: {e}")))
}

/// Verifies a compact JWS from [`sign`] (signature by `key`, `iss`, `iat`, `exp`
/// at `now`) and returns its claims.
pub fn verify(key: &VerifyingKey, token: &str, now: u64) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "{} bytes, at most {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    let (signing_input, _) = token
        .rsplit_once('.')
        .ok_or_else(|| TokenError::Malformed("not a compact JWS".into()))?;
    let mut parts = token.split('.');
    let header = part(&mut parts, "header")?;
    let claims = part(&mut parts, "claims")?;
    let sig = part(&mut parts, "signature")?;
    if parts.next().is_some() {
        return Err(TokenError::Malformed(
            "more than three parts (a JWE, or trailing data)".into(),
        ));
    }
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| TokenError::Malformed(format!("header is not JSON: {e}")))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => {}
        Some(other) => return Err(TokenError::UnsupportedAlg(other.chars().take(32).collect())),
        None => return Err(TokenError::Malformed("header has no string `alg`".into())),
    }
    if let Some(kid) = header.get("kid") {
        let ours = key_id(key);
        if kid.as_str() != Some(ours.as_str()) {
            return Err(TokenError::UnknownKey {
                kid: kid.to_string().chars().take(64).collect(),
                ours,
            });
        }
    }
    let sig = Signature::from_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    key.verify(signing_input.as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;
    // Signed by us: the claims are ours, but still parsed strictly.
    let claims: TokenClaims = serde_json::from_slice(&claims)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if claims.iss != ISSUER {
        return Err(TokenError::WrongIssuer(
            claims.iss.chars().take(64).collect(),
        ));
    }
    if claims.iat > now.saturating_add(MAX_SKEW_SECS) {
        return Err(TokenError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if now >= claims.exp {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> TokenClaims {
        TokenClaims {
            iss: ISSUER.into(),
            iat: now,
            exp: now + 60,
            tee: "kvm".into(),
            measurement: Some("abcd".into()),
            debug: false,
            tcb_status: None,
            tee_pubkey: json!({"kty": "EC"}),
        }
    }

    #[test]
    fn sign_verify_and_every_refusal() {
        let k = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let t = sign(&k, &claims(1000));
        let c = verify(k.verifying_key(), &t, 1001).unwrap();
        assert_eq!(c, claims(1000));
        assert_eq!(
            c.evidence_claims().unwrap().measurement,
            Some(vec![0xab, 0xcd])
        );

        // Claims changed after signing.
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut forged = claims(1000);
        forged.tee = "snp".into();
        parts[1] = B64.encode(serde_json::to_string(&forged).unwrap());
        assert_eq!(
            verify(k.verifying_key(), &parts.join("."), 1001),
            Err(TokenError::BadSignature)
        );
        // Expiry and future tokens.
        assert!(matches!(
            verify(k.verifying_key(), &t, 1060),
            Err(TokenError::Expired { exp: 1060, .. })
        ));
        assert!(matches!(
            verify(k.verifying_key(), &t, 900),
            Err(TokenError::NotYetValid { .. })
        ));
        // Another key.
        let other = SigningKey::from_slice(&[4u8; 32]).unwrap();
        assert!(matches!(
            verify(k.verifying_key(), &sign(&other, &claims(1000)), 1001),
            Err(TokenError::UnknownKey { .. })
        ));
        // Shapes.
        for bad in ["", "a", "a.b", "a.b.c.d", "e30.e30.AA", "!!.e30.AA"] {
            assert!(
                matches!(
                    verify(k.verifying_key(), bad, 1001),
                    Err(TokenError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(serde_json::to_string(&claims(1000)).unwrap())
        );
        assert_eq!(
            verify(k.verifying_key(), &none, 1001),
            Err(TokenError::UnsupportedAlg("none".into()))
        );
    }

    #[test]
    fn key_id_is_the_rfc7638_thumbprint() {
        // RFC 7638 has no EC vector; check stability and that it differs per key.
        let a = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let b = SigningKey::from_slice(&[4u8; 32]).unwrap();
        assert_eq!(key_id(a.verifying_key()), key_id(a.verifying_key()));
        assert_ne!(key_id(a.verifying_key()), key_id(b.verifying_key()));
        assert_eq!(key_id(a.verifying_key()).len(), 43);
    }
}
