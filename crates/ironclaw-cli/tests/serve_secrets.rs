//! `ironclaw serve` with a key broker: the evidence carries the *service* measurement, so a
//! policy pinning `ironclaw measure --listen ... --egress ...` releases the secret to that
//! service, and the same module launched with another egress list gets nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::{Broker, BrokerConfig};
use sha2::Sha256;

const SECRET: &str = "sign-key-from-the-broker";

fn ironclaw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn serve_evidence_carries_the_service_measurement_with_its_egress() {
    if !claw_testsupport::require_kvm(
        "serve_evidence_carries_the_service_measurement_with_its_egress",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (state, host): (PathBuf, PathBuf) = (tmp.path().join("broker"), tmp.path().join("host"));
    let broker = Arc::new(Broker::open(&state, BrokerConfig::default()).unwrap());
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).unwrap();
    let module = Path::new(ironclaw::shim::EXAMPLES_DIR).join("sign-service.wasm");
    let module = module.to_str().unwrap();
    let out = ironclaw(&["platform-key", "--state-dir", host.to_str().unwrap()]);
    assert!(out.status.success());
    let jwk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = ironclaw(&[
        "measure",
        "--listen",
        "tcp:127.0.0.1:1",
        "--egress",
        "api.example.com:443",
        module,
    ]);
    assert!(out.status.success());
    let measurement = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let policy = serde_json::json!({
        "trusted_platform_keys": [jwk],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [measurement]}],
    });
    for req in [
        AdminRequest::PolicySet { policy },
        AdminRequest::SecretPut {
            path: "default/key/sign".into(),
            value_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET),
        },
    ] {
        let r = admin::call(&state, req).unwrap();
        assert!(r.ok, "{:?}", r.error);
    }
    let url = server.url();
    let cert = state.join("tls.crt");
    let serve = |egress: &str| {
        Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .args([
                "serve",
                "--listen",
                "tcp:127.0.0.1:0",
                "--egress",
                egress,
                "--broker",
                &url,
                "--broker-cert",
                cert.to_str().unwrap(),
                "--state-dir",
                host.to_str().unwrap(),
                "--env",
                "SIGN_SECRET=default/key/sign",
                module,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // The pinned service: gets the key and signs with it.
    let mut child = serve("api.example.com:443");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve ended early").unwrap();
        if let Some(a) = line.strip_prefix("ironclaw: listening on tcp:") {
            break a.to_string();
        }
    };
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /sign HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(b"hello");
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with(&want),
        "{resp}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // The same module allowed to reach somewhere else: another measurement, no key
    // (sign-service exits 3 when get_secret is refused).
    let child = serve("elsewhere.example.com:443");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("PolicyDeny"));
    server.shutdown();
}
