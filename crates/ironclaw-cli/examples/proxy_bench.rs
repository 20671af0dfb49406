//! `ironclaw proxy` against a direct client → upstream TLS connection, in one run.
//!
//! An HTTPS upstream on 127.0.0.1 (its own test CA, rustls, a thread per keep-alive
//! connection) answers `POST /v1/chat/completions` with a small JSON body and `GET /big/N`
//! with N MiB in 64 KiB chunks. A key broker (in process, HTTPS) holds the key and releases
//! it to the proxy's measurement. The anchor is a rustls client talking to the same upstream
//! directly (keep-alive, TLS 1.3, the same cipher suite the proxy negotiates). Measured:
//! - first request after start: the proxy process is spawned, its listening line seen, then
//!   one request timed (attestation + key fetch + TCP/TLS handshake in the enclave + the
//!   request); the anchor is a fresh direct TLS connection plus one request;
//! - p50/p99 of small requests at 1 client, and requests/s at 16 clients, each client on
//!   its own keep-alive connection (the proxy reuses upstream TLS connections);
//! - streamed throughput of one `GET /big/N`.
//!
//! Every answer is checked (status, body length); the upstream checks the key.
//!
//! Usage: proxy_bench IRONCLAW_BINARY [SECONDS=5] [MIB=16] [SUITE=chacha20]
//!
//! SUITE is the one TLS 1.3 suite the upstream (and the anchor) speaks: `chacha20`
//! (ChaCha20-Poly1305, which the proxy offers first), `aes128gcm` or `aes256gcm`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::{Broker, BrokerConfig};
use rustls::pki_types::pem::PemObject;

const KEY: &str = "sk-bench-enclave-only-1234";
const JSON: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}"#;

type Bench<T> = Result<T, Box<dyn std::error::Error>>;

/// The TLS 1.3 suite named on the command line.
fn suite(name: &str) -> Bench<rustls::CipherSuite> {
    Ok(match name {
        "chacha20" => rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "aes128gcm" => rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        "aes256gcm" => rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
        other => {
            return Err(format!("SUITE: {other}: not chacha20, aes128gcm or aes256gcm").into())
        }
    })
}

/// ring's provider with only `suite`.
fn provider_with(suite: rustls::CipherSuite) -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    provider
}

fn pki(suite: rustls::CipherSuite) -> Bench<(String, Arc<rustls::ServerConfig>)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&leaf_key, &ca)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider_with(suite)))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)?;
    Ok((ca.pem(), Arc::new(cfg)))
}

fn read_head<R: Read>(r: &mut R) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).to_ascii_lowercase())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

/// The upstream: HTTPS with `cfg`, plain HTTP without; a thread per connection.
fn upstream(l: TcpListener, cfg: Option<Arc<rustls::ServerConfig>>) {
    for s in l.incoming().flatten() {
        let _ = s.set_nodelay(true);
        let cfg = cfg.clone();
        std::thread::spawn(move || match cfg {
            None => answer(s),
            Some(cfg) => {
                if let Ok(conn) = rustls::ServerConnection::new(cfg) {
                    answer(rustls::StreamOwned::new(conn, s));
                }
            }
        });
    }
}

/// Answers requests until the client goes away; a request without the key is a 401 (the
/// client then reports a bad answer).
fn answer<S: Read + Write>(mut s: S) {
    while let Some(head) = read_head(&mut s) {
        let len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        // Origin-form, or absolute-form as the proxy may forward it.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
            None => target,
        };
        let authorized = header(&head, "authorization").as_deref()
            == Some(&format!("bearer {}", KEY.to_ascii_lowercase()));
        let ok = if !authorized {
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        } else if let Some(mib) = path.strip_prefix("/big/") {
            let mib: usize = mib.parse().unwrap_or(1);
            let chunk = vec![b'x'; 64 << 10];
            let mut r = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for _ in 0..mib * 16 {
                r = r
                    .and_then(|_| s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()))
                    .and_then(|_| s.write_all(&chunk))
                    .and_then(|_| s.write_all(b"\r\n"));
            }
            r.and_then(|_| s.write_all(b"0\r\n\r\n"))
        } else {
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    JSON.len()
                )
                .as_bytes(),
            )
            .and_then(|_| s.write_all(JSON))
        };
        if ok.and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

/// Reads one response (Content-Length or chunked) and returns (status, body length).
fn response<R: BufRead>(r: &mut R) -> Bench<(String, usize)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.trim_end().to_string();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err("closed inside the head".into());
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    if !chunked {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok((status, len));
    }
    let mut total = 0;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim(), 16)?;
        let mut left = size + 2;
        while left > 0 {
            let n = r.read(&mut buf[..left.min(64 << 10)])?;
            if n == 0 {
                return Err("closed inside a chunk".into());
            }
            left -= n;
        }
        if size == 0 {
            return Ok((status, total));
        }
        total += size;
    }
}

/// One keep-alive connection, to the proxy (plain) or the upstream (TLS).
enum Conn {
    /// To the proxy, with the path prefix that picks the route (`/HOST:PORT`).
    Plain(BufReader<TcpStream>, String),
    Tls(Box<BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

impl Conn {
    fn plain(addr: &str, route: &str) -> Bench<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn::Plain(
            BufReader::with_capacity(64 << 10, s),
            format!("/{route}"),
        ))
    }

    fn tls(addr: &str, cfg: &Arc<rustls::ClientConfig>) -> Bench<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let c = rustls::ClientConnection::new(cfg.clone(), "127.0.0.1".try_into()?)?;
        Ok(Conn::Tls(Box::new(BufReader::with_capacity(
            64 << 10,
            rustls::StreamOwned::new(c, s),
        ))))
    }

    /// Sends a request (the direct client adds the key itself) and reads the answer.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Bench<(String, usize)> {
        let mut req = match self {
            Conn::Plain(_, route) => format!("{method} {route}{path} HTTP/1.1\r\n"),
            Conn::Tls(_) => {
                format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n")
            }
        }
        .into_bytes();
        req.extend_from_slice(b"Host: api\r\nContent-Type: application/json\r\n");
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        match self {
            Conn::Plain(r, _) => {
                r.get_mut().write_all(&req)?;
                response(r)
            }
            Conn::Tls(r) => {
                r.get_mut().write_all(&req)?;
                r.get_mut().flush()?;
                response(r)
            }
        }
    }

    fn post(&mut self) -> Bench<()> {
        let (status, len) = self.request(
            "POST",
            "/v1/chat/completions",
            br#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#,
        )?;
        if status != "HTTP/1.1 200 OK" || len != JSON.len() {
            return Err(format!("bad answer: {status}, {len} bytes").into());
        }
        Ok(())
    }
}

fn pct(v: &mut [Duration], p: usize) -> f64 {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3
}

/// `clients` connections doing requests back to back for `secs`: (req/s, p50 ms, p99 ms).
fn load(
    connect: &(dyn Fn() -> Bench<Conn> + Sync),
    clients: usize,
    secs: u64,
) -> Bench<(f64, f64, f64)> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Instant::now();
    let mut all: Vec<Duration> = std::thread::scope(|s| -> Bench<Vec<Duration>> {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| -> Result<Vec<Duration>, String> {
                    let mut c = connect().map_err(|e| e.to_string())?;
                    let mut lat = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        c.post().map_err(|e| e.to_string())?;
                        lat.push(t.elapsed());
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(lat)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "client panicked")??);
        }
        Ok(all)
    })?;
    let rps = count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    Ok((rps, pct(&mut all, 50), pct(&mut all, 99)))
}

/// One `GET /big/MIB` in MB/s.
fn stream(c: &mut Conn, mib: usize) -> Bench<f64> {
    let t = Instant::now();
    let (status, len) = c.request("GET", &format!("/big/{mib}"), b"")?;
    if status != "HTTP/1.1 200 OK" || len != mib << 20 {
        return Err(format!("bad stream: {status}, {len} bytes").into());
    }
    Ok((mib << 20) as f64 / 1e6 / t.elapsed().as_secs_f64())
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Bench<()> {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .ok_or("usage: proxy_bench IRONCLAW_BINARY [SECONDS] [MIB] [SUITE]")?;
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let suite = suite(&args.next().unwrap_or_else(|| "chacha20".into()))?;

    let (ca_pem, server_cfg) = pki(suite)?;
    let l = TcpListener::bind("127.0.0.1:0")?;
    let up = l.local_addr()?.to_string();
    std::thread::spawn(move || upstream(l, Some(server_cfg)));
    // A plain-HTTP upstream as a second route: streaming through it costs the relay and the
    // module's HTTP handling without TLS, so the difference to the HTTPS route is the TLS
    // record processing in the enclave.
    let l = TcpListener::bind("127.0.0.1:0")?;
    let plain_up = l.local_addr()?.to_string();
    std::thread::spawn(move || upstream(l, None));

    let tmp = tempfile::tempdir()?;
    let (state, host_state) = (tmp.path().join("broker"), tmp.path().join("host"));
    let broker = Arc::new(Broker::open(&state, BrokerConfig::default())?);
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None)?;
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls)?;
    let put = admin::call(
        &state,
        AdminRequest::SecretPut {
            path: "default/key/llm".into(),
            value_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY),
        },
    )?;
    if !put.ok {
        return Err(format!("secret put: {:?}", put.error).into());
    }
    let out = Command::new(&bin)
        .args(["platform-key", "--state-dir"])
        .arg(&host_state)
        .output()?;
    let platform_key: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem)?;

    // The anchor's client: the upstream's CA, TLS 1.3 with the suite the upstream speaks
    // (the proxy negotiates the same: the upstream offers nothing else).
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())?;
    roots.add(ca_der)?;
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider_with(suite)))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    // First request after start: spawn, wait for the listening line, one request.
    let spawned = Instant::now();
    let mut child = Command::new(&bin)
        .arg("proxy")
        .args(["--listen", "tcp:127.0.0.1:0", "--print-measurement"])
        .args([
            "--upstream",
            &format!("https://{up}"),
            "--secret",
            "default/key/llm",
        ])
        .args([
            "--inject",
            "Authorization: Bearer {secret}",
            "--upstream-ca",
        ])
        .arg(&ca)
        .args([
            "--upstream",
            &format!("http://{plain_up}"),
            "--secret",
            "default/key/llm",
        ])
        .args(["--inject", "Authorization: Bearer {secret}"])
        .args(["--broker", &server.url(), "--broker-cert"])
        .arg(state.join("tls.crt"))
        .arg("--state-dir")
        .arg(&host_state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let _proxy = Killed(child);
    let mut lines = BufReader::new(stderr).lines();
    let (mut addr, mut measurement) = (None, None);
    while addr.is_none() || measurement.is_none() {
        let line = lines.next().ok_or("proxy exited before listening")??;
        if let Some(a) = line.strip_prefix("ironclaw: listening on tcp:") {
            addr = Some(a.to_string());
        }
        if let Some(m) = line.strip_prefix("measurement: ") {
            measurement = Some(m.to_string());
        }
    }
    let listening = spawned.elapsed();
    std::thread::spawn(move || for _ in lines {});
    let (addr, measurement) = (addr.unwrap_or_default(), measurement.unwrap_or_default());
    let policy = serde_json::json!({
        "trusted_platform_keys": [platform_key],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [measurement]}],
    });
    let set = admin::call(&state, AdminRequest::PolicySet { policy })?;
    if !set.ok {
        return Err(format!("policy: {:?}", set.error).into());
    }
    let t = Instant::now();
    let mut first = Conn::plain(&addr, &up)?;
    first.post()?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut direct = Conn::tls(&up, &client_cfg)?;
    direct.post()?;
    let direct_first_ms = t.elapsed().as_secs_f64() * 1e3;

    println!(
        "proxy start to listening: {:.1} ms; first request (attest + key fetch + TLS handshake in the enclave + request): {first_ms:.1} ms; direct, new TLS connection + request: {direct_first_ms:.1} ms",
        listening.as_secs_f64() * 1e3
    );
    println!();
    println!("| clients | proxy req/s | direct req/s | proxy/direct | proxy p50 / p99 [ms] | direct p50 / p99 [ms] | added p50 [ms] |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let via_proxy = || Conn::plain(&addr, &up);
    let via_direct = || Conn::tls(&up, &client_cfg);
    for clients in [1, 16] {
        let (pr, p50, p99) = load(&via_proxy, clients, secs)?;
        let (dr, d50, d99) = load(&via_direct, clients, secs)?;
        println!(
            "| {clients} | {pr:.0} | {dr:.0} | {:.3} | {p50:.3} / {p99:.3} | {d50:.3} / {d99:.3} | {:.3} |",
            pr / dr,
            p50 - d50
        );
    }
    let p = stream(&mut first, mib)?;
    let plain = stream(&mut Conn::plain(&addr, &plain_up)?, mib)?;
    let d = stream(&mut direct, mib)?;
    // Per byte, the HTTPS route costs the plain route's work plus the TLS record processing.
    let tls_ns = (1.0 / p - 1.0 / plain) * 1e3;
    println!();
    println!(
        "streamed {mib} MiB (chunked, 64 KiB chunks): proxy {p:.1} MB/s, direct {d:.1} MB/s, proxy/direct {:.3}; \
         proxy from a plain-HTTP upstream {plain:.1} MB/s, so TLS in the enclave costs {tls_ns:.1} ns per byte",
        p / d
    );
    server.shutdown();
    Ok(())
}
