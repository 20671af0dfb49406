//! The `tee-pubkey` JWK of `/attest` (EC P-256, P-521 and RSA) and the resource JWE
//! encrypted to whatever it accepts: never a panic; an accepted RSA key is
//! always 2048..=8192 bits.
#![no_main]
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ironclaw_broker::tee_key::{self, TeeKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const ALGS: [&str; 5] = [
    "RSA-OAEP-256",
    "RSA-OAEP",
    "RSA1_5",
    "RSA-OAEP-384",
    "ECDH-ES+A256KW",
];

fn check(jwk: &Value) {
    if let Ok(key) = tee_key::parse_json(jwk) {
        if let TeeKey::Rsa { key: k, .. } = &key {
            use rsa::traits::PublicKeyParts;
            let bits = k.n().bit_width() as usize;
            assert!((tee_key::RSA_MIN_BITS..=tee_key::RSA_MAX_BITS).contains(&bits));
        }
        let _ = key.encrypt(b"fuzz", &mut ironclaw_broker::rng());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let alg = ALGS[usize::from(sel >> 4) % ALGS.len()];
    match sel % 3 {
        // Any JSON.
        0 => {
            if let Ok(v) = serde_json::from_slice::<Value>(rest) {
                check(&v);
            }
        }
        // RSA with raw modulus / exponent bytes (valid base64url, so the size,
        // parity and exponent checks are reached).
        1 => {
            let split = rest
                .len()
                .saturating_sub(usize::from(sel & 0x7))
                .max(rest.len() / 2);
            let (n, e) = rest.split_at(split.min(rest.len()));
            check(&json!({"kty": "RSA", "alg": alg, "n": B64.encode(n), "e": B64.encode(e)}));
        }
        // EC with raw coordinates, P-256 or P-521.
        _ => {
            let crv = if sel & 0x8 != 0 { "P-521" } else { "P-256" };
            let (x, y) = rest.split_at(rest.len() / 2);
            check(
                &json!({"kty": "EC", "crv": crv, "alg": alg, "x": B64.encode(x), "y": B64.encode(y)}),
            );
        }
    }
});
