//! Secrets, attestation and sealing end to end with real enclaves: the example module fetches its secret from a
//! broker on 127.0.0.1 (HTTPS) through the shim's KBS client and HMAC-signs its input
//! with it; a module differing by one byte is refused; sealed data survives a restart
//! of the enclave and is refused to another module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::{Broker, BrokerConfig};
use sha2::Sha256;

const SECRET: &[u8] = b"sk-enclave-only-4711";

fn example(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(ironclaw::shim::EXAMPLES_DIR).join(name)).unwrap()
}

/// The module with one more byte (an empty custom section named "x"): still valid, another measurement.
fn one_byte_different(module: &[u8]) -> Vec<u8> {
    let mut m = module.to_vec();
    m.extend_from_slice(&[0, 2, 1, b'x']);
    m
}

fn ironclaw(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn measure(module: &Path) -> String {
    let out = ironclaw(&["measure", module.to_str().unwrap()], b"");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Setup {
    _tmp: tempfile::TempDir,
    broker_state: PathBuf,
    host_state: PathBuf,
    good: PathBuf,
    other: PathBuf,
    server: Option<ironclaw_broker::http::ServerHandle>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (broker_state, host_state) = (tmp.path().join("broker"), tmp.path().join("host"));
    let module = example("secret-hmac.wasm");
    let good = tmp.path().join("secret-hmac.wasm");
    let other = tmp.path().join("secret-hmac-other.wasm");
    std::fs::write(&good, &module).unwrap();
    std::fs::write(&other, one_byte_different(&module)).unwrap();

    let broker = Arc::new(Broker::open(&broker_state, BrokerConfig::default()).unwrap());
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).unwrap();

    // The operator trusts this host's platform key and the good module's measurement.
    let out = ironclaw(
        &["platform-key", "--state-dir", host_state.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success());
    let jwk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let policy = serde_json::json!({
        "trusted_platform_keys": [jwk],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [measure(&good)]}],
    });
    for req in [
        AdminRequest::PolicySet { policy },
        AdminRequest::SecretPut {
            path: "default/key/hmac".into(),
            value_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET),
        },
    ] {
        let r = admin::call(&broker_state, req).unwrap();
        assert!(r.ok, "{:?}", r.error);
    }
    Setup {
        _tmp: tmp,
        broker_state,
        host_state,
        good,
        other,
        server: Some(server),
    }
}

fn run(s: &Setup, module: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let url = s.server.as_ref().unwrap().url();
    let cert = s.broker_state.join("tls.crt");
    let mut a = vec![
        "run",
        "--broker",
        &url,
        "--broker-cert",
        cert.to_str().unwrap(),
        "--state-dir",
        s.host_state.to_str().unwrap(),
        module.to_str().unwrap(),
    ];
    a.extend_from_slice(args);
    ironclaw(&a, stdin)
}

#[test]
fn enclave_gets_its_secret_and_a_one_byte_different_module_is_refused() {
    if !claw_testsupport::require_kvm(
        "enclave_gets_its_secret_and_a_one_byte_different_module_is_refused",
    ) {
        return;
    }
    let s = setup();
    let out = run(&s, &s.good, &["hmac", "default/key/hmac"], b"sign me");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(b"sign me");
    let expect: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expect);

    let out = run(&s, &s.other, &["hmac", "default/key/hmac"], b"sign me");
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PolicyDeny"), "stderr: {err}");
    assert!(out.stdout.is_empty());
    let audit = std::fs::read_to_string(s.broker_state.join("audit.jsonl")).unwrap();
    assert!(audit
        .lines()
        .any(|l| l.contains("\"release\"") && l.contains("default/key/hmac")));
    assert!(audit
        .lines()
        .any(|l| l.contains("\"refusal\"") && l.contains("PolicyDeny")));
}

#[test]
fn sealed_data_survives_a_restart_and_is_refused_to_another_module() {
    if !claw_testsupport::require_kvm(
        "sealed_data_survives_a_restart_and_is_refused_to_another_module",
    ) {
        return;
    }
    let s = setup();
    let out = run(&s, &s.good, &["seal"], b"counter=41");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = out.stdout;
    assert!(!String::from_utf8_lossy(&blob).contains("counter"));

    // A new enclave of the same module (a restart) unseals it.
    let out = run(&s, &s.good, &["unseal"], &blob);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"counter=41");

    // Another module cannot.
    let out = run(&s, &s.other, &["unseal"], &blob);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not unseal"));
}
