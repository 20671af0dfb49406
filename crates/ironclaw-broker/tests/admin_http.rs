//! trustee's admin API over HTTPS, driven the way trustee's `kbs-client`
//! drives it: an Ed25519 key pair whose public half the broker was given as a
//! PEM file, a JWT `{"alg":"EdDSA","typ":"JWT"}` with `iat`/`nbf`/`exp` (two
//! hours) signed by the private half and sent as `Authorization: Bearer`;
//! `set-resource` is `POST /kbs/v0/resource/<path>` with the raw value as body,
//! `set-resource-policy` is `POST /kbs/v0/resource-policy` with
//! `{"policy": <base64>}`. Plus `/healthz`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64},
    Engine,
};
use ed25519_dalek::{Signer, SigningKey};
use ironclaw_broker::admin_http::AdminKeys;
use ironclaw_broker::client::{HttpReply, KbsHttpClient};
use ironclaw_broker::http::{self, ServerHandle};
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClient;
use ironclaw_enclave::tee::TeeKind;
use serde_json::{json, Value};

struct Env {
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `kbs-client`'s admin token: EdDSA JWT, valid two hours from `iat`.
fn admin_token(key: &SigningKey, iat: u64) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let claims = json!({"iat": iat, "nbf": iat, "exp": iat + 7200});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.to_bytes()))
}

/// The SPKI PEM `openssl pkey -pubout` writes for an Ed25519 key.
fn public_pem(key: &SigningKey) -> String {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key.verifying_key().as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    )
}

impl Env {
    fn new(admin: Option<&SigningKey>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let admin_keys = match admin {
            Some(k) => {
                let pem = dir.path().join("admin.pub");
                std::fs::write(&pem, public_pem(k)).unwrap();
                AdminKeys::new(vec![AdminKeys::load_pem(&pem).unwrap()])
            }
            None => AdminKeys::none(),
        };
        let broker = Arc::new(
            Broker::open(
                &dir.path().join("state"),
                BrokerConfig {
                    admin_keys,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = http::start(broker, "127.0.0.1:0", tls).unwrap();
        Env {
            server: Some(server),
            dir,
        }
    }

    fn client(&self) -> KbsHttpClient {
        let roots =
            ironclaw_broker::tls::load_certs(&self.dir.path().join("state/tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    fn admin(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> HttpReply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.client()
            .request_with_headers(method, path, None, &headers, body)
            .unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("state/audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// An attested sample enclave's fetch of `path`: (status, value).
    fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut http = self.client();
        let mut kbs = KbsClient::new(TeeKind::SAMPLE, &mut ironclaw_broker::rng());
        let r = http
            .request("POST", "/kbs/v0/auth", None, &kbs.auth_request().unwrap())
            .unwrap();
        let rd = kbs
            .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
            .map_err(|e| e.to_string())?;
        let body = kbs
            .attest_request(json!({"svn": "1", "report_data": STANDARD.encode(rd)}))
            .unwrap();
        let cookie = kbs.cookie_header();
        let r = http
            .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
            .unwrap();
        kbs.on_attest_response(r.status, &r.body)
            .map_err(|e| e.to_string())?;
        let r = http
            .request(
                "GET",
                &format!("/kbs/v0/resource/{path}"),
                cookie.as_deref(),
                b"",
            )
            .unwrap();
        kbs.on_resource_response(r.status, &r.body)
            .map_err(|e| e.to_string())
    }
}

fn error_type(r: &HttpReply) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["type"]
        .as_str()
        .unwrap()
        .trim_start_matches(ironclaw_broker::error::ERROR_TYPE_PREFIX)
        .to_string()
}

#[test]
fn kbs_client_style_admin_sets_policy_and_resources() {
    let key = SigningKey::from_bytes(&[21u8; 32]);
    let env = Env::new(Some(&key));
    let token = admin_token(&key, now());

    let r = env.admin("GET", "/healthz", None, b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &br#"{"status":"ok"}"#[..])
    );

    // set-resource-policy: the broker's JSON policy, base64 in {"policy"}.
    let policy = json!({"allow_sample": true,
        "rules": [{"resources": ["default/key/*"], "tee": ["sample"], "measurements": ["*"]}]});
    let body = json!({"policy": STANDARD.encode(policy.to_string())}).to_string();
    let r = env.admin(
        "POST",
        "/kbs/v0/resource-policy",
        Some(&token),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = env.admin("GET", "/kbs/v0/resource-policy", Some(&token), b"");
    let shown: Value = serde_json::from_slice(&r.body).unwrap();
    let shown: Value =
        serde_json::from_slice(&STANDARD.decode(shown["policy"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(shown["rules"][0]["resources"][0], "default/key/*");

    // set-resource: raw bytes; an attested enclave then receives exactly them.
    let value = b"\x00binary\xffsecret";
    let r = env.admin(
        "POST",
        "/kbs/v0/resource/default/key/one",
        Some(&token),
        value,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(env.fetch("default/key/one").unwrap(), value);

    // Delete; a second delete is 404.
    let r = env.admin(
        "DELETE",
        "/kbs/v0/resource/default/key/one",
        Some(&token),
        b"",
    );
    assert_eq!(r.status, 200);
    let r = env.admin(
        "DELETE",
        "/kbs/v0/resource/default/key/one",
        Some(&token),
        b"",
    );
    assert_eq!((r.status, error_type(&r)), (404, "ResourceNotFound".into()));
    assert!(env
        .fetch("default/key/one")
        .unwrap_err()
        .contains("ResourceNotFound"));

    let events: Vec<String> = env
        .audit()
        .iter()
        .filter(|l| l["credential"] == "admin")
        .map(|l| l["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events,
        [
            "admin-policy-set",
            "admin-resource-set",
            "admin-resource-delete",
            "refusal"
        ]
    );
}

#[test]
fn admin_requests_without_a_valid_token_change_nothing() {
    let key = SigningKey::from_bytes(&[21u8; 32]);
    let env = Env::new(Some(&key));
    let other = SigningKey::from_bytes(&[22u8; 32]);
    let path = "/kbs/v0/resource/default/key/x";
    let expired = admin_token(&key, now() - 3 * 3600);
    for (token, why) in [
        (None, "without `Authorization"),
        (
            Some(admin_token(&other, now())),
            "verifies under no configured",
        ),
        (Some(expired), "expired at"),
        (Some("x.y.z".to_string()), "admin token"),
    ] {
        let r = env.admin("POST", path, token.as_deref(), b"evil");
        assert_eq!(
            (r.status, error_type(&r)),
            (401, "AdminAccessDenied".into())
        );
        let detail: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(detail["detail"].as_str().unwrap().contains(why), "{detail}");
        let r = env.admin(
            "POST",
            "/kbs/v0/resource-policy",
            token.as_deref(),
            br#"{"policy":"e30="}"#,
        );
        assert_eq!(r.status, 401);
    }
    // Nothing was stored, and the policy is still the default (deny all).
    let token = admin_token(&key, now());
    let r = env.admin("DELETE", path, Some(&token), b"");
    assert_eq!(r.status, 404);
    let r = env.admin("GET", "/kbs/v0/resource-policy", Some(&token), b"");
    let shown: Value = serde_json::from_slice(&r.body).unwrap();
    let shown: Value =
        serde_json::from_slice(&STANDARD.decode(shown["policy"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(shown["rules"], json!([]));
    // A Rego policy is refused by name.
    let rego = json!({"policy": STANDARD.encode("package policy\ndefault allow = true")});
    let r = env.admin(
        "POST",
        "/kbs/v0/resource-policy",
        Some(&token),
        rego.to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, error_type(&r)),
        (401, "AdminRequestFailed".into())
    );
    assert!(String::from_utf8_lossy(&r.body).contains("Rego"));
}

#[test]
fn without_admin_keys_the_http_admin_api_is_disabled() {
    let env = Env::new(None);
    let key = SigningKey::from_bytes(&[21u8; 32]);
    let r = env.admin(
        "POST",
        "/kbs/v0/resource/default/key/x",
        Some(&admin_token(&key, now())),
        b"v",
    );
    assert_eq!(
        (r.status, error_type(&r)),
        (401, "AdminAccessDenied".into())
    );
    assert!(String::from_utf8_lossy(&r.body).contains("disabled"));
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(env.admin("GET", "/healthz", None, b"").status, 200);
}
