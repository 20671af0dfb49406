//! The enclave keeps its KBS session: a module that reads two secrets is
//! attested once (seen in the broker's audit log: one challenge, one attestation, two
//! releases on one session); when the broker's session lifetime has passed, the next
//! read attests again and still succeeds. Real enclaves, a real broker on 127.0.0.1
//! over HTTPS. The session logic's answer to the broker's own "session expired"
//! refusal is checked against the real broker too, over HTTPS, without a VM.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClientError;
use ironclaw_enclave::kbs_session::{KbsIo, KbsSession, Method, Reply, SessionError, Value};
use ironclaw_enclave::tee::TeeKind;
use serde_json::json;
use sha2::Sha256;

const KEY_A: &[u8] = b"sk-first-secret-0001";
const KEY_B: &[u8] = b"sk-second-secret-0002";

fn ironclaw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ironclaw"))
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Setup {
    _tmp: tempfile::TempDir,
    broker_state: PathBuf,
    host_state: PathBuf,
    module: PathBuf,
    server: Option<ironclaw_broker::http::ServerHandle>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn put(broker_state: &Path, req: AdminRequest) {
    let r = admin::call(broker_state, req).unwrap();
    assert!(r.ok, "{:?}", r.error);
}

fn secret(path: &str, value: &[u8]) -> AdminRequest {
    AdminRequest::SecretPut {
        path: path.into(),
        value_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value),
    }
}

/// A broker with sessions of `ttl`, trusting this host's platform key and the
/// `secret-hmac` example's measurement for `default/key/*`, holding two secrets.
fn setup(ttl: Duration) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (broker_state, host_state) = (tmp.path().join("broker"), tmp.path().join("host"));
    let module = tmp.path().join("secret-hmac.wasm");
    std::fs::copy(
        Path::new(ironclaw::shim::EXAMPLES_DIR).join("secret-hmac.wasm"),
        &module,
    )
    .unwrap();
    let config = BrokerConfig {
        session_ttl: ttl,
        ..BrokerConfig::default()
    };
    let broker = Arc::new(Broker::open(&broker_state, config).unwrap());
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).unwrap();

    let out = ironclaw()
        .args(["platform-key", "--state-dir", host_state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let jwk: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = ironclaw()
        .args(["measure", module.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let measurement = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let policy = json!({
        "trusted_platform_keys": [jwk],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [measurement]}],
    });
    put(&broker_state, AdminRequest::PolicySet { policy });
    put(&broker_state, secret("default/key/a", KEY_A));
    put(&broker_state, secret("default/key/b", KEY_B));
    Setup {
        _tmp: tmp,
        broker_state,
        host_state,
        module,
        server: Some(server),
    }
}

/// `secret-hmac hmac-lines` in a real enclave, stdin piped.
fn spawn_lines(s: &Setup) -> std::process::Child {
    let url = s.server.as_ref().unwrap().url();
    let cert = s.broker_state.join("tls.crt");
    ironclaw()
        .args([
            "run",
            "--broker",
            &url,
            "--broker-cert",
            cert.to_str().unwrap(),
            "--state-dir",
            s.host_state.to_str().unwrap(),
            s.module.to_str().unwrap(),
            "hmac-lines",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The broker's audit log, one JSON object per line.
fn audit(s: &Setup) -> Vec<Value> {
    std::fs::read_to_string(s.broker_state.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(log: &'a [Value], event: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["event"] == event).collect()
}

fn finish(child: std::process::Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

#[test]
fn two_secrets_in_one_enclave_cost_one_attestation() {
    if !claw_testsupport::require_kvm("two_secrets_in_one_enclave_cost_one_attestation") {
        return;
    }
    let s = setup(BrokerConfig::default().session_ttl);
    let mut child = spawn_lines(&s);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"default/key/a first message\ndefault/key/b second message\n")
        .unwrap();
    let (stdout, _) = finish(child);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            hmac_hex(KEY_A, b"first message"),
            hmac_hex(KEY_B, b"second message")
        ]
    );

    let log = audit(&s);
    assert_eq!(events(&log, "challenge").len(), 1, "{log:#?}");
    assert_eq!(events(&log, "attested").len(), 1, "{log:#?}");
    let releases = events(&log, "release");
    assert_eq!(releases.len(), 2, "{log:#?}");
    assert_eq!(releases[0]["resource"], "default/key/a");
    assert_eq!(releases[1]["resource"], "default/key/b");
    // Both on the session that was attested.
    let attested = events(&log, "attested")[0]["session"].clone();
    assert!(attested.is_string(), "{log:#?}");
    assert!(
        releases.iter().all(|r| r["session"] == attested),
        "{log:#?}"
    );
    assert!(events(&log, "refusal").is_empty(), "{log:#?}");
}

#[test]
fn a_read_after_the_session_lifetime_attests_again_and_succeeds() {
    if !claw_testsupport::require_kvm(
        "a_read_after_the_session_lifetime_attests_again_and_succeeds",
    ) {
        return;
    }
    let ttl = Duration::from_secs(1);
    let s = setup(ttl);
    let mut child = spawn_lines(&s);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"default/key/a before expiry\n").unwrap();
    // Wait for the first release, then let the session expire before the second read.
    let start = Instant::now();
    while events(&audit(&s), "release").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no release in the audit log: {:#?}",
            audit(&s)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(ttl + Duration::from_millis(300));
    // The third read follows at once: it reuses the renewed session.
    stdin
        .write_all(b"default/key/b after expiry\ndefault/key/a right after\n")
        .unwrap();
    drop(stdin);
    let (stdout, _) = finish(child);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            hmac_hex(KEY_A, b"before expiry"),
            hmac_hex(KEY_B, b"after expiry"),
            hmac_hex(KEY_A, b"right after"),
        ]
    );

    let log = audit(&s);
    let attested = events(&log, "attested");
    assert_eq!(events(&log, "challenge").len(), 2, "{log:#?}");
    assert_eq!(attested.len(), 2, "{log:#?}");
    let releases = events(&log, "release");
    assert_eq!(releases.len(), 3, "{log:#?}");
    assert_eq!(releases[0]["session"], attested[0]["session"], "{log:#?}");
    assert_eq!(releases[1]["session"], attested[1]["session"], "{log:#?}");
    assert_eq!(releases[2]["session"], attested[1]["session"], "{log:#?}");
    assert_ne!(attested[0]["session"], attested[1]["session"], "{log:#?}");
    // The broker announced the lifetime (Max-Age) and the shim kept to it: no request
    // was sent on the expired session.
    assert!(events(&log, "refusal").is_empty(), "{log:#?}");
}

#[test]
fn a_policy_refusal_on_the_kept_session_reaches_the_module_without_a_new_attestation() {
    if !claw_testsupport::require_kvm(
        "a_policy_refusal_on_the_kept_session_reaches_the_module_without_a_new_attestation",
    ) {
        return;
    }
    let s = setup(BrokerConfig::default().session_ttl);
    put(
        &s.broker_state,
        secret("other/key/c", b"not for this module"),
    );
    let mut child = spawn_lines(&s);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"default/key/a granted\nother/key/c not granted\ndefault/key/b never read\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // secret-hmac exits 3 when the broker refuses; the reason reached the module's stderr.
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("ResourceNotGranted"), "stderr: {stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [hmac_hex(KEY_A, b"granted")]
    );
    let log = audit(&s);
    assert_eq!(events(&log, "challenge").len(), 1, "{log:#?}");
    assert_eq!(events(&log, "attested").len(), 1, "{log:#?}");
    assert_eq!(events(&log, "release").len(), 1, "{log:#?}");
    let refusals = events(&log, "refusal");
    assert_eq!(refusals.len(), 1, "{log:#?}");
    assert_eq!(refusals[0]["error"], "ResourceNotGranted", "{log:#?}");
    assert_eq!(refusals[0]["resource"], "other/key/c", "{log:#?}");
}

/// [`KbsIo`] over HTTPS to the broker with `sample` evidence and no clock: the
/// session only learns of the expiry from the broker's refusal.
struct SampleOverHttps {
    client: KbsHttpClient,
    requests: Vec<(Method, String)>,
}

impl KbsIo for SampleOverHttps {
    type Error = String;

    fn request(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, String> {
        self.requests.push((method, path.to_string()));
        let verb = match method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        let r = self
            .client
            .request(verb, path, cookie, body)
            .map_err(|e| e.to_string())?;
        Ok(Reply {
            status: r.status,
            set_cookie: r.set_cookie,
            body: r.body,
        })
    }

    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Value, String> {
        use base64::Engine;
        Ok(json!({
            "svn": "1",
            "report_data": base64::engine::general_purpose::STANDARD.encode(report_data),
        }))
    }

    fn now_ms(&self) -> Option<u64> {
        None
    }
}

#[test]
fn the_brokers_expired_session_refusal_triggers_exactly_one_new_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("broker");
    let ttl = Duration::from_secs(1);
    let broker = Arc::new(
        Broker::open(
            &state,
            BrokerConfig {
                session_ttl: ttl,
                ..BrokerConfig::default()
            },
        )
        .unwrap(),
    );
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).unwrap();
    put(
        &state,
        AdminRequest::PolicySet {
            policy: json!({"allow_sample": true, "rules": [{"resources": ["test/key/*"], "tee": ["sample"], "measurements": ["*"]}]}),
        },
    );
    put(&state, secret("test/key/a", KEY_A));
    put(&state, secret("test/key/b", KEY_B));
    let roots = ironclaw_broker::tls::load_certs(&state.join("tls.crt")).unwrap();
    let mut io = SampleOverHttps {
        client: KbsHttpClient::new(&server.url(), &roots).unwrap(),
        requests: Vec::new(),
    };
    let mut rng = ironclaw_broker::rng();
    let mut session = KbsSession::new(TeeKind::SAMPLE);

    let a = session
        .get_resource(&mut io, &mut rng, "test", "key", "a")
        .unwrap();
    let b = session
        .get_resource(&mut io, &mut rng, "test", "key", "b")
        .unwrap();
    assert_eq!((a.as_slice(), b.as_slice()), (KEY_A, KEY_B));
    assert_eq!(session.stats().handshakes, 1);

    std::thread::sleep(ttl + Duration::from_millis(200));
    let a = session
        .get_resource(&mut io, &mut rng, "test", "key", "a")
        .unwrap();
    assert_eq!(a, KEY_A);
    let paths: Vec<&str> = io.requests.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/kbs/v0/auth",
            "/kbs/v0/attest",
            "/kbs/v0/resource/test/key/a",
            "/kbs/v0/resource/test/key/b",
            // refused: the session expired at the broker
            "/kbs/v0/resource/test/key/a",
            "/kbs/v0/auth",
            "/kbs/v0/attest",
            "/kbs/v0/resource/test/key/a",
        ]
    );
    let log: Vec<Value> = std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refusals = events(&log, "refusal");
    assert_eq!(refusals.len(), 1, "{log:#?}");
    assert_eq!(refusals[0]["error"], "SessionExpired", "{log:#?}");

    // A policy change that denies the resource is a final refusal, not a re-handshake.
    put(
        &state,
        AdminRequest::PolicySet {
            policy: json!({"allow_sample": true, "rules": [{"resources": ["test/key/a"], "tee": ["sample"], "measurements": ["*"]}]}),
        },
    );
    let before = io.requests.len();
    let err = session
        .get_resource(&mut io, &mut rng, "test", "key", "b")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SessionError::Kbs(KbsClientError::Refused { status: 403, .. })
        ),
        "{err:?}"
    );
    assert_eq!(io.requests.len(), before + 1);
    server.shutdown();
}

#[test]
fn hmac_lines_reports_a_malformed_request_line() {
    if !claw_testsupport::require_kvm("hmac_lines_reports_a_malformed_request_line") {
        return;
    }
    let s = setup(BrokerConfig::default().session_ttl);
    let mut child = spawn_lines(&s);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"no-space-here\n")
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("expected `REPOSITORY/TYPE/TAG MESSAGE`"),
        "{err}"
    );
    // Nothing was asked of the broker.
    assert!(audit(&s).is_empty());
}
