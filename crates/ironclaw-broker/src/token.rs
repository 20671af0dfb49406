//! The attestation token: a JWT (RFC 7519) signed ES256 (RFC 7515/7518) with the
//! broker's token key (`STATE/token.key`). Composed from p256's ECDSA: a JWS
//! compact serialization is `b64(header).b64(claims).b64(r || s)`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use p256::ecdsa::{signature::Signer, signature::Verifier, Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};

/// Signs `claims` as a compact JWS.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig: Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
}

/// Verifies a compact JWS from [`sign`] and returns its claims.
pub fn verify(key: &VerifyingKey, token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    if header.get("alg")? != "ES256" {
        return None;
    }
    let sig = Signature::from_slice(&B64.decode(s).ok()?).ok()?;
    key.verify(format!("{h}.{c}").as_bytes(), &sig).ok()?;
    serde_json::from_slice(&B64.decode(c).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let k = SigningKey::from_slice(&[3u8; 32]).unwrap();
        let t = sign(&k, &json!({"tee": "kvm"}));
        assert_eq!(verify(k.verifying_key(), &t).unwrap()["tee"], "kvm");
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = B64.encode(json!({"tee": "snp"}).to_string());
        assert!(verify(k.verifying_key(), &parts.join(".")).is_none());
    }
}
