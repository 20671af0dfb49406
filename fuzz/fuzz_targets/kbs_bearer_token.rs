//! `Authorization: Bearer <attestation token>` on `/kbs/v0/resource`: the header,
//! the compact JWS, and (past a genuine signature) the token's claims and the
//! tee-pubkey they carry. Never a panic; nothing verifies unless this broker's
//! key signed it.
#![no_main]
use std::sync::OnceLock;

use ironclaw_broker::{kbs, tee_key, token};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::SigningKey;

fn key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::from_slice(&[7u8; 32]).expect("key"))
}

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if sel & 1 == 0 {
        // Untrusted bytes as the header / token: must never verify.
        if let Ok(t) = kbs::bearer_token(&text) {
            assert!(token::verify(key().verifying_key(), t, NOW).is_err());
        }
        assert!(token::verify(key().verifying_key(), &text, NOW).is_err());
    } else if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) {
        // Arbitrary claims under a genuine signature: strict claim parsing.
        let t = token::sign(key(), &claims);
        if let Ok(c) = token::verify(key().verifying_key(), &t, NOW) {
            let _ = c.evidence_claims();
            let _ = tee_key::parse_json(&c.tee_pubkey);
        }
    }
});
