//! `ironclaw proxy`: the LLM API key proxy end to end. A local HTTP upstream records what
//! it receives and answers an OpenAI-style `/v1/chat/completions` (JSON and an SSE stream);
//! a key broker (in process, HTTPS) releases the key only to the proxy's measurement; the
//! upstream sees the key, the client never does; faults give the client a 502/503 with a
//! reason and the proxy keeps serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::{Broker, BrokerConfig};

const KEY: &str = "sk-enclave-only-4711-openai";
const KEY2: &str = "sk-ant-enclave-only-0815";
const ROTATED: &str = "sk-rotated-enclave-only-2342";

/// What the upstream received: one request head (lower-cased names) + body per entry.
type Log = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTP/1.1 upstream on 127.0.0.1: one request per connection.
struct Upstream {
    addr: String,
    log: Log,
    /// Connections accepted.
    conns: Arc<std::sync::atomic::AtomicUsize>,
}

fn read_head<R: Read>(r: &mut R) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head[..head.len() - 2]).into_owned())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Serves requests on `s`: one, or with `keepalive` until the peer closes.
fn upstream_serve<S: Read + Write>(mut s: S, log: Log, keepalive: bool) {
    while let Some(head) = read_head(&mut s) {
        if !upstream_answer(&mut s, &log, head) || !keepalive {
            return;
        }
    }
}

/// Answers one request; false when the connection must close.
fn upstream_answer<S: Read + Write>(s: &mut S, log: &Log, head: String) -> bool {
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    log.lock().unwrap().push((head.clone(), body.clone()));
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let auth = header(&head, "authorization").unwrap_or_default();
    if path == "/v1/chat/completions" && String::from_utf8_lossy(&body).contains("\"stream\":true")
    {
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        for (i, word) in ["Hel", "lo", "!"].iter().enumerate() {
            let ev =
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}}}}]}}\n\n");
            s.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())
                .unwrap();
            s.flush().unwrap();
            if i == 0 {
                std::thread::sleep(Duration::from_millis(400));
            }
        }
        let done = "data: [DONE]\n\n";
        s.write_all(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).as_bytes())
            .unwrap();
    } else if path == "/v1/chat/completions" {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}"#;
        s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        s.write_all(body).unwrap();
    } else if path == "/unauthorized" {
        s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    } else if path == "/reset" {
        // Cut off mid-stream: one event, then the connection goes away.
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n",
        )
        .unwrap();
        return false;
    } else if let Some(mib) = path.strip_prefix("/big/") {
        // A long stream: MIB MiB of 64 KiB chunks.
        let mib: usize = mib.parse().unwrap_or(1);
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..mib * 16 {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .unwrap();
            s.write_all(&chunk).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
    } else if path == "/echo" {
        // An echo service (httpbin's /headers): the credential in a streamed body, split
        // across two chunks.
        let body = format!("{{\"headers\":{{\"Authorization\":\"{auth}\"}}}}");
        let (a, b) = body.split_at(body.len() / 2);
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for part in [a, b] {
            s.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                .unwrap();
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        s.write_all(b"0\r\n\r\n").unwrap();
    } else if path == "/reflect" {
        // A hostile or careless upstream echoing the credential back.
        let body = b"reflected";
        s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nX-Echo-Auth: {auth}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        s.write_all(body).unwrap();
    } else {
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    }
    s.flush().is_ok()
}

impl Upstream {
    /// One request per connection (the proxy's reuse of a closed connection is retried).
    fn start() -> Upstream {
        Self::start_with(None, false)
    }

    /// With `tls`: HTTPS with that server configuration; with `keepalive`, many requests per
    /// connection.
    fn start_with(tls: Option<Arc<rustls::ServerConfig>>, keepalive: bool) -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let conns: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let sink = log.clone();
        let count = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let _ = s.set_nodelay(true);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let log = sink.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => upstream_serve(s, log, keepalive),
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, s);
                        upstream_serve(&mut tls, log, keepalive);
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                });
            }
        });
        Upstream { addr, log, conns }
    }
}

/// A test CA (PEM) and a server configuration for 127.0.0.1 signed by it.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    test_pki_for("127.0.0.1")
}

/// A test CA (PEM) and a server configuration for `name` signed by it.
fn test_pki_for(name: &str) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    (ca.pem(), Arc::new(cfg))
}

/// A test CA (PEM) and, for each suite, a server configuration for 127.0.0.1 signed by it
/// that speaks only that suite (and so only its protocol version).
fn test_pki_per_suite(
    suites: &[rustls::SupportedCipherSuite],
) -> (String, Vec<Arc<rustls::ServerConfig>>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let configs = suites
        .iter()
        .map(|suite| {
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: vec![*suite],
                ..rustls::crypto::ring::default_provider()
            };
            let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[suite.version()])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
                .unwrap();
            Arc::new(cfg)
        })
        .collect();
    (ca.pem(), configs)
}

/// A running `ironclaw proxy`; killed on drop.
struct Proxy {
    child: Child,
    addr: String,
    measurement: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// `IP:PORT` of the proxy's listener on `ip` (an extra `--listen tcp:IP:0`), from its
    /// "listening on" line; panics after 10 s without one.
    fn listener_on(&self, ip: &str) -> String {
        let prefix = format!("ironclaw: listening on tcp:{ip}:");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr.lock().unwrap().clone();
            if let Some(l) = log.lines().find(|l| l.starts_with(&prefix)) {
                return l["ironclaw: listening on tcp:".len()..].to_string();
            }
            assert!(Instant::now() < deadline, "no listener on {ip}: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start(args: &[&str]) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .arg("proxy")
            .args(["--listen", "tcp:127.0.0.1:0", "--print-measurement"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (mut addr, mut measurement) = (None, None);
        while addr.is_none() || measurement.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("ironclaw: listening on tcp:") {
                        addr = Some(a.to_string());
                    }
                    if let Some(m) = line.strip_prefix("measurement: ") {
                        measurement = Some(m.to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("proxy did not start: {}", log.lock().unwrap());
                }
            }
        }
        Proxy {
            child,
            addr: addr.unwrap(),
            measurement: measurement.unwrap(),
            stderr: log,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

/// A broker on 127.0.0.1 holding the keys; the policy is set once the proxy's measurement
/// is known.
struct BrokerSetup {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    host_state: PathBuf,
    /// The host's platform key (JWK), made before any proxy starts: a proxy attesting makes
    /// it too, and two processes creating it at once race.
    platform_key: serde_json::Value,
    server: Option<ironclaw_broker::http::ServerHandle>,
}

impl Drop for BrokerSetup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl BrokerSetup {
    fn start() -> BrokerSetup {
        let tmp = tempfile::tempdir().unwrap();
        let (state, host_state) = (tmp.path().join("broker"), tmp.path().join("host"));
        let broker = Arc::new(Broker::open(&state, BrokerConfig::default()).unwrap());
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).unwrap();
        for (path, v) in [("default/key/llm", KEY), ("default/key/anthropic", KEY2)] {
            let r = admin::call(
                &state,
                AdminRequest::SecretPut {
                    path: path.into(),
                    value_b64: base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        v,
                    ),
                },
            )
            .unwrap();
            assert!(r.ok, "{:?}", r.error);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .args(["platform-key", "--state-dir"])
            .arg(&host_state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let platform_key = serde_json::from_slice(&out.stdout).unwrap();
        BrokerSetup {
            _tmp: tmp,
            state,
            host_state,
            platform_key,
            server: Some(server),
        }
    }

    /// `--broker URL --broker-cert FILE --state-dir DIR`.
    fn args(&self) -> Vec<String> {
        vec![
            "--broker".into(),
            self.server.as_ref().unwrap().url(),
            "--broker-cert".into(),
            self.state.join("tls.crt").display().to_string(),
            "--state-dir".into(),
            self.host_state.display().to_string(),
        ]
    }

    /// Releases `default/key/*` to `measurement` on this host.
    fn allow(&self, measurement: &str) {
        let jwk = &self.platform_key;
        let policy = serde_json::json!({
            "trusted_platform_keys": [jwk],
            "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [measurement]}],
        });
        let r = admin::call(&self.state, AdminRequest::PolicySet { policy }).unwrap();
        assert!(r.ok, "{:?}", r.error);
    }
}

/// A response: status line, head, body (chunked decoded).
struct Response {
    status: String,
    head: String,
    body: Vec<u8>,
}

/// Reads one response; `on_chunk` sees each decoded chunk as it arrives.
fn read_response(s: &mut TcpStream, mut on_chunk: impl FnMut(&[u8])) -> Response {
    let mut raw = Vec::new();
    fn read_line(s: &mut TcpStream, raw: &mut Vec<u8>) -> String {
        let mut byte = [0u8; 1];
        let start = raw.len();
        while !raw[start..].ends_with(b"\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "closed: {raw:?}");
            raw.push(byte[0]);
        }
        String::from_utf8_lossy(&raw[start..raw.len() - 2]).into_owned()
    }
    let status = read_line(s, &mut raw);
    let mut head = String::new();
    loop {
        let l = read_line(s, &mut raw);
        if l.is_empty() {
            break;
        }
        head.push_str(&l);
        head.push('\n');
    }
    let mut body = Vec::new();
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let size = usize::from_str_radix(read_line(s, &mut raw).trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            let mut got = 0;
            while got < chunk.len() {
                let n = s.read(&mut chunk[got..]).unwrap();
                assert!(n > 0, "closed inside a chunk");
                got += n;
            }
            raw.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
            on_chunk(&chunk[..size]);
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        body.resize(len, 0);
        s.read_exact(&mut body).unwrap();
        raw.extend_from_slice(&body);
    }
    // No byte a client reads ever contains a key.
    assert!(
        !contains(&raw, KEY) && !contains(&raw, KEY2),
        "a key reached the client"
    );
    Response { status, head, body }
}

fn post(s: &mut TcpStream, path: &str, extra: &str, body: &str) -> Response {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    read_response(s, |_| {})
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn proxy_injects_the_key_streams_sse_and_never_shows_the_key_to_clients() {
    if !claw_testsupport::require_kvm(
        "proxy_injects_the_key_streams_sse_and_never_shows_the_key_to_clients",
    ) {
        return;
    }
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let upstream = format!("http://{}", up.addr);
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    let mut c = proxy.connect();

    // No policy for this measurement yet: the broker refuses, the client gets a 503.
    let r = post(&mut c, "/v1/chat/completions", "", "{}");
    assert!(r.status.starts_with("HTTP/1.1 503"), "{}", r.status);
    assert!(contains(
        &r.body,
        "key broker did not release default/key/llm"
    ));
    assert!(up.log.lock().unwrap().is_empty());

    broker.allow(&proxy.measurement);
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
    let r = post(
        &mut c,
        "/v1/chat/completions",
        "Authorization: Bearer client-supplied-fake\r\nx-api-key: also-fake\r\n",
        chat,
    );
    assert_eq!(
        r.status,
        "HTTP/1.1 200 OK",
        "{}",
        proxy.stderr.lock().unwrap()
    );
    assert!(contains(&r.body, "\"content\":\"Hello!\""));
    {
        let log = up.log.lock().unwrap();
        let (head, body) = log.last().unwrap();
        assert_eq!(
            header(head, "authorization").as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(!head.contains("client-supplied-fake") && !head.contains("also-fake"));
        assert_eq!(header(head, "x-api-key"), None);
        assert_eq!(header(head, "host").as_deref(), Some(up.addr.as_str()));
        assert_eq!(body, chat.as_bytes());
    }

    // SSE on the same keep-alive connection: the first event arrives while the upstream
    // is still holding back the rest (400 ms), i.e. it is relayed, not buffered.
    let stream = r#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Length: {}\r\n\r\n{stream}",
        stream.len()
    );
    let sent = Instant::now();
    c.write_all(req.as_bytes()).unwrap();
    let mut arrivals = Vec::new();
    let r = read_response(&mut c, |chunk| {
        arrivals.push((sent.elapsed(), String::from_utf8_lossy(chunk).into_owned()))
    });
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&r.head, "content-type").as_deref(),
        Some("text/event-stream")
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("\"Hel\"") && text.contains("data: [DONE]"),
        "{text}"
    );
    let first = arrivals.first().unwrap();
    let last = arrivals.last().unwrap();
    assert!(first.1.contains("\"Hel\""), "{arrivals:?}");
    assert!(
        last.0 >= first.0 + Duration::from_millis(300),
        "first event not streamed ahead of the rest: {arrivals:?}"
    );
    eprintln!("first SSE event after {:?}", first.0);

    // An upstream reflecting the credential: that header never reaches the client.
    let r = post(&mut c, "/reflect", "", "");
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(header(&r.head, "x-echo-auth"), None);
    assert_eq!(r.body, b"reflected");

    // An upstream echoing the key in its body: the response is cut before the key, the
    // connection closes, and another connection is served as before.
    let mut echo = proxy.connect();
    echo.write_all(b"GET /echo HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = echo.read_to_end(&mut got);
    assert!(!contains(&got, KEY), "the key was relayed to the client");
    assert!(
        !contains(&got, "0\r\n\r\n"),
        "a cut body must not look complete"
    );
    assert!(contains(&got, "HTTP/1.1 200 OK"));

    // Requests for other hosts, CONNECT and oversized heads are refused.
    c.write_all(b"GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, |_| {});
    assert!(r.status.starts_with("HTTP/1.1 403"), "{}", r.status);
    assert!(contains(&r.body, "not a configured upstream"));
    let mut big = proxy.connect();
    let filler = "a".repeat(20 << 10);
    big.write_all(format!("GET /v1/models HTTP/1.1\r\nX-Big: {filler}\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut big, |_| {});
    assert!(r.status.starts_with("HTTP/1.1 431"), "{}", r.status);

    let stderr = proxy.stderr.lock().unwrap().clone();
    assert!(!stderr.contains(KEY), "key in the host's log: {stderr}");
    let requests = up.log.lock().unwrap().len();
    assert_eq!(
        requests, 4,
        "the refused requests never reached the upstream"
    );
}

#[test]
fn upstream_down_gives_502_and_the_other_route_keeps_working() {
    if !claw_testsupport::require_kvm("upstream_down_gives_502_and_the_other_route_keeps_working") {
        return;
    }
    let up = Upstream::start();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let broker = BrokerSetup::start();
    let (good, down) = (format!("http://{}", up.addr), format!("http://{dead}"));
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--upstream",
            &down,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
            "--upstream",
            &good,
            "--secret",
            "default/key/anthropic",
            "--inject",
            "x-api-key: {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    let mut c = proxy.connect();
    for _ in 0..2 {
        let r = post(&mut c, &format!("/{dead}/v1/chat/completions"), "", "{}");
        assert!(r.status.starts_with("HTTP/1.1 502"), "{}", r.status);
        assert!(
            contains(&r.body, &dead),
            "{}",
            String::from_utf8_lossy(&r.body)
        );

        let r = post(
            &mut c,
            &format!("/{}/v1/chat/completions", up.addr),
            "x-api-key: client-fake\r\n",
            "{}",
        );
        assert_eq!(
            r.status,
            "HTTP/1.1 200 OK",
            "{}",
            proxy.stderr.lock().unwrap()
        );
        let log = up.log.lock().unwrap();
        let (head, _) = log.last().unwrap();
        assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
        assert_eq!(header(head, "x-api-key").as_deref(), Some(KEY2));
        assert_eq!(header(head, "authorization"), None);
    }
    // A path naming no configured upstream is refused (two routes: no default).
    let r = post(&mut c, "/v1/chat/completions", "", "{}");
    assert!(r.status.starts_with("HTTP/1.1 404"), "{}", r.status);
}

#[test]
fn https_upstream_verified_against_the_test_ca_and_a_wrong_ca_gives_502() {
    if !claw_testsupport::require_kvm(
        "https_upstream_verified_against_the_test_ca_and_a_wrong_ca_gives_502",
    ) {
        return;
    }
    let (ca_pem, server) = test_pki();
    let (other_ca, _) = test_pki();
    let up = Upstream::start_with(Some(server), false);
    let broker = BrokerSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, wrong) = (dir.path().join("ca.pem"), dir.path().join("wrong.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&wrong, other_ca).unwrap();
    let upstream = format!("https://{}", up.addr);
    let start = |ca: &std::path::Path| {
        let mut args: Vec<String> = broker.args();
        args.extend(
            [
                "--upstream",
                &upstream,
                "--secret",
                "default/key/llm",
                "--inject",
                "Authorization: Bearer {secret}",
                "--upstream-ca",
                ca.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proxy::start(&args)
    };

    let proxy = start(&ca);
    // `ironclaw proxy --measure` (what an operator pins in the policy) agrees with the
    // measurement the running proxy reports.
    let mut margs: Vec<String> = vec!["proxy".into(), "--measure".into(), "--listen".into()];
    margs.extend(
        [
            "tcp:127.0.0.1:0",
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
            "--upstream-ca",
            ca.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(&margs)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        proxy.measurement
    );
    broker.allow(&proxy.measurement);
    let mut c = proxy.connect();
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
    let t = Instant::now();
    let r = post(
        &mut c,
        "/v1/chat/completions",
        "Authorization: Bearer nope\r\n",
        chat,
    );
    eprintln!(
        "first HTTPS request (key fetch + TLS handshake in the enclave): {:?}",
        t.elapsed()
    );
    assert_eq!(
        r.status,
        "HTTP/1.1 200 OK",
        "{}",
        proxy.stderr.lock().unwrap()
    );
    assert!(contains(&r.body, "\"content\":\"Hello!\""));
    let t = Instant::now();
    let stream = r#"{"stream":true}"#;
    let r = post(&mut c, "/v1/chat/completions", "", stream);
    eprintln!("SSE over HTTPS: {:?}", t.elapsed());
    assert!(
        contains(&r.body, "data: [DONE]"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    {
        let log = up.log.lock().unwrap();
        assert_eq!(log.len(), 2);
        let (head, _) = &log[0];
        assert_eq!(
            header(head, "authorization").as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    let first = proxy.measurement.clone();
    drop(proxy);

    // Another CA: the chain does not verify, the client gets a 502 naming the TLS failure
    // and nothing reached the upstream.
    let proxy = start(&wrong);
    // The routes (here the CA) are measured: the policy pinning the first proxy does not
    // release the key to this one.
    assert_ne!(proxy.measurement, first);
    let mut c = proxy.connect();
    let r = post(&mut c, "/v1/chat/completions", "", chat);
    assert!(r.status.starts_with("HTTP/1.1 503"), "{}", r.status);
    broker.allow(&proxy.measurement);
    for _ in 0..2 {
        let r = post(&mut c, "/v1/chat/completions", "", chat);
        assert!(r.status.starts_with("HTTP/1.1 502"), "{}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("TLS") && body.contains("certificate"),
            "{body}"
        );
    }
    assert_eq!(up.log.lock().unwrap().len(), 2);
}

fn put_secret(broker: &BrokerSetup, path: &str, value: &str) {
    let r = admin::call(
        &broker.state,
        AdminRequest::SecretPut {
            path: path.into(),
            value_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value),
        },
    )
    .unwrap();
    assert!(r.ok, "{:?}", r.error);
}

#[test]
fn rotated_key_is_fetched_again_after_a_401_and_a_cut_stream_closes_only_that_client() {
    if !claw_testsupport::require_kvm(
        "rotated_key_is_fetched_again_after_a_401_and_a_cut_stream_closes_only_that_client",
    ) {
        return;
    }
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let upstream = format!("http://{}", up.addr);
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    let mut c = proxy.connect();
    let last_auth = || {
        let log = up.log.lock().unwrap();
        header(&log.last().unwrap().0, "authorization").unwrap()
    };
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(last_auth(), format!("Bearer {KEY}"));

    put_secret(&broker, "default/key/llm", ROTATED);
    // The cached key is still used until the upstream says 401 ...
    let r = post(&mut c, "/unauthorized", "", "");
    assert!(r.status.starts_with("HTTP/1.1 401"), "{}", r.status);
    assert_eq!(last_auth(), format!("Bearer {KEY}"));
    // ... then the next request fetches the rotated one.
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(last_auth(), format!("Bearer {ROTATED}"));

    // The upstream cuts a stream: that client sees the truncated response end with the
    // connection; another client is served as before.
    let mut cut = proxy.connect();
    cut.write_all(b"GET /reset HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = cut.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200 OK") && got.contains("data: "),
        "{got}"
    );
    assert!(
        !got.ends_with("0\r\n\r\n"),
        "a cut stream must not look complete: {got}"
    );
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn broker_down_at_start_gives_503_and_the_proxy_keeps_serving() {
    if !claw_testsupport::require_kvm("broker_down_at_start_gives_503_and_the_proxy_keeps_serving")
    {
        return;
    }
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let cert = broker.state.join("tls.crt");
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let upstream = format!("http://{}", up.addr);
    let proxy = Proxy::start(&[
        "--broker",
        &dead,
        "--broker-cert",
        cert.to_str().unwrap(),
        "--state-dir",
        broker.host_state.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--secret",
        "default/key/llm",
        "--inject",
        "Authorization: Bearer {secret}",
    ]);
    let mut c = proxy.connect();
    for _ in 0..3 {
        let r = post(&mut c, "/v1/chat/completions", "", "{}");
        assert!(r.status.starts_with("HTTP/1.1 503"), "{}", r.status);
        assert!(contains(&r.body, "key broker did not release"));
    }
    assert!(up.log.lock().unwrap().is_empty());
}

#[test]
fn https_upstream_with_a_certificate_for_another_name_gives_502() {
    if !claw_testsupport::require_kvm(
        "https_upstream_with_a_certificate_for_another_name_gives_502",
    ) {
        return;
    }
    let (ca_pem, server) = test_pki_for("upstream.test");
    let up = Upstream::start_with(Some(server), false);
    let (proxy, _broker, _ca) = https_proxy(&up.addr, &ca_pem);
    let mut c = proxy.connect();
    let r = post(&mut c, "/v1/chat/completions", "", "{}");
    assert!(r.status.starts_with("HTTP/1.1 502"), "{}", r.status);
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("TLS") && body.contains("certificate"),
        "{body}"
    );
    assert!(up.log.lock().unwrap().is_empty());
}

/// A TCP relay to `to` that records every byte it carries, both ways: what the host's relay
/// (and anyone on the host's network path) sees of the enclave's upstream traffic.
/// A proxy with one route to `https://ADDR` (its certificate checked against `ca_pem`, the key
/// injected as a bearer token), allowed by a fresh broker: the proxy, the broker and the
/// directory holding the CA file, all kept for the test's length.
fn https_proxy(addr: &str, ca_pem: &str) -> (Proxy, BrokerSetup, tempfile::TempDir) {
    let broker = BrokerSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let upstream = format!("https://{addr}");
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
            "--upstream-ca",
            ca.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    (proxy, broker, dir)
}

fn recording_relay(to: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(a) = s else { continue };
            let Ok(b) = TcpStream::connect(&to) else {
                continue;
            };
            for (mut from, mut into) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                sink.lock().unwrap().extend_from_slice(&buf[..n]);
                                if into.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, seen)
}

/// A TCP relay to `to` that flips one bit of byte `at` of what the first connection's
/// upstream sends (a host tampering with a TLS record on its way into the enclave); later
/// connections pass through untouched.
fn tampering_relay(to: String, at: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(a) = s else { continue };
            let Ok(b) = TcpStream::connect(&to) else {
                continue;
            };
            let flip_at = (i == 0).then_some(at);
            for (mut from, mut into, flip) in [
                (a.try_clone().unwrap(), b.try_clone().unwrap(), None),
                (b, a, flip_at),
            ] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    let mut passed = 0usize;
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if let Some(at) =
                                    flip.filter(|at| (passed..passed + n).contains(at))
                                {
                                    buf[at - passed] ^= 0x01;
                                }
                                passed += n;
                                if into.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

/// The record AEAD is checked in the enclave: a TLS record modified on the host's relay is
/// refused, none of its bytes reach the client, and the proxy keeps serving.
#[test]
fn a_tls_record_modified_on_its_way_from_the_upstream_never_reaches_the_client() {
    if !claw_testsupport::require_kvm(
        "a_tls_record_modified_on_its_way_from_the_upstream_never_reaches_the_client",
    ) {
        return;
    }
    let (ca_pem, server) = test_pki();
    let up = Upstream::start_with(Some(server), true);
    // 300 kB in: well past the handshake, inside the application data of a 1 MiB stream.
    let relay = tampering_relay(up.addr.clone(), 300_000);
    let (proxy, _broker, _ca) = https_proxy(&relay, &ca_pem);
    let mut c = proxy.connect();
    c.write_all(b"GET /big/1 HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:.200}");
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    // Cut short: the client saw the connection close before the last chunk...
    assert!(!text.ends_with("0\r\n\r\n"), "the stream arrived whole");
    assert!(raw.len() < 1 << 20, "{} bytes arrived", raw.len());
    // ...and every byte it did get is the upstream's (chunk sizes, CRLF, 'x'): nothing of
    // the modified record was released.
    assert!(
        raw[body_start..]
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'x' | b'\r' | b'\n')),
        "a byte not sent by the upstream reached the client"
    );
    // The proxy keeps serving, over a new upstream connection.
    let mut c = proxy.connect();
    c.write_all(b"GET /big/1 HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, |_| {});
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body.iter().all(|b| *b == b'x'));
}

#[test]
fn the_bytes_relayed_to_an_https_upstream_never_contain_the_key() {
    if !claw_testsupport::require_kvm(
        "the_bytes_relayed_to_an_https_upstream_never_contain_the_key",
    ) {
        return;
    }
    let (ca_pem, server) = test_pki();
    let up = Upstream::start_with(Some(server), false);
    let (relay, seen) = recording_relay(up.addr.clone());
    let (proxy, _broker, _ca) = https_proxy(&relay, &ca_pem);
    let mut c = proxy.connect();
    for body in ["{}", r#"{"stream":true}"#] {
        let r = post(&mut c, "/v1/chat/completions", "", body);
        assert_eq!(
            r.status,
            "HTTP/1.1 200 OK",
            "{}",
            proxy.stderr.lock().unwrap()
        );
    }
    {
        let log = up.log.lock().unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(
            header(&log[0].0, "authorization").as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() > 1000,
        "the relay saw the TLS traffic ({} bytes)",
        seen.len()
    );
    assert!(
        !contains(&seen, KEY),
        "the key crossed the host in plain text"
    );
    assert!(
        !contains(&seen, "chat/completions"),
        "requests crossed the host in plain text"
    );
    let stderr = proxy.stderr.lock().unwrap();
    assert!(!stderr.contains(KEY));
}

#[test]
fn upstream_tls_connections_are_kept_alive_and_reused() {
    if !claw_testsupport::require_kvm("upstream_tls_connections_are_kept_alive_and_reused") {
        return;
    }
    let (ca_pem, server) = test_pki();
    let up = Upstream::start_with(Some(server), true);
    let (proxy, _broker, _ca) = https_proxy(&up.addr, &ca_pem);
    let mut c = proxy.connect();
    let mut times = Vec::new();
    for i in 0..20 {
        let body = if i % 5 == 4 {
            r#"{"stream":true}"#
        } else {
            "{}"
        };
        let t = Instant::now();
        let r = post(&mut c, "/v1/chat/completions", "", body);
        times.push(t.elapsed());
        assert_eq!(
            r.status,
            "HTTP/1.1 200 OK",
            "{}",
            proxy.stderr.lock().unwrap()
        );
    }
    assert_eq!(up.log.lock().unwrap().len(), 20);
    assert_eq!(
        up.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one TLS connection to the upstream, reused"
    );
    let mut json: Vec<_> = times
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4 && *i > 0)
        .map(|(_, t)| *t)
        .collect();
    json.sort();
    eprintln!(
        "first request {:?}; reused-connection JSON requests: p50 {:?}",
        times[0],
        json[json.len() / 2]
    );
}

#[test]
fn sixteen_concurrent_clients_are_all_served_with_their_key() {
    if !claw_testsupport::require_kvm("sixteen_concurrent_clients_are_all_served_with_their_key") {
        return;
    }
    let (ca_pem, server) = test_pki();
    let up = Upstream::start_with(Some(server), true);
    let (proxy, _broker, _ca) = https_proxy(&up.addr, &ca_pem);
    // Warm up: the key fetch.
    let mut c = proxy.connect();
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
    let per_client = 25;
    let t = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let mut c = proxy.connect();
            std::thread::spawn(move || {
                for _ in 0..per_client {
                    let r = post(&mut c, "/v1/chat/completions", "", "{}");
                    assert_eq!(r.status, "HTTP/1.1 200 OK");
                    assert!(contains(&r.body, "Hello!"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = t.elapsed();
    let n = 16 * per_client;
    eprintln!(
        "16 clients x {per_client} requests over HTTPS in {elapsed:?}: {:.0} requests/s; {} upstream connections",
        n as f64 / elapsed.as_secs_f64(),
        up.conns.load(std::sync::atomic::Ordering::SeqCst)
    );
    let log = up.log.lock().unwrap();
    assert_eq!(log.len(), n + 1);
    let want = format!("Bearer {KEY}");
    assert!(log
        .iter()
        .all(|(head, _)| header(head, "authorization").as_deref() == Some(want.as_str())));
    assert!(up.conns.load(std::sync::atomic::Ordering::SeqCst) <= 17);
}

/// A network namespace joined to the host by a veth pair: the host side is `host_ip`.
struct NetNs {
    name: String,
    veth: String,
    host_ip: String,
}

impl NetNs {
    fn create(tag: u32) -> NetNs {
        let name = format!("clawproxy{tag}");
        let (veth, peer) = (format!("clpx{tag}h"), format!("clpx{tag}c"));
        let net = 16 + tag % 200;
        let (host_ip, ns_ip) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
        let ns = NetNs {
            name: name.clone(),
            veth: veth.clone(),
            host_ip: host_ip.clone(),
        };
        for cmd in [
            format!("ip netns add {name}"),
            format!("ip link add {veth} type veth peer name {peer}"),
            format!("ip link set {peer} netns {name}"),
            format!("ip addr add {host_ip}/30 dev {veth}"),
            format!("ip link set {veth} up"),
            format!("ip -n {name} addr add {ns_ip}/30 dev {peer}"),
            format!("ip -n {name} link set {peer} up"),
            format!("ip -n {name} link set lo up"),
        ] {
            let args: Vec<&str> = cmd.split(' ').collect();
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Home-lab wiring: a NanoClaw container in its own network namespace calls the proxy over
/// a veth pair and never holds the key.
#[test]
fn a_nanoclaw_container_uses_the_proxy_and_never_holds_the_key() {
    if !claw_testsupport::require_kvm("a_nanoclaw_container_uses_the_proxy_and_never_holds_the_key")
        || !claw_testsupport::require_root(
            "a_nanoclaw_container_uses_the_proxy_and_never_holds_the_key",
        )
    {
        return;
    }
    // The workspace builds nanoclaw next to ironclaw.
    let nanoclaw = std::path::Path::new(env!("CARGO_BIN_EXE_ironclaw")).with_file_name("nanoclaw");
    assert!(
        nanoclaw.is_file(),
        "{} is missing: cargo build -p nanoclaw",
        nanoclaw.display()
    );
    let ns = NetNs::create(std::process::id() % 1000);
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let upstream = format!("http://{}", up.addr);
    let listen = format!("tcp:{}:0", ns.host_ip);
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    // Proxy::start listens on 127.0.0.1 too; the container uses the veth address.
    let veth_addr = proxy.listener_on(&ns.host_ip);

    let bundle = claw_testsupport::bundle::Bundle::busybox().expect("busybox bundle");
    let out = Command::new(&nanoclaw)
        .args(["spec", "--bundle"])
        .arg(bundle.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = bundle.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let script = format!(
        "wget -O - --header 'Authorization: Bearer container-fake' \
         --post-data '{{\"model\":\"gpt-4o\"}}' http://{}/v1/chat/completions 2>&1; echo; env",
        veth_addr
    );
    spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    spec["process"]["terminal"] = serde_json::json!(false);
    for n in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = serde_json::json!(format!("/run/netns/{}", ns.name));
        }
    }
    bundle.write_config(&spec).unwrap();
    let runtime = claw_testsupport::bundle::Runtime::new(&nanoclaw).unwrap();
    let out = runtime.run(bundle.path(), "proxyclient").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}\nproxy: {}",
        String::from_utf8_lossy(&out.stderr),
        proxy.stderr.lock().unwrap()
    );
    assert!(
        stdout.contains("Hello!"),
        "{stdout}\nproxy: {}",
        proxy.stderr.lock().unwrap()
    );
    assert!(!stdout.contains(KEY), "the container saw the key");
    {
        let log = up.log.lock().unwrap();
        let (head, _) = log.last().unwrap();
        assert_eq!(
            header(head, "authorization").as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    // Nothing in the container's files holds the key either.
    let mut stack = vec![bundle.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                assert!(
                    !contains(&bytes, KEY),
                    "{} holds the key",
                    e.path().display()
                );
            }
        }
    }
}

#[test]
fn a_large_stream_is_relayed_whole_and_in_order() {
    if !claw_testsupport::require_kvm("a_large_stream_is_relayed_whole_and_in_order") {
        return;
    }
    let (ca_pem, server) = test_pki();
    let up = Upstream::start_with(Some(server), true);
    let (proxy, _broker, _ca) = https_proxy(&up.addr, &ca_pem);
    let mut c = proxy.connect();
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
    let mib = 4;
    let t = Instant::now();
    c.write_all(format!("GET /big/{mib} HTTP/1.1\r\nHost: proxy\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut c, |_| {});
    let elapsed = t.elapsed();
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(r.body.len(), mib << 20);
    assert!(r.body.iter().all(|b| *b == b'x'));
    eprintln!(
        "{mib} MiB streamed from the HTTPS upstream through the enclave in {elapsed:?}: {:.1} MB/s",
        (mib << 20) as f64 / 1e6 / elapsed.as_secs_f64()
    );
    // The connection is still usable.
    assert_eq!(
        post(&mut c, "/v1/chat/completions", "", "{}").status,
        "HTTP/1.1 200 OK"
    );
}

/// Record protection is the enclave's native AEAD: each suite the proxy offers, against an
/// upstream that speaks only that one, carries a request body out and a response stream
/// back intact.
#[test]
fn every_tls_version_and_aead_the_proxy_offers_carries_requests_and_streams() {
    if !claw_testsupport::require_kvm(
        "every_tls_version_and_aead_the_proxy_offers_carries_requests_and_streams",
    ) {
        return;
    }
    use rustls::crypto::ring::cipher_suite as cs;
    // The test CA's key is ECDSA, so TLS 1.2 takes the ECDHE_ECDSA suites (the RSA ones
    // differ only in the signature, not in record protection).
    let suites = [
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    let (ca_pem, servers) = test_pki_per_suite(&suites);
    let ups: Vec<Upstream> = servers
        .into_iter()
        .map(|cfg| Upstream::start_with(Some(cfg), true))
        .collect();
    let broker = BrokerSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut args: Vec<String> = broker.args();
    args.extend(["--upstream-ca".to_string(), ca.display().to_string()]);
    for up in &ups {
        args.extend(
            [
                "--upstream",
                &format!("https://{}", up.addr),
                "--secret",
                "default/key/llm",
                "--inject",
                "Authorization: Bearer {secret}",
            ]
            .map(String::from),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    let mut c = proxy.connect();
    // A body over one TLS record (16 KiB) each way.
    let body = format!("{{\"prompt\":\"{}\"}}", "y".repeat(40_000));
    for (suite, up) in suites.iter().zip(&ups) {
        let name = format!("{:?}", suite.suite());
        let r = post(
            &mut c,
            &format!("/{}/v1/chat/completions", up.addr),
            "",
            &body,
        );
        assert_eq!(
            r.status,
            "HTTP/1.1 200 OK",
            "{name}: {}",
            proxy.stderr.lock().unwrap()
        );
        assert!(contains(&r.body, "chat.completion"), "{name}");
        {
            let log = up.log.lock().unwrap();
            let (head, got) = log.last().expect("the upstream saw the request");
            assert_eq!(got, body.as_bytes(), "{name}: request body");
            assert_eq!(
                header(head, "authorization").as_deref(),
                Some(format!("Bearer {KEY}").as_str()),
                "{name}"
            );
        }
        c.write_all(format!("GET /{}/big/1 HTTP/1.1\r\nHost: proxy\r\n\r\n", up.addr).as_bytes())
            .unwrap();
        let r = read_response(&mut c, |_| {});
        assert_eq!(r.status, "HTTP/1.1 200 OK", "{name}");
        assert_eq!(r.body.len(), 1 << 20, "{name}");
        assert!(
            r.body.iter().all(|b| *b == b'x'),
            "{name}: stream corrupted"
        );
        assert_eq!(
            up.conns.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{name}"
        );
    }
}

#[test]
fn oversized_bodies_and_a_memory_flood_are_refused_and_the_proxy_keeps_serving() {
    if !claw_testsupport::require_kvm(
        "oversized_bodies_and_a_memory_flood_are_refused_and_the_proxy_keeps_serving",
    ) {
        return;
    }
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let upstream = format!("http://{}", up.addr);
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);

    let mut big = proxy.connect();
    big.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3145728\r\n\r\n")
        .unwrap();
    let r = read_response(&mut big, |_| {});
    assert!(r.status.starts_with("HTTP/1.1 413"), "{}", r.status);

    // Clients that each announce 2 MiB and send most of it, never finishing: the ones that
    // would take the buffered total past the budget are refused with a 503.
    let chunk = vec![b'a'; (2 << 20) - 4096];
    let mut floods = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        let mut s = proxy.connect();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n")
            .unwrap();
        if s.write_all(&chunk).is_err() {
            refused += 1;
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
        floods.push(s);
    }
    for s in floods.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = [0u8; 64];
        if let Ok(n) = s.read(&mut got) {
            if String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert!(refused >= 2, "only {refused} of 4 flooding clients refused");
    // Still serving.
    let mut c = proxy.connect();
    let r = post(&mut c, "/v1/chat/completions", "", "{}");
    assert_eq!(
        r.status,
        "HTTP/1.1 200 OK",
        "{}",
        proxy.stderr.lock().unwrap()
    );
}

/// An address on the host's loopback device for the proxy to listen on, removed on drop.
/// Containers on a podman bridge reach it through their default route (the host delivers
/// packets for any of its own addresses), and it exists before any container or bridge does.
struct HostAddr(String);

impl HostAddr {
    /// A /32 unique to this test process and call.
    fn add() -> HostAddr {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = (std::process::id() * 7 + n) % 60000;
        let ip = format!("10.214.{}.{}", tag / 250, 1 + tag % 250);
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip addr add {ip}/32 dev lo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        HostAddr(ip)
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

/// The README's home-lab compose shape: two services on podman-compose's own bridge network,
/// one OpenAI-style (`Authorization: Bearer`) and one Anthropic-style (`x-api-key`), each
/// configured with the proxy as its base URL and a dummy key. Each upstream sees its own real
/// key; neither container's output nor environment holds either key.
fn compose_services_use_the_proxy(runtime: &std::path::Path, test: &str) {
    if !claw_testsupport::require_kvm(test)
        || !claw_testsupport::require_root(test)
        || !claw_testsupport::require_tool(test, "podman")
        || !claw_testsupport::require_tool(test, "podman-compose")
    {
        return;
    }
    assert!(
        runtime.is_file(),
        "{} is missing: cargo build -p nanoclaw",
        runtime.display()
    );
    let addr = HostAddr::add();
    let (openai, anthropic) = (Upstream::start(), Upstream::start());
    let broker = BrokerSetup::start();
    let listen = format!("tcp:{}:0", addr.0);
    let (up1, up2) = (
        format!("http://{}", openai.addr),
        format!("http://{}", anthropic.addr),
    );
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--listen",
            &listen,
            "--upstream",
            &up1,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
            "--upstream",
            &up2,
            "--secret",
            "default/key/anthropic",
            "--inject",
            "x-api-key: {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    let proxy_addr = proxy.listener_on(&addr.0);

    let rootfs = claw_testsupport::BusyboxRootfs::new().unwrap();
    // `$$` is compose's escape for a literal `$`: the shell in the container expands it.
    let call = |header: &str, base: &str, path: &str| {
        format!(
            "[\"sh\", \"-c\", \"wget -q -O - --header \\\"{header}\\\" --post-data '{{\\\"model\\\":\\\"m\\\"}}' \\\"$${base}{path}\\\"; echo; env\"]"
        )
    };
    let project = claw_testsupport::engines::ComposeProject::new(runtime, rootfs.path(), |image| {
        format!(
            "services:\n\
             \x20 chat-ui:\n\
             \x20   image: {image}\n\
             \x20   environment:\n\
             \x20     OPENAI_API_BASE_URL: http://{proxy_addr}/{openai}/v1\n\
             \x20     OPENAI_API_KEY: unused-client-key\n\
             \x20   ulimits:\n      nofile: 1024\n      nproc: 1024\n\
             \x20   command: {chat}\n\
             \x20 agent:\n\
             \x20   image: {image}\n\
             \x20   environment:\n\
             \x20     ANTHROPIC_BASE_URL: http://{proxy_addr}/{anthropic}\n\
             \x20     ANTHROPIC_API_KEY: unused-client-key\n\
             \x20   ulimits:\n      nofile: 1024\n      nproc: 1024\n\
             \x20   command: {agent}\n",
            openai = openai.addr,
            anthropic = anthropic.addr,
            chat = call(
                "Authorization: Bearer $$OPENAI_API_KEY",
                "{OPENAI_API_BASE_URL}",
                "/chat/completions"
            ),
            agent = call(
                "x-api-key: $$ANTHROPIC_API_KEY",
                "{ANTHROPIC_BASE_URL}",
                "/v1/chat/completions"
            ),
        )
    });
    let out = claw_testsupport::engines::run(&mut project.command(&["up"]));
    let diag = format!(
        "stdout: {}\nstderr: {}\nproxy: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.stderr.lock().unwrap()
    );
    for service in ["chat-ui", "agent"] {
        let container = format!("{}_{service}_1", project.name);
        let state =
            claw_testsupport::engines::run_ok(claw_testsupport::engines::podman(runtime).args([
                "inspect",
                "--format",
                "{{.State.ExitCode}} {{.OCIRuntime}}",
                &container,
            ]));
        assert_eq!(
            state.trim(),
            format!("0 {}", runtime.display()),
            "{service}: {diag}"
        );
        let logs = claw_testsupport::engines::run_ok(
            claw_testsupport::engines::podman(runtime).args(["logs", &container]),
        );
        assert!(logs.contains("Hello!"), "{service}: {logs}\n{diag}");
        assert!(
            logs.contains("unused-client-key"),
            "{service}: the environment is in the output: {logs}"
        );
        for key in [KEY, KEY2] {
            assert!(!logs.contains(key), "{service} saw a key: {logs}");
        }
    }
    for (up, name, want) in [
        (&openai, "authorization", format!("Bearer {KEY}")),
        (&anthropic, "x-api-key", KEY2.to_string()),
    ] {
        let log = up.log.lock().unwrap();
        assert_eq!(log.len(), 1, "{name}: {log:?}");
        let (head, _) = &log[0];
        assert_eq!(header(head, name).as_deref(), Some(want.as_str()), "{head}");
        assert!(!head.contains("unused-client-key"), "{head}");
    }
}

#[test]
fn podman_compose_services_use_the_proxy_with_runc() {
    compose_services_use_the_proxy(
        &claw_testsupport::which("runc").unwrap_or_else(|| PathBuf::from("/usr/sbin/runc")),
        "podman_compose_services_use_the_proxy_with_runc",
    );
}

#[test]
fn podman_compose_services_use_the_proxy_with_nanoclaw() {
    compose_services_use_the_proxy(
        &std::path::Path::new(env!("CARGO_BIN_EXE_ironclaw")).with_file_name("nanoclaw"),
        "podman_compose_services_use_the_proxy_with_nanoclaw",
    );
}

/// Home-lab wiring with podman: a container started by podman (runtime: nanoclaw, the
/// workspace's OCI runtime) in its own network namespace, `--network ns:` to a namespace
/// whose veth peer is the host address the proxy listens on, calls the proxy with a dummy
/// key. The upstream sees the real key; the container's output and environment do not.
#[test]
fn a_podman_container_uses_the_proxy_and_never_holds_the_key() {
    const TEST: &str = "a_podman_container_uses_the_proxy_and_never_holds_the_key";
    if !claw_testsupport::require_kvm(TEST)
        || !claw_testsupport::require_root(TEST)
        || !claw_testsupport::require_tool(TEST, "podman")
    {
        return;
    }
    let nanoclaw = std::path::Path::new(env!("CARGO_BIN_EXE_ironclaw")).with_file_name("nanoclaw");
    assert!(
        nanoclaw.is_file(),
        "{} is missing: cargo build -p nanoclaw",
        nanoclaw.display()
    );
    // A tag (interface names, subnet) apart from the nanoclaw test's, which may run at the same time.
    let ns = NetNs::create(std::process::id() % 1000 + 1100);
    let up = Upstream::start();
    let broker = BrokerSetup::start();
    let upstream = format!("http://{}", up.addr);
    let listen = format!("tcp:{}:0", ns.host_ip);
    let mut args: Vec<String> = broker.args();
    args.extend(
        [
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--secret",
            "default/key/llm",
            "--inject",
            "Authorization: Bearer {secret}",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&args);
    broker.allow(&proxy.measurement);
    let veth_addr = proxy.listener_on(&ns.host_ip);

    let rootfs = claw_testsupport::BusyboxRootfs::new().unwrap();
    let c = claw_testsupport::engines::PodmanContainer::new(&nanoclaw, "claw-proxyclient");
    let script = format!(
        "wget -O - --header 'Authorization: Bearer container-fake' \
         --post-data '{{\"model\":\"gpt-4o\"}}' http://{veth_addr}/v1/chat/completions 2>&1; \
         echo; env; ip addr 2>/dev/null || cat /proc/net/dev"
    );
    let out = claw_testsupport::engines::run(
        claw_testsupport::engines::podman(&nanoclaw)
            .args(["run", "--rm", "--name", &c.name])
            .args(claw_testsupport::engines::PODMAN_ULIMITS)
            .arg(format!("--network=ns:/run/netns/{}", ns.name))
            .args(["--env", "OPENAI_API_KEY=container-fake"])
            .arg("--rootfs")
            .arg(rootfs.path())
            .args(["sh", "-c", &script]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}\nproxy: {}",
        String::from_utf8_lossy(&out.stderr),
        proxy.stderr.lock().unwrap()
    );
    assert!(
        stdout.contains("Hello!"),
        "{stdout}\nproxy: {}",
        proxy.stderr.lock().unwrap()
    );
    // The container ran in the namespace it was given: its only interface besides lo is the
    // veth peer (not podman's bridge, not the host's interfaces).
    assert!(
        stdout.contains(&format!("clpx{}c", std::process::id() % 1000 + 1100)),
        "{stdout}"
    );
    assert!(stdout.contains("OPENAI_API_KEY=container-fake"), "{stdout}");
    assert!(!stdout.contains(KEY), "the container saw the key");
    let log = up.log.lock().unwrap();
    let (head, _) = log.last().expect("the upstream got the request");
    assert_eq!(
        header(head, "authorization").as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    // Nothing in the container's files holds the key either.
    let mut stack = vec![rootfs.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                assert!(
                    !contains(&bytes, KEY),
                    "{} holds the key",
                    e.path().display()
                );
            }
        }
    }
}
