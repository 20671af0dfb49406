//! The broker end to end over real HTTPS on 127.0.0.1, driven by
//! ironclaw-enclave's KBS client logic (simulating the enclave) and evidence
//! signed with a test platform key, as the IronClaw host signs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::http::{self, ServerHandle};
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::{resource_path, KbsClient, KbsClientError};
use ironclaw_enclave::tee::TeeKind;
use ironclaw_verifier::kvm::{self, KvmClaims, LaunchValue};
use p384::ecdsa::SigningKey;
use serde_json::{json, Value};

const MEASUREMENT: [u8; 48] = [0x5a; 48];

struct Env {
    // Dropped first: the server stops before its state directory is removed.
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
    platform: SigningKey,
}

fn platform_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 48]).unwrap()
}

fn start(dir: &Path, ttl: Duration) -> ServerHandle {
    let broker = Arc::new(
        Broker::open(
            dir,
            BrokerConfig {
                session_ttl: ttl,
                max_sessions: 1000,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
    http::start(broker, "127.0.0.1:0", tls).unwrap()
}

fn policy(platform: &SigningKey, measurement: &[u8], extra: Value) -> Value {
    let mut p = json!({
        "trusted_platform_keys": [kvm::public_jwk(platform.verifying_key())],
        "rules": [{"resources": ["default/key/api"], "tee": ["kvm"], "measurements": [hex::encode(measurement)]}],
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            p[k] = v;
        }
    }
    p
}

impl Env {
    fn new(ttl: Duration) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), ttl);
        let platform = platform_key(7);
        let env = Env {
            server: Some(server),
            dir,
            platform,
        };
        env.admin(AdminRequest::PolicySet {
            policy: policy(&env.platform, &MEASUREMENT, json!({})),
        });
        env.admin(AdminRequest::SecretPut {
            path: "default/key/api".into(),
            value_b64: "c2stbGl2ZS0xMjM=".into(),
        });
        env
    }

    fn admin(&self, req: AdminRequest) -> admin::AdminReply {
        let r = admin::call(self.dir.path(), req).unwrap();
        assert!(r.ok, "admin: {:?}", r.error);
        r
    }

    fn client(&self) -> KbsHttpClient {
        let roots = ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn last_refusal(&self) -> Value {
        self.audit()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "refusal")
            .expect("a refusal line")
    }
}

fn sign_evidence(key: &SigningKey, measurement: [u8; 48], report_data: [u8; 64]) -> Value {
    let mut launch_config = BTreeMap::new();
    launch_config.insert("memory_mib".to_string(), LaunchValue::Uint(64));
    let claims = KvmClaims {
        measurement,
        report_data,
        debug: false,
        launch_config,
    };
    json!({ "cose_sign1": B64.encode(kvm::sign(&claims, key).unwrap()) })
}

/// One enclave session up to the attestation token.
struct Enclave {
    kbs: KbsClient,
    http: KbsHttpClient,
}

impl Enclave {
    fn auth(http: KbsHttpClient) -> (Enclave, [u8; 64]) {
        let mut http = http;
        let mut kbs = KbsClient::new(TeeKind::KVM, &mut ironclaw_broker::rng());
        let body = kbs.auth_request().unwrap();
        let r = http.request("POST", "/kbs/v0/auth", None, &body).unwrap();
        let rd = kbs
            .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
            .unwrap();
        (Enclave { kbs, http }, rd)
    }

    fn attest(&mut self, evidence: Value) -> Result<(), KbsClientError> {
        let body = self.kbs.attest_request(evidence).unwrap();
        self.attest_raw(&body)
    }

    fn attest_raw(&mut self, body: &[u8]) -> Result<(), KbsClientError> {
        let cookie = self.kbs.cookie_header();
        let r = self
            .http
            .request("POST", "/kbs/v0/attest", cookie.as_deref(), body)
            .unwrap();
        self.kbs.on_attest_response(r.status, &r.body)
    }

    fn fetch(&mut self, repo: &str, kind: &str, tag: &str) -> Result<Vec<u8>, KbsClientError> {
        let cookie = self.kbs.cookie_header();
        let r = self
            .http
            .request(
                "GET",
                &resource_path(repo, kind, tag).unwrap(),
                cookie.as_deref(),
                b"",
            )
            .unwrap();
        self.kbs.on_resource_response(r.status, &r.body)
    }
}

fn refused_type(e: KbsClientError) -> (u16, String) {
    match e {
        KbsClientError::Refused {
            status, error_type, ..
        } => (
            status,
            error_type
                .trim_start_matches(ironclaw_broker::error::ERROR_TYPE_PREFIX)
                .to_string(),
        ),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn secret_released_to_the_trusted_measurement_and_audited() {
    let env = Env::new(Duration::from_secs(60));
    let (mut e, rd) = Enclave::auth(env.client());
    e.attest(sign_evidence(&env.platform, MEASUREMENT, rd))
        .unwrap();
    assert!(e.kbs.token().unwrap().split('.').count() == 3);
    assert_eq!(e.fetch("default", "key", "api").unwrap(), b"sk-live-123");
    let release = env
        .audit()
        .into_iter()
        .find(|l| l["event"] == "release")
        .unwrap();
    assert_eq!(release["resource"], "default/key/api");
    assert_eq!(release["measurement"], hex::encode(MEASUREMENT));
}

#[test]
fn one_byte_different_measurement_is_refused() {
    let env = Env::new(Duration::from_secs(60));
    let mut m = MEASUREMENT;
    m[47] ^= 1;
    let (mut e, rd) = Enclave::auth(env.client());
    let err = e.attest(sign_evidence(&env.platform, m, rd)).unwrap_err();
    assert_eq!(refused_type(err), (401, "PolicyDeny".into()));
    let line = env.last_refusal();
    assert_eq!(line["error"], "PolicyDeny");
    assert!(line["reason"].as_str().unwrap().contains(&hex::encode(m)));
}

#[test]
fn replayed_nonce_and_replayed_evidence_are_refused() {
    let env = Env::new(Duration::from_secs(60));
    let (mut a, rd) = Enclave::auth(env.client());
    let evidence = sign_evidence(&env.platform, MEASUREMENT, rd);
    let body = a.kbs.attest_request(evidence.clone()).unwrap();
    a.attest_raw(&body).unwrap();

    // The same attestation again on the same session: the nonce was used.
    let (mut again, _) = Enclave::auth(env.client());
    again.kbs.attest_request(json!({})).unwrap();
    let cookie = a.kbs.cookie_header();
    let r = again
        .http
        .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("NonceReused"));
    assert_eq!(env.last_refusal()["error"], "NonceReused");

    // Old evidence (bound to the old nonce) presented in a fresh session.
    let (mut b, _) = Enclave::auth(env.client());
    let err = b.attest(evidence).unwrap_err();
    assert_eq!(refused_type(err), (401, "ReportDataMismatch".into()));
    assert_eq!(env.last_refusal()["error"], "ReportDataMismatch");

    // The old attestation body (old nonce in runtime-data) sent in a fresh session.
    let (mut c, _) = Enclave::auth(env.client());
    c.kbs.attest_request(json!({})).unwrap();
    let err = c.attest_raw(&body).unwrap_err();
    assert_eq!(refused_type(err), (401, "NonceMismatch".into()));
}

#[test]
fn forged_resigned_and_untrusted_evidence_are_refused() {
    let env = Env::new(Duration::from_secs(60));

    // Forged: one byte of the signed payload changed after signing.
    let (mut e, rd) = Enclave::auth(env.client());
    let ev = sign_evidence(&env.platform, MEASUREMENT, rd);
    let mut cose = B64.decode(ev["cose_sign1"].as_str().unwrap()).unwrap();
    let pos = cose.windows(8).position(|w| w == [0x5a; 8]).unwrap();
    cose[pos] ^= 0xff;
    let err = e
        .attest(json!({"cose_sign1": B64.encode(&cose)}))
        .unwrap_err();
    assert_eq!(refused_type(err), (401, "EvidenceRejected".into()));
    assert_eq!(env.last_refusal()["error"], "EvidenceRejected");

    // Re-signed by a key the broker does not trust.
    let (mut e, rd) = Enclave::auth(env.client());
    let err = e
        .attest(sign_evidence(&platform_key(9), MEASUREMENT, rd))
        .unwrap_err();
    assert_eq!(refused_type(err), (401, "UntrustedPlatformKey".into()));
    assert_eq!(env.last_refusal()["error"], "UntrustedPlatformKey");
}

#[test]
fn expired_session_is_refused() {
    let env = Env::new(Duration::from_secs(1));
    let (mut e, rd) = Enclave::auth(env.client());
    std::thread::sleep(Duration::from_millis(1300));
    let err = e
        .attest(sign_evidence(&env.platform, MEASUREMENT, rd))
        .unwrap_err();
    assert_eq!(refused_type(err), (401, "SessionExpired".into()));
    assert_eq!(env.last_refusal()["error"], "SessionExpired");
}

#[test]
fn resource_not_granted_and_resource_without_session_are_refused() {
    let env = Env::new(Duration::from_secs(60));
    env.admin(AdminRequest::SecretPut {
        path: "default/key/other".into(),
        value_b64: "eA==".into(),
    });
    let (mut e, rd) = Enclave::auth(env.client());
    e.attest(sign_evidence(&env.platform, MEASUREMENT, rd))
        .unwrap();
    let err = e.fetch("default", "key", "other").unwrap_err();
    assert_eq!(refused_type(err), (403, "ResourceNotGranted".into()));
    let line = env.last_refusal();
    assert_eq!(
        (line["error"].as_str(), line["resource"].as_str()),
        (Some("ResourceNotGranted"), Some("default/key/other"))
    );

    let mut c = env.client();
    let r = c
        .request("GET", "/kbs/v0/resource/default/key/api", None, b"")
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("MissingCookie"));

    // A session that authenticated but never attested.
    let (mut n, _) = Enclave::auth(env.client());
    let cookie = n.kbs.cookie_header();
    let r = n
        .http
        .request(
            "GET",
            "/kbs/v0/resource/default/key/api",
            cookie.as_deref(),
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("NotAttested"));
}

#[test]
fn malformed_jwk_is_refused() {
    let env = Env::new(Duration::from_secs(60));
    let (mut e, rd) = Enclave::auth(env.client());
    let body = e
        .kbs
        .attest_request(sign_evidence(&env.platform, MEASUREMENT, rd))
        .unwrap();
    let mut att: Value = serde_json::from_slice(&body).unwrap();
    att["runtime-data"]["tee-pubkey"]["x"] = json!("AAAA");
    let err = e
        .attest_raw(&serde_json::to_vec(&att).unwrap())
        .unwrap_err();
    assert_eq!(refused_type(err), (401, "MalformedTeePubKey".into()));
    assert_eq!(env.last_refusal()["error"], "MalformedTeePubKey");
}

#[test]
fn sample_kind_only_when_policy_enables_it() {
    let env = Env::new(Duration::from_secs(60));
    let sample = |rd: [u8; 64]| json!({"svn": "1", "report_data": base64::engine::general_purpose::STANDARD.encode(rd)});
    let run = |env: &Env| {
        let mut http = env.client();
        let mut kbs = KbsClient::new(TeeKind::SAMPLE, &mut ironclaw_broker::rng());
        let r = http
            .request("POST", "/kbs/v0/auth", None, &kbs.auth_request().unwrap())
            .unwrap();
        let rd = kbs
            .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
            .unwrap();
        let body = kbs.attest_request(sample(rd)).unwrap();
        let cookie = kbs.cookie_header();
        let r = http
            .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
            .unwrap();
        kbs.on_attest_response(r.status, &r.body)?;
        let r = http
            .request("GET", "/kbs/v0/resource/test/key/s", cookie.as_deref(), b"")
            .unwrap();
        kbs.on_resource_response(r.status, &r.body)
    };
    assert_eq!(
        refused_type(run(&env).unwrap_err()),
        (401, "SampleDisabled".into())
    );
    env.admin(AdminRequest::SecretPut {
        path: "test/key/s".into(),
        value_b64: "c2FtcGxl".into(),
    });
    env.admin(AdminRequest::PolicySet {
        policy: policy(
            &env.platform,
            &MEASUREMENT,
            json!({"allow_sample": true, "rules": [{"resources": ["test/key/*"], "tee": ["sample"], "measurements": ["*"]}]}),
        ),
    });
    assert_eq!(run(&env).unwrap(), b"sample");
}

#[test]
fn malformed_requests_get_4xx_json() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = env.client();
    for (method, path, body, status) in [
        // Refusals of KBS requests are 401 as trustee answers them (the reason
        // is in the body's type), unknown paths 404, HTTP-level errors keep theirs.
        ("POST", "/kbs/v0/auth", &b"{not json"[..], 401),
        (
            "POST",
            "/kbs/v0/auth",
            br#"{"version":"0.4.0","tee":"vmware","extra-params":""}"#,
            401,
        ),
        (
            "POST",
            "/kbs/v0/auth",
            br#"{"version":"9.0.0","tee":"kvm","extra-params":""}"#,
            401,
        ),
        (
            "POST",
            "/kbs/v0/auth",
            br#"{"version":"0.4.1","tee":"kvm","extra-params":""}"#,
            401,
        ),
        (
            "POST",
            "/kbs/v0/auth",
            br#"{"version":"0.1.0","tee":"kvm","extra-params":""}"#,
            401,
        ),
        ("GET", "/kbs/v0/auth", b"", 405),
        ("GET", "/nope", b"", 404),
        ("GET", "/kbs/v0/resource/../key/x", b"", 404),
        ("GET", "/kbs/v0/resource/a/b", b"", 404),
        ("POST", "/kbs/v0/attest", b"{}", 401),
    ] {
        let r = c.request(method, path, None, body).unwrap();
        assert_eq!(r.status, status, "{method} {path}");
        let info: kbs_types::ErrorInformation = serde_json::from_slice(&r.body).unwrap();
        assert!(info
            .error_type
            .starts_with(ironclaw_broker::error::ERROR_TYPE_PREFIX));
    }
    // The protocol version must be exactly the supported one (trustee: `=0.4.0`).
    for v in ["0.4.1", "0.3.0", "0.4", "0.4.0-rc1"] {
        let body = format!(r#"{{"version":"{v}","tee":"kvm","extra-params":{{}}}}"#);
        let r = c
            .request("POST", "/kbs/v0/auth", None, body.as_bytes())
            .unwrap();
        let info: kbs_types::ErrorInformation = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.status, 401, "{v}");
        assert!(info.error_type.ends_with(":UnsupportedVersion"), "{v}");
        assert!(info.detail.contains("exactly \"0.4.0\""), "{}", info.detail);
    }
    // An attest body that is not an Attestation, on a live session: 401, and the nonce is spent.
    let (mut e, _) = Enclave::auth(env.client());
    e.kbs.attest_request(json!({})).unwrap();
    let err = e.attest_raw(b"[1,2,3]").unwrap_err();
    assert_eq!(refused_type(err), (401, "InvalidRequest".into()));
}

#[test]
fn broker_restart_keeps_secrets_and_policy() {
    let mut env = Env::new(Duration::from_secs(60));
    env.server.take().unwrap().shutdown();
    // The admin commands work on the store directly while no broker runs.
    env.admin(AdminRequest::SecretPut {
        path: "default/key/api".into(),
        value_b64: "cm90YXRlZA==".into(),
    });
    // Wait for the last connection threads (closed by their clients) to release the store.
    let mut server = None;
    for _ in 0..100 {
        match Broker::open(env.dir.path(), BrokerConfig::default()) {
            Ok(b) => {
                let b = Arc::new(b);
                let tls = ironclaw_broker::tls::server_config(b.state(), None, None).unwrap();
                server = Some(http::start(b, "127.0.0.1:0", tls).unwrap());
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    env.server = Some(server.expect("broker reopened"));
    let (mut e, rd) = Enclave::auth(env.client());
    e.attest(sign_evidence(&env.platform, MEASUREMENT, rd))
        .unwrap();
    assert_eq!(e.fetch("default", "key", "api").unwrap(), b"rotated");
    // The store holds no plaintext.
    let raw = std::fs::read(env.dir.path().join("store.redb")).unwrap();
    assert!(!raw.windows(7).any(|w| w == b"rotated"));
}
