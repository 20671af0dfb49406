//! `ironclaw platform-key` and `ironclaw broker ...` as a user runs them.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn ironclaw_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ironclaw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn platform_key_is_made_once_0600_and_printed_as_jwk_or_pem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let a = ironclaw(&["platform-key", "--state-dir", d]);
    assert!(a.status.success());
    let jwk: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-384"))
    );
    let b = ironclaw(&["platform-key", "--state-dir", d]);
    assert_eq!(a.stdout, b.stdout, "the key persists");
    let mode = std::fs::metadata(dir.path().join("platform-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = ironclaw(&["platform-key", "--state-dir", d, "--format", "pem"]);
    assert!(String::from_utf8_lossy(&pem.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn secrets_and_policy_with_and_without_a_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("broker");
    let s = state.to_str().unwrap();
    // No broker running: the store is opened directly. The value comes on
    // standard input, never on the command line.
    let put = ironclaw_stdin(
        &["broker", "secret", "put", "--state", s, "default/key/a"],
        b"x",
    );
    assert!(put.status.success(), "{put:?}");
    assert!(put.stderr.is_empty(), "no warning for stdin: {put:?}");
    let bad = ironclaw(&[
        "broker", "secret", "put", "--state", s, "../key/a", "--value", "x",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules":[{"resources":["a/b/c"],"tee":["vmware"]}]}"#,
    )
    .unwrap();
    let out = ironclaw(&[
        "broker",
        "policy",
        "set",
        "--state",
        s,
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules[0].tee"));

    // A running broker: the same commands go through its admin socket.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(["broker", "serve", "--listen", "127.0.0.1:0", "--state", s])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("serving the KBS API on https://127.0.0.1:"),
        "{line}"
    );
    std::fs::write(&policy, r#"{"allow_sample":true,"rules":[{"resources":["a/b/*"],"tee":["sample"],"measurements":["*"]}]}"#)
        .unwrap();
    let set = ironclaw(&[
        "broker",
        "policy",
        "set",
        "--state",
        s,
        policy.to_str().unwrap(),
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    // --value still works, with a loud warning about the command line.
    let put = ironclaw(&[
        "broker", "secret", "put", "--state", s, "a/b/c", "--value", "y",
    ]);
    assert!(put.status.success());
    let warning = String::from_utf8_lossy(&put.stderr);
    assert!(
        warning.contains("WARNING") && warning.contains("/proc/PID/cmdline"),
        "{warning}"
    );
    // --file FILE, and an empty standard input is refused.
    let value_file = dir.path().join("value");
    std::fs::write(&value_file, b"from-file").unwrap();
    let put = ironclaw(&[
        "broker",
        "secret",
        "put",
        "--state",
        s,
        "a/b/d",
        "--file",
        value_file.to_str().unwrap(),
    ]);
    assert!(put.status.success(), "{put:?}");
    let empty = ironclaw_stdin(&["broker", "secret", "put", "--state", s, "a/b/e"], b"");
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"));
    let list = ironclaw(&["broker", "secret", "list", "--state", s]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "a/b/c\na/b/d\ndefault/key/a\n"
    );
    let show = ironclaw(&["broker", "policy", "show", "--state", s]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("\"allow_sample\": true"));
    assert!(
        ironclaw(&["broker", "secret", "delete", "--state", s, "a/b/c"])
            .status
            .success()
    );
    let again = ironclaw(&["broker", "secret", "delete", "--state", s, "a/b/c"]);
    assert_eq!(again.status.code(), Some(1));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn broker_serve_rotates_its_audit_log_as_the_flags_say() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("broker");
    let s = state.to_str().unwrap();
    let bad = ironclaw(&[
        "broker",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--state",
        s,
        "--audit-keep",
        "0",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "--audit-keep 0 is a usage error"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(["broker", "serve", "--listen", "127.0.0.1:0", "--state", s])
        .args(["--audit-max-bytes", "4096", "--audit-keep", "2"])
        // Refusals of unauthenticated requests are rate-limited per peer by
        // default; this test is about rotation.
        .args(["--audit-unauth-burst", "1000"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let roots = ironclaw_broker::tls::load_certs(&state.join("tls.crt")).unwrap();
    let mut c = ironclaw_broker::client::KbsHttpClient::new(&url, &roots).unwrap();
    // Each refused request is one ~250-byte audit line: 120 lines ≈ 30 KiB.
    for i in 0..120 {
        let r = c
            .request("GET", &format!("/kbs/v0/resource/a/b/{i}"), None, b"")
            .unwrap();
        assert_eq!(r.status, 401);
    }
    // Key material of the running broker is in mappings excluded from core
    // dumps (the store's AES key schedule and the token signing key at least).
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", child.id())).unwrap();
    let dd = smaps
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .filter(|f| f.split_whitespace().any(|x| x == "dd"))
        .count();
    assert!(dd >= 2, "{dd} MADV_DONTDUMP mappings");
    child.kill().unwrap();
    child.wait().unwrap();
    for name in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
        let text = std::fs::read_to_string(state.join(name)).unwrap();
        assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["error"], "MissingCookie");
        }
    }
    assert!(!state.join("audit.jsonl.3").exists(), "--audit-keep 2");
}

/// The uid owning `/proc/PID/environ`: the process's own uid while it is
/// dumpable, root once it is not (proc(5), PR_SET_DUMPABLE).
fn proc_owner(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

#[test]
fn broker_process_is_not_dumpable() {
    use std::os::unix::process::CommandExt;
    if !claw_testsupport::require_root("broker_process_is_not_dumpable") {
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let state = dir.path().join("broker");
    // Control: an ordinary process of that uid owns its /proc files.
    let mut control = Command::new("sleep")
        .arg("30")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    let control_owner = proc_owner(control.id());
    control.kill().unwrap();
    control.wait().unwrap();
    assert_eq!(control_owner, NOBODY);

    let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(["broker", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(&state)
        .uid(NOBODY)
        .gid(NOBODY)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("https://"), "{line:?}");
    let owner = proc_owner(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        owner, 0,
        "the broker's /proc files belong to root: not dumpable"
    );
}

#[test]
fn broker_serve_refuses_an_unusable_admin_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("broker");
    let not_ed25519 = dir.path().join("key.pem");
    std::fs::write(
        &not_ed25519,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    for file in [dir.path().join("missing.pem"), not_ed25519] {
        let out = ironclaw(&[
            "broker",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
            "--admin-public-key",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("admin public key") && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
}
