//! trustee's administration API over HTTPS, for operators' existing tools
//! (`kbs-client config --auth-private-key KEY set-resource ...`), next to the
//! admin socket ([`crate::admin`], which stays the local way in).
//!
//! - `POST /kbs/v0/resource/<repository>/<type>/<tag>`: the body is the new value;
//! - `DELETE /kbs/v0/resource/<repository>/<type>/<tag>`;
//! - `POST /kbs/v0/resource-policy` with `{"policy": "<base64>"}`: the policy,
//!   which for this broker is its JSON policy ([`crate::policy`]), not Rego;
//! - `GET /kbs/v0/resource-policy` → `{"policy": "<base64 of the JSON policy>"}`.
//!
//! Authentication is trustee's: `Authorization: Bearer <JWT>` signed with
//! EdDSA (Ed25519) by a key whose public half the operator configured
//! ([`AdminKeys`], `ironclaw broker serve --admin-public-key FILE`). The token's
//! signature must verify under one of them, `exp` must be present and not
//! passed, `nbf`/`iat` not in the future (60 s leeway for clock skew). With no
//! key configured the HTTP admin API refuses everything. Resource values are
//! never readable through it: a secret leaves the broker only encrypted to an
//! attested TEE.
//!
//! Everything here is untrusted input: nothing of the token is used before its
//! signature verifies, and every refusal is audited.

use std::path::Path;

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use ed25519_dalek::{Signature, VerifyingKey};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 4): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes: 0 unused bits + key) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why an admin request was refused, or an admin key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminAuthError {
    /// No admin public key is configured.
    #[error("the HTTP admin API is disabled: no admin public key is configured (ironclaw broker serve --admin-public-key FILE)")]
    Disabled,
    /// No `Authorization: Bearer` header.
    #[error("admin request without `Authorization: Bearer <admin token>`")]
    MissingToken,
    /// The token is not a compact JWS with an EdDSA header.
    #[error("admin token: {0}")]
    Malformed(String),
    /// The signature verifies under no configured key.
    #[error("admin token: the signature verifies under no configured admin key")]
    BadSignature,
    /// `exp` has passed (or is missing).
    #[error("admin token: {0}")]
    Expired(String),
    /// An admin public key file could not be used.
    #[error("admin public key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The Ed25519 public keys allowed to administer the broker over HTTPS.
#[derive(Debug, Clone, Default)]
pub struct AdminKeys {
    keys: Vec<VerifyingKey>,
}

impl AdminKeys {
    /// No key: the HTTP admin API is disabled.
    pub fn none() -> Self {
        AdminKeys::default()
    }

    /// The given keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        AdminKeys { keys }
    }

    /// True when at least one key is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Loads an Ed25519 public key from a PEM `PUBLIC KEY` file (what
    /// `openssl genpkey -algorithm ed25519` + `openssl pkey -pubout` write, and
    /// trustee's `auth_public_key`).
    pub fn load_pem(path: &Path) -> Result<VerifyingKey, AdminAuthError> {
        let err = |reason: String| AdminAuthError::Key {
            path: path.display().to_string(),
            reason,
        };
        let der = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_file(path)
            .map_err(|e| err(format!("not a PEM PUBLIC KEY: {e}")))?;
        parse_spki(der.as_ref()).map_err(err)
    }

    /// Verifies `token` (the Bearer credential); `now` is Unix seconds.
    pub fn verify(&self, token: &str, now: u64) -> Result<(), AdminAuthError> {
        if self.keys.is_empty() {
            return Err(AdminAuthError::Disabled);
        }
        let bad = |s: &str| AdminAuthError::Malformed(s.into());
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a compact JWS (three dot-separated parts)"));
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("header is not base64url JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
            return Err(bad("header `alg` must be \"EdDSA\""));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad("signature is not base64url"))?;
        let sig = Signature::from_slice(&sig).map_err(|_| bad("signature is not 64 bytes"))?;
        let signed = token
            .get(..h.len() + 1 + c.len())
            .ok_or_else(|| bad("token"))?;
        if !self
            .keys
            .iter()
            .any(|k| k.verify_strict(signed.as_bytes(), &sig).is_ok())
        {
            return Err(AdminAuthError::BadSignature);
        }
        // Only now is the payload read.
        let claims: Value = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("claims are not base64url JSON"))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AdminAuthError::Expired("no `exp` claim".into()))?;
        if exp.saturating_add(LEEWAY_SECS) < now {
            return Err(AdminAuthError::Expired(format!(
                "expired at {exp} (now {now})"
            )));
        }
        for claim in ["nbf", "iat"] {
            if let Some(t) = claims.get(claim).and_then(Value::as_u64) {
                if t > now.saturating_add(LEEWAY_SECS) {
                    return Err(AdminAuthError::Expired(format!(
                        "`{claim}` {t} is in the future (now {now})"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn parse_spki(der: &[u8]) -> Result<VerifyingKey, String> {
    let key = der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or("not an Ed25519 SubjectPublicKeyInfo (RFC 8410)")?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| format!("{}-byte Ed25519 key, expected 32", key.len()))?;
    VerifyingKey::from_bytes(&key).map_err(|e| format!("not a valid Ed25519 point: {e}"))
}

/// The policy carried by `POST /kbs/v0/resource-policy`: `{"policy": base64}`
/// whose decoded bytes are this broker's JSON policy.
pub fn policy_from_body(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let b64 = v
        .get("policy")
        .and_then(Value::as_str)
        .ok_or("body: field `policy` (base64) is missing or not a string")?;
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
        .map_err(|e| format!("field `policy`: not base64: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "field `policy`: not an IronClaw JSON policy (Rego policies are not supported): {e}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn token(key: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    #[test]
    fn tokens_are_checked_signature_first_then_time() {
        let admin = SigningKey::from_bytes(&[3u8; 32]);
        let other = SigningKey::from_bytes(&[4u8; 32]);
        let keys = AdminKeys::new(vec![admin.verifying_key()]);
        let h = r#"{"alg":"EdDSA","typ":"JWT"}"#;
        let now = 1_000_000;
        let good = token(&admin, h, r#"{"iat":1000000,"nbf":1000000,"exp":1007200}"#);
        assert_eq!(keys.verify(&good, now), Ok(()));
        assert_eq!(
            AdminKeys::none().verify(&good, now),
            Err(AdminAuthError::Disabled)
        );
        assert_eq!(
            keys.verify(&token(&other, h, r#"{"exp":1007200}"#), now),
            Err(AdminAuthError::BadSignature)
        );
        assert!(matches!(
            keys.verify(&token(&admin, h, r#"{"exp":999000}"#), now),
            Err(AdminAuthError::Expired(_))
        ));
        assert!(matches!(
            keys.verify(&token(&admin, h, r#"{"iat":1000000}"#), now),
            Err(AdminAuthError::Expired(_))
        ));
        assert!(matches!(
            keys.verify(&token(&admin, h, r#"{"nbf":1009999,"exp":1019999}"#), now),
            Err(AdminAuthError::Expired(_))
        ));
        assert!(matches!(
            keys.verify(
                &token(&admin, r#"{"alg":"none"}"#, r#"{"exp":1007200}"#),
                now
            ),
            Err(AdminAuthError::Malformed(_))
        ));
        // A claims part edited after signing.
        let (head, rest) = good.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let edited = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(r#"{"exp":9999999999}"#)
        );
        assert_eq!(keys.verify(&edited, now), Err(AdminAuthError::BadSignature));
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(keys.verify(junk, now).is_err(), "{junk}");
        }
    }

    #[test]
    fn ed25519_spki_is_parsed_and_others_refused() {
        let k = SigningKey::from_bytes(&[5u8; 32]).verifying_key();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(k.as_bytes());
        assert_eq!(parse_spki(&der), Ok(k));
        assert!(parse_spki(&der[..40]).is_err());
        let mut p256ish = der.clone();
        p256ish[8] = 0x71;
        assert!(parse_spki(&p256ish).is_err());
    }

    #[test]
    fn policy_body_is_base64_json() {
        let p = serde_json::json!({"rules": []});
        let body = serde_json::json!({"policy": STANDARD.encode(p.to_string())}).to_string();
        assert_eq!(policy_from_body(body.as_bytes()), Ok(p));
        let rego =
            serde_json::json!({"policy": STANDARD.encode("package policy\ndefault allow = true")})
                .to_string();
        assert!(policy_from_body(rego.as_bytes())
            .unwrap_err()
            .contains("Rego"));
        assert!(policy_from_body(b"{}").unwrap_err().contains("`policy`"));
    }
}
