//! The JWE composition checked against RFC test vectors and against itself.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use getrandom::SysRng;
use ironclaw_enclave::jwe::{self, EnclaveKey, JweError};
use kbs_types::{Response, TeePubKey};
use p256::{elliptic_curve::ecdh, PublicKey, SecretKey};
use rand_core::UnwrapErr;

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

fn ec_public(x: &str, y: &str) -> PublicKey {
    let mut sec1 = vec![4u8];
    sec1.extend(B64.decode(x).unwrap());
    sec1.extend(B64.decode(y).unwrap());
    PublicKey::from_sec1_bytes(&sec1).unwrap()
}

/// RFC 7518 Appendix C: ECDH-ES key agreement + Concat KDF.
#[test]
fn rfc7518_appendix_c_ecdh_es_concat_kdf() {
    let alice = SecretKey::from_slice(
        &B64.decode("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo")
            .unwrap(),
    )
    .unwrap();
    let bob_pub = ec_public(
        "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
        "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
    );
    let z = ecdh::diffie_hellman(alice.to_nonzero_scalar(), bob_pub.as_affine());
    let key = jwe::concat_kdf_bits(
        z.raw_secret_bytes().as_slice(),
        "A128GCM",
        b"Alice",
        b"Bob",
        128,
    );
    assert_eq!(B64.encode(key), "VqqN6vgjbSBcIijNcacQGg");
}

/// RFC 3394 4.6: 256-bit key data wrapped with a 256-bit KEK (the A256KW step).
#[test]
fn rfc3394_a256kw_vector() {
    use aes_kw::{KeyInit, KwAes256};
    let kek =
        hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").unwrap();
    let data =
        hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F").unwrap();
    let kw = KwAes256::new_from_slice(&kek).unwrap();
    let mut out = [0u8; 40];
    let wrapped = kw.wrap_key(&data, &mut out).unwrap();
    assert_eq!(
        hex::encode_upper(wrapped),
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    );
}

/// RFC 7516 Appendix A.1: the A256GCM content layer with its AAD.
#[test]
fn rfc7516_appendix_a1_a256gcm_content() {
    let cek: [u8; 32] = [
        177, 161, 244, 128, 84, 143, 225, 115, 63, 180, 3, 255, 107, 154, 212, 246, 138, 7, 110,
        91, 112, 46, 34, 105, 47, 130, 203, 46, 122, 234, 64, 252,
    ];
    let iv: [u8; 12] = [227, 197, 117, 252, 2, 219, 233, 68, 180, 225, 77, 219];
    let aad = b"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ";
    let ct = B64
        .decode(
            "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A",
        )
        .unwrap();
    let tag: [u8; 16] = B64
        .decode("XFBoMYUZodetZdvTiFvSkQ")
        .unwrap()
        .try_into()
        .unwrap();
    let pt = jwe::gcm_decrypt(&cek, &iv, aad, &ct, &tag).unwrap();
    assert_eq!(
        pt,
        b"The true sign of intelligence is not knowledge but imagination."
    );
}

#[test]
fn encrypt_then_decrypt_through_the_wire_format() {
    let key = EnclaveKey::generate(&mut rng());
    let jwk = key.tee_pubkey();
    let recipient = jwe::parse_tee_pubkey(&jwk).unwrap();
    let resp = jwe::encrypt(&recipient, b"api-key-123", &mut rng()).unwrap();
    let wire = serde_json::to_string(&resp).unwrap();
    let back: Response = serde_json::from_str(&wire).unwrap();
    assert_eq!(back.protected.alg, "ECDH-ES+A256KW");
    assert_eq!(back.protected.enc, "A256GCM");
    assert_eq!(key.decrypt(&back).unwrap(), b"api-key-123");

    // Another enclave's key cannot unwrap the CEK.
    let other = EnclaveKey::generate(&mut rng());
    assert_eq!(other.decrypt(&back), Err(JweError::KeyUnwrap));
}

#[test]
fn tampering_with_any_part_is_detected() {
    let key = EnclaveKey::generate(&mut rng());
    let recipient = jwe::parse_tee_pubkey(&key.tee_pubkey()).unwrap();
    let resp = jwe::encrypt(&recipient, b"secret", &mut rng()).unwrap();

    let mut r = resp.clone();
    r.ciphertext[0] ^= 1;
    assert_eq!(key.decrypt(&r), Err(JweError::Decrypt));
    let mut r = resp.clone();
    r.tag[15] ^= 1;
    assert_eq!(key.decrypt(&r), Err(JweError::Decrypt));
    let mut r = resp.clone();
    r.iv[0] ^= 1;
    assert_eq!(key.decrypt(&r), Err(JweError::Decrypt));
    let mut r = resp.clone();
    r.encrypted_key[3] ^= 1;
    assert_eq!(key.decrypt(&r), Err(JweError::KeyUnwrap));
    // A header member added after encryption changes the AAD.
    let mut r = resp.clone();
    r.protected
        .other_fields
        .insert("kid".into(), serde_json::Value::String("x".into()));
    assert_eq!(key.decrypt(&r), Err(JweError::Decrypt));
    let mut r = resp.clone();
    r.protected.enc = "A128GCM".into();
    assert!(matches!(
        key.decrypt(&r),
        Err(JweError::UnsupportedValue { field: "enc", .. })
    ));
    let mut r = resp;
    r.protected.other_fields.remove("epk");
    assert_eq!(key.decrypt(&r), Err(JweError::MissingEpk));
}

#[test]
fn malformed_jwks_are_refused_with_the_field() {
    let good = EnclaveKey::generate(&mut rng()).tee_pubkey();
    let TeePubKey::EC { x, y, .. } = good.clone() else {
        panic!("EC key expected")
    };
    let cases = [
        (
            TeePubKey::RSA {
                alg: "RSA1_5".into(),
                k_mod: "AQAB".into(),
                k_exp: "AQAB".into(),
            },
            "RSA",
        ),
        (
            TeePubKey::EC {
                crv: "P-384".into(),
                alg: jwe::ALG.into(),
                x: x.clone(),
                y: y.clone(),
            },
            "crv",
        ),
        (
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: "ECDH-ES".into(),
                x: x.clone(),
                y: y.clone(),
            },
            "alg",
        ),
        (
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: jwe::ALG.into(),
                x: "!!".into(),
                y: y.clone(),
            },
            "x",
        ),
        (
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: jwe::ALG.into(),
                x: B64.encode([1u8; 31]),
                y: y.clone(),
            },
            "x",
        ),
        (
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: jwe::ALG.into(),
                x: x.clone(),
                y: B64.encode([7u8; 32]),
            },
            "not a valid P-256",
        ),
    ];
    for (jwk, expect) in cases {
        let err = jwe::parse_tee_pubkey(&jwk).unwrap_err();
        assert!(
            err.to_string().contains(expect),
            "{err} does not mention {expect}"
        );
    }
    assert!(jwe::parse_tee_pubkey(&good).is_ok());
}

/// The AAD is the `protected` member as sent: a sender whose JSON serializer orders the
/// header members differently (insertion order, as serde_json's `preserve_order` does)
/// must still decrypt; re-serializing the parsed header would give other bytes.
#[test]
fn decrypt_wire_uses_the_header_bytes_as_sent() {
    use aes_gcm::{aead::AeadInOut, Aes256Gcm, KeyInit};
    use aes_kw::KwAes256;
    use p256::elliptic_curve::Generate;

    let key = EnclaveKey::generate(&mut rng());
    let recipient = jwe::parse_tee_pubkey(&key.tee_pubkey()).unwrap();
    let eph = SecretKey::generate_from_rng(&mut rng());
    let z = ecdh::diffie_hellman(eph.to_nonzero_scalar(), recipient.as_affine());
    let kek = jwe::concat_kdf_256(z.raw_secret_bytes().as_slice(), "ECDH-ES+A256KW", &[], &[]);
    let cek = [9u8; 32];
    let mut wrapped = [0u8; 40];
    KwAes256::new_from_slice(kek.as_ref())
        .unwrap()
        .wrap_key(&cek, &mut wrapped)
        .unwrap();
    let sec1 = eph.public_key().to_sec1_bytes();
    let header = format!(
        r#"{{"enc":"A256GCM","alg":"ECDH-ES+A256KW","epk":{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}}}"#,
        B64.encode(&sec1[1..33]),
        B64.encode(&sec1[33..])
    );
    let protected = B64.encode(header.as_bytes());
    let iv = [1u8; 12];
    let mut ct = b"wire order".to_vec();
    let tag = Aes256Gcm::new_from_slice(&cek)
        .unwrap()
        .encrypt_inout_detached(&iv.into(), protected.as_bytes(), ct.as_mut_slice().into())
        .unwrap();
    let body = serde_json::json!({
        "protected": protected,
        "encrypted_key": B64.encode(wrapped),
        "iv": B64.encode(iv),
        "ciphertext": B64.encode(&ct),
        "tag": B64.encode(tag),
    })
    .to_string();
    assert_eq!(key.decrypt_wire(body.as_bytes()).unwrap(), b"wire order");
    let parsed: Response = serde_json::from_str(&body).unwrap();
    assert_eq!(key.decrypt(&parsed), Err(JweError::Decrypt));
}

/// The protected header goes out exactly as trustee's KBS writes it: `alg`, `enc`,
/// then `epk` with its members sorted (`crv`, `kty`, `x`, `y`). KBS clients
/// (guest-components' kbs_protocol) rebuild the header from its parsed form, with
/// serde_json's sorted maps, and use that as the AAD: any other member order fails
/// their tag check even though the CEK unwraps.
#[test]
fn protected_header_bytes_are_trustees_sorted_form() {
    let key = EnclaveKey::generate(&mut rng());
    let recipient = jwe::parse_tee_pubkey(&key.tee_pubkey()).unwrap();
    let resp = jwe::encrypt(&recipient, b"sorted", &mut rng()).unwrap();
    let wire: serde_json::Value = serde_json::to_value(&resp).unwrap();
    let header = B64
        .decode(wire["protected"].as_str().unwrap())
        .map(String::from_utf8)
        .unwrap()
        .unwrap();
    let epk = &resp.protected.other_fields["epk"];
    let expected = format!(
        r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}}}"#,
        epk["x"].as_str().unwrap(),
        epk["y"].as_str().unwrap()
    );
    assert_eq!(header, expected);
    // Both ways of deriving the AAD agree, so both decrypt.
    assert_eq!(
        key.decrypt_wire(wire.to_string().as_bytes()).unwrap(),
        b"sorted"
    );
    let parsed: Response = serde_json::from_value(wire).unwrap();
    assert_eq!(key.decrypt(&parsed).unwrap(), b"sorted");
}

#[test]
fn sort_keys_orders_every_level() {
    let mut inner = serde_json::Map::new();
    inner.insert("z".into(), 1.into());
    inner.insert("a".into(), serde_json::json!([{"y": 1, "b": 2}]));
    let mut outer = serde_json::Map::new();
    outer.insert("m".into(), serde_json::Value::Object(inner));
    outer.insert("c".into(), 3.into());
    let sorted = jwe::sort_keys(serde_json::Value::Object(outer));
    assert_eq!(
        sorted.to_string(),
        r#"{"c":3,"m":{"a":[{"b":2,"y":1}],"z":1}}"#
    );
    let h = jwe::protected_header("A", "B", {
        let mut m = serde_json::Map::new();
        m.insert("zz".into(), 1.into());
        m.insert("apu".into(), 2.into());
        m
    });
    assert_eq!(
        serde_json::to_string(&h).unwrap(),
        r#"{"alg":"A","enc":"B","apu":2,"zz":1}"#
    );
}
