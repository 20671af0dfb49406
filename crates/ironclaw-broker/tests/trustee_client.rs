//! The broker against what Confidential Containers guests (guest-components'
//! kbs_protocol client, trustee's clients) send, over real HTTPS on 127.0.0.1:
//! RSA tee-pubkeys, the attestation token as `Authorization: Bearer`, and the
//! audit log's rotation under that traffic.
//!
//! The RSA client here does what guest-components does with its RSA tee key:
//! it sends `{"kty":"RSA","alg":..,"n":..,"e":..}` in runtime-data, then decrypts
//! the resource `Response` by unwrapping the CEK with its private key and
//! AES-256-GCM with AAD = the re-serialized protected header.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::audit::{AuditLimits, AuditRotation};
use ironclaw_broker::client::{HttpReply, KbsHttpClient};
use ironclaw_broker::http::{self, ServerHandle};
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClient;
use ironclaw_enclave::runtime_data::report_data;
use ironclaw_enclave::tee::TeeKind;
use ironclaw_verifier::kvm::{self, KvmClaims, LaunchValue};
use kbs_types::{Response, TeePubKey};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const MEASUREMENT: [u8; 48] = [0x5a; 48];
const SECRET: &[u8] = b"sk-live-123";

struct Env {
    // Dropped first: the server stops before its state directory is removed.
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
    platform: p384::ecdsa::SigningKey,
}

impl Env {
    fn with(ttl: Duration, audit: AuditRotation) -> Env {
        Env::with_limits(ttl, audit, AuditLimits::default())
    }

    fn with_limits(ttl: Duration, audit: AuditRotation, audit_limits: AuditLimits) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(
            Broker::open(
                dir.path(),
                BrokerConfig {
                    session_ttl: ttl,
                    audit,
                    audit_limits,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = http::start(broker, "127.0.0.1:0", tls).unwrap();
        let platform = p384::ecdsa::SigningKey::from_slice(&[7u8; 48]).unwrap();
        let env = Env {
            server: Some(server),
            dir,
            platform,
        };
        env.admin(AdminRequest::PolicySet {
            policy: json!({
                "trusted_platform_keys": [kvm::public_jwk(env.platform.verifying_key())],
                "rules": [{"resources": ["default/key/api"], "tee": ["kvm"],
                           "measurements": [hex::encode(MEASUREMENT)]}],
            }),
        });
        for (path, value) in [("default/key/api", SECRET), ("default/key/other", b"x")] {
            env.admin(AdminRequest::SecretPut {
                path: path.into(),
                value_b64: base64::engine::general_purpose::STANDARD.encode(value),
            });
        }
        env
    }

    fn new() -> Env {
        Env::with(Duration::from_secs(60), AuditRotation::default())
    }

    fn admin(&self, req: AdminRequest) {
        let r = admin::call(self.dir.path(), req).unwrap();
        assert!(r.ok, "admin: {:?}", r.error);
    }

    fn client(&self) -> KbsHttpClient {
        let roots = ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        read_jsonl(&self.dir.path().join("audit.jsonl"))
    }

    fn last_line(&self) -> Value {
        self.audit().pop().expect("an audit line")
    }

    fn token_key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token.key")).unwrap()
    }
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {l:?}: {e}")))
        .collect()
}

fn evidence(platform: &p384::ecdsa::SigningKey, rd: [u8; 64]) -> Value {
    let mut launch_config = BTreeMap::new();
    launch_config.insert("memory_mib".to_string(), LaunchValue::Uint(64));
    let claims = KvmClaims {
        measurement: MEASUREMENT,
        report_data: rd,
        debug: false,
        launch_config,
    };
    json!({ "cose_sign1": B64.encode(kvm::sign(&claims, platform).unwrap()) })
}

/// (status, error type without the broker's prefix) of a refusal.
fn refusal(r: &HttpReply) -> (u16, String) {
    let info: kbs_types::ErrorInformation = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{} {:?}: {e}", r.status, String::from_utf8_lossy(&r.body)));
    (
        r.status,
        info.error_type
            .trim_start_matches(ironclaw_broker::error::ERROR_TYPE_PREFIX)
            .to_string(),
    )
}

/// One 2048-bit RSA key for all tests (generation is the slow part).
fn rsa_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::PrivateKey::new(&mut ironclaw_broker::rng(), 2048).unwrap())
}

fn be_bytes(v: &rsa::BoxedUint) -> Vec<u8> {
    let b = v.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

fn rsa_jwk(key: &rsa::PrivateKey, alg: &str) -> TeePubKey {
    TeePubKey::RSA {
        alg: alg.into(),
        k_mod: B64.encode(be_bytes(key.n())),
        k_exp: B64.encode(be_bytes(key.e())),
    }
}

/// A guest-components-like client with an arbitrary tee-pubkey.
struct TrusteeClient {
    http: KbsHttpClient,
    cookie: Option<String>,
    token: Option<String>,
}

impl TrusteeClient {
    fn new(env: &Env) -> Self {
        TrusteeClient {
            http: env.client(),
            cookie: None,
            token: None,
        }
    }

    /// auth + attest with `jwk` bound into the evidence; the attest reply.
    fn attest(&mut self, env: &Env, jwk: &TeePubKey) -> HttpReply {
        let r = self
            .http
            .request(
                "POST",
                "/kbs/v0/auth",
                None,
                br#"{"version":"0.4.0","tee":"kvm","extra-params":{}}"#,
            )
            .unwrap();
        assert_eq!(r.status, 200);
        let cookie = r.set_cookie.unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let challenge: kbs_types::Challenge = serde_json::from_slice(&r.body).unwrap();
        let rd = report_data(&challenge.nonce, jwk, "");
        let body = json!({
            "runtime-data": {"nonce": challenge.nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": evidence(&env.platform, rd), "additional_evidence": ""},
        });
        let r = self
            .http
            .request(
                "POST",
                "/kbs/v0/attest",
                Some(&cookie),
                &serde_json::to_vec(&body).unwrap(),
            )
            .unwrap();
        self.cookie = Some(cookie);
        if r.status == 200 {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            self.token = Some(v["token"].as_str().unwrap().to_string());
        }
        r
    }

    fn get_with_cookie(&mut self, path: &str) -> HttpReply {
        self.http
            .request("GET", path, self.cookie.as_deref(), b"")
            .unwrap()
    }
}

/// GET `path` on a fresh connection with only `Authorization: Bearer <token>`.
fn get_with_bearer(env: &Env, path: &str, token: &str) -> HttpReply {
    let auth = format!("Bearer {token}");
    env.client()
        .request_with_headers("GET", path, None, &[("Authorization", &auth)], b"")
        .unwrap()
}

/// What guest-components does with a `Response` for its RSA key.
fn rsa_decrypt(key: &rsa::PrivateKey, body: &[u8]) -> Vec<u8> {
    let wire: Value = serde_json::from_slice(body).unwrap();
    let resp: Response = serde_json::from_slice(body).unwrap();
    let aad = resp.protected.generate_aad().unwrap();
    // The header as sent is the header as re-serialized: clients that use either
    // (RFC 7516 raw member, or kbs-types' generate_aad) agree on the AAD.
    assert_eq!(wire["protected"].as_str().unwrap().as_bytes(), &aad[..]);
    assert_eq!(resp.protected.enc, "A256GCM");
    assert!(resp.protected.other_fields.is_empty(), "no epk for RSA");
    let mut rng = ironclaw_broker::rng();
    let cek = match resp.protected.alg.as_str() {
        "RSA-OAEP-256" => key.decrypt_blinded(
            &mut rng,
            rsa::Oaep::<sha2::Sha256>::new(),
            &resp.encrypted_key,
        ),
        "RSA-OAEP" => key.decrypt_blinded(
            &mut rng,
            rsa::Oaep::<sha1::Sha1>::new(),
            &resp.encrypted_key,
        ),
        "RSA1_5" => key.decrypt_blinded(&mut rng, rsa::Pkcs1v15Encrypt, &resp.encrypted_key),
        other => panic!("alg {other}"),
    }
    .unwrap();
    assert_eq!(cek.len(), 32);
    let iv: [u8; 12] = resp.iv.as_slice().try_into().unwrap();
    let tag: [u8; 16] = resp.tag.as_slice().try_into().unwrap();
    ironclaw_enclave::jwe::gcm_decrypt(&cek, &iv, &aad, &resp.ciphertext, &tag).unwrap()
}

#[test]
fn rsa_client_gets_a_resource_it_decrypts_for_every_rsa_alg() {
    let env = Env::new();
    let key = rsa_key();
    for alg in ["RSA-OAEP-256", "RSA-OAEP", "RSA1_5"] {
        let mut c = TrusteeClient::new(&env);
        let r = c.attest(&env, &rsa_jwk(key, alg));
        assert_eq!(r.status, 200, "{alg}: {}", String::from_utf8_lossy(&r.body));
        let r = c.get_with_cookie("/kbs/v0/resource/default/key/api");
        assert_eq!(r.status, 200, "{alg}: {}", String::from_utf8_lossy(&r.body));
        let resp: Response = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(resp.protected.alg, alg);
        assert_eq!(rsa_decrypt(key, &r.body), SECRET, "{alg}");
        // Another RSA key cannot open it.
        let line = env.last_line();
        assert_eq!(
            (
                line["event"].as_str(),
                line["alg"].as_str(),
                line["credential"].as_str()
            ),
            (Some("release"), Some(alg), Some("cookie"))
        );
    }
}

#[test]
fn rsa_keys_that_are_weak_malformed_or_unknown_are_refused_and_audited() {
    let env = Env::new();
    let good = rsa_jwk(rsa_key(), "RSA-OAEP-256");
    let TeePubKey::RSA { k_exp, k_mod, .. } = good.clone() else {
        unreachable!()
    };
    // A real 1024-bit key: well formed, too small.
    let small = rsa::PrivateKey::new(&mut ironclaw_broker::rng(), 1024).unwrap();
    let cases = [
        (
            rsa_jwk(&small, "RSA-OAEP-256"),
            "WeakTeePubKey",
            "field `n` is a 1024-bit modulus",
        ),
        (
            TeePubKey::RSA {
                alg: "RSA-OAEP-256".into(),
                k_mod: format!("{}+/=", &k_mod[..40]),
                k_exp: k_exp.clone(),
            },
            "MalformedTeePubKey",
            "field `n`: not base64url",
        ),
        (
            TeePubKey::RSA {
                alg: "RSA-OAEP-256".into(),
                k_mod: String::new(),
                k_exp: k_exp.clone(),
            },
            "MalformedTeePubKey",
            "field `n`: empty",
        ),
        (
            TeePubKey::RSA {
                alg: "RSA-OAEP-256".into(),
                k_mod: k_mod.clone(),
                k_exp: B64.encode([2u8]),
            },
            "MalformedTeePubKey",
            "field `e`",
        ),
        (
            TeePubKey::RSA {
                alg: "RSA-OAEP-512".into(),
                k_mod,
                k_exp,
            },
            "UnsupportedTeePubKey",
            "field `alg` is \"RSA-OAEP-512\"",
        ),
    ];
    for (jwk, error, reason) in cases {
        let mut c = TrusteeClient::new(&env);
        let r = c.attest(&env, &jwk);
        assert_eq!(refusal(&r), (401, error.to_string()), "{jwk:?}");
        let line = env.last_line();
        assert_eq!(line["event"], "refusal");
        assert_eq!(line["endpoint"], "attest");
        assert_eq!(line["error"], error);
        assert!(
            line["reason"].as_str().unwrap().contains(reason),
            "{reason:?} not in {line}"
        );
        // The session is spent: no resource for it.
        let r = c.get_with_cookie("/kbs/v0/resource/default/key/api");
        assert_eq!(refusal(&r), (401, "NotAttested".into()));
    }
}

#[test]
fn bearer_token_fetches_the_resource_without_a_cookie() {
    let env = Env::new();
    // IronClaw's own EC client.
    let mut http = env.client();
    let mut kbs = KbsClient::new(TeeKind::KVM, &mut ironclaw_broker::rng());
    let r = http
        .request("POST", "/kbs/v0/auth", None, &kbs.auth_request().unwrap())
        .unwrap();
    let rd = kbs
        .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
        .unwrap();
    let body = kbs.attest_request(evidence(&env.platform, rd)).unwrap();
    let r = http
        .request(
            "POST",
            "/kbs/v0/attest",
            kbs.cookie_header().as_deref(),
            &body,
        )
        .unwrap();
    kbs.on_attest_response(r.status, &r.body).unwrap();
    let token = kbs.token().unwrap().to_string();
    let r = get_with_bearer(&env, "/kbs/v0/resource/default/key/api", &token);
    assert_eq!(kbs.on_resource_response(r.status, &r.body).unwrap(), SECRET);
    let line = env.last_line();
    assert_eq!(
        (line["event"].as_str(), line["credential"].as_str()),
        (Some("release"), Some("bearer"))
    );
    assert!(line.get("session").is_none());
    assert_eq!(line["measurement"], hex::encode(MEASUREMENT));

    // A trustee RSA client: the token carries its RSA key.
    let mut c = TrusteeClient::new(&env);
    assert_eq!(
        c.attest(&env, &rsa_jwk(rsa_key(), "RSA-OAEP-256")).status,
        200
    );
    let token = c.token.clone().unwrap();
    let r = get_with_bearer(&env, "/kbs/v0/resource/default/key/api", &token);
    assert_eq!(r.status, 200);
    assert_eq!(rsa_decrypt(rsa_key(), &r.body), SECRET);

    // The token's claims are what a Bearer request is judged by, under the
    // current policy: a policy change revokes what it no longer grants.
    env.admin(AdminRequest::PolicySet {
        policy: json!({
            "trusted_platform_keys": [kvm::public_jwk(env.platform.verifying_key())],
            "rules": [{"resources": ["default/key/api"], "tee": ["kvm"], "measurements": ["00"]}],
        }),
    });
    let r = get_with_bearer(&env, "/kbs/v0/resource/default/key/api", &token);
    assert_eq!(refusal(&r), (403, "ResourceNotGranted".into()));
}

/// A compact JWS over `header` and `claims` signed by `key`.
fn jws(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer;
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

fn decode_part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

#[test]
fn bad_bearer_tokens_are_refused_each_with_its_reason_and_audited() {
    let env = Env::new();
    let mut c = TrusteeClient::new(&env);
    assert_eq!(
        c.attest(&env, &rsa_jwk(rsa_key(), "RSA-OAEP-256")).status,
        200
    );
    let token = c.token.clone().unwrap();
    let (header, claims) = (decode_part(&token, 0), decode_part(&token, 1));
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["tee"], "kvm");
    assert_eq!(claims["tee-pubkey"]["kty"], "RSA");

    let check = |token: &str, path: &str, want: (u16, &str), reason: &str| {
        let r = get_with_bearer(&env, path, token);
        assert_eq!(refusal(&r), (want.0, want.1.to_string()), "{token}");
        let line = env.last_line();
        assert_eq!(line["event"], "refusal");
        assert_eq!(line["credential"], "bearer");
        assert_eq!(line["error"], want.1);
        assert!(
            line["reason"].as_str().unwrap().contains(reason),
            "{reason:?} not in {line}"
        );
    };
    let api = "/kbs/v0/resource/default/key/api";

    // One flipped bit in the signature.
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    sig[10] ^= 0x01;
    let flipped = format!("{input}.{}", B64.encode(&sig));
    check(
        &flipped,
        api,
        (401, "TokenSignatureInvalid"),
        "does not verify",
    );

    // The same claims signed by another key, naming it (its own kid) ...
    let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let other_token = ironclaw_broker::token::sign(&other, &claims);
    check(
        &other_token,
        api,
        (401, "UnknownTokenKey"),
        "not this broker's token key",
    );
    // ... or impersonating the broker's kid.
    let forged = jws(&other, &header, &claims);
    check(
        &forged,
        api,
        (401, "TokenSignatureInvalid"),
        "does not verify",
    );
    // Claims edited after signing (another measurement).
    let mut edited = claims.clone();
    edited["measurement"] = json!(hex::encode([0u8; 48]));
    let spliced = format!(
        "{}.{}.{}",
        token.split('.').next().unwrap(),
        B64.encode(edited.to_string()),
        token.split('.').nth(2).unwrap()
    );
    check(
        &spliced,
        api,
        (401, "TokenSignatureInvalid"),
        "does not verify",
    );

    // Expired: signed by the broker's own key, exp in the past.
    let broker_key = {
        use p256::pkcs8::DecodePrivateKey;
        p256::ecdsa::SigningKey::from_pkcs8_pem(&env.token_key_pem()).unwrap()
    };
    let mut old = claims.clone();
    old["iat"] = json!(1_000_000);
    old["exp"] = json!(1_000_060);
    let expired = ironclaw_broker::token::sign(&broker_key, &old);
    check(&expired, api, (401, "TokenExpired"), "expired at 1000060");

    // A valid token for a resource the policy does not grant.
    check(
        &token,
        "/kbs/v0/resource/default/key/other",
        (403, "ResourceNotGranted"),
        "no rule grants default/key/other",
    );
    // Not a Bearer credential, or not a JWS.
    let r = env
        .client()
        .request_with_headers("GET", api, None, &[("Authorization", "Basic dTpw")], b"")
        .unwrap();
    assert_eq!(refusal(&r), (401, "MalformedToken".into()));
    check("abc.def", api, (401, "MalformedToken"), "attestation token");
    // The valid token still works: none of the above changed anything.
    let r = get_with_bearer(&env, api, &token);
    assert_eq!(rsa_decrypt(rsa_key(), &r.body), SECRET);
}

#[test]
fn expired_real_token_is_refused() {
    let env = Env::with(Duration::from_secs(1), AuditRotation::default());
    let mut c = TrusteeClient::new(&env);
    assert_eq!(
        c.attest(&env, &rsa_jwk(rsa_key(), "RSA-OAEP-256")).status,
        200
    );
    let token = c.token.clone().unwrap();
    // exp = iat + 1 s, whole seconds: 2.1 s later it has passed for sure.
    std::thread::sleep(Duration::from_millis(2100));
    let r = get_with_bearer(&env, "/kbs/v0/resource/default/key/api", &token);
    assert_eq!(refusal(&r), (401, "TokenExpired".into()));
    assert_eq!(env.last_line()["error"], "TokenExpired");
}

#[test]
fn audit_log_rotates_by_size_without_losing_or_splitting_lines() {
    const MAX: u64 = 2048;
    // Refusals of unauthenticated requests are rate-limited in the audit log
    // (tests/floods.rs); this test is about rotation, so the limit is lifted.
    let unlimited = AuditLimits {
        per_peer_burst: 1e9,
        global_burst: 1e9,
        ..AuditLimits::default()
    };
    let env = Env::with_limits(
        Duration::from_secs(60),
        AuditRotation {
            max_bytes: MAX,
            keep: 3,
        },
        unlimited,
    );
    let mut c = env.client();
    const N: usize = 200;
    for i in 0..N {
        // Refused (no credential), each with a numbered resource in its audit line.
        let r = c
            .request("GET", &format!("/kbs/v0/resource/seq/n/{i}"), None, b"")
            .unwrap();
        assert_eq!(r.status, 401);
    }
    let dir = env.dir.path();
    let live = dir.join("audit.jsonl");
    let rotated: Vec<_> = (1..=3)
        .map(|n| dir.join(format!("audit.jsonl.{n}")))
        .collect();
    assert!(!dir.join("audit.jsonl.4").exists(), "keep = 3");
    let mut seq = Vec::new();
    for path in rotated.iter().rev().chain(std::iter::once(&live)) {
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len <= MAX, "{path:?} is {len} bytes");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.ends_with('\n'), "{path:?} ends inside a line");
        for line in read_jsonl(path) {
            if let Some(r) = line["resource"]
                .as_str()
                .and_then(|r| r.strip_prefix("seq/n/"))
            {
                assert_eq!(line["error"], "MissingCookie");
                seq.push(r.parse::<usize>().unwrap());
            }
        }
    }
    // The newest lines, consecutive and in order, ending with the last request.
    assert!(seq.len() > 20, "only {} lines kept", seq.len());
    assert_eq!(*seq.last().unwrap(), N - 1);
    for w in seq.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a line was lost or reordered");
    }
    // Rotated files are full up to less than one line short of the limit.
    for path in &rotated {
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len > MAX - 200, "{path:?} rotated early at {len} bytes");
    }
}
