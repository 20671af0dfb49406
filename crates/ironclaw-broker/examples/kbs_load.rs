//! Broker throughput and load on loopback (bench/ironclaw-broker-load.sh).
//!
//! `kbs_load releases SECONDS`: releases per second (`GET /kbs/v0/resource` on
//! an attested session: policy, store decrypt, JWE ECDH-ES+A256KW) at 1, 4 and
//! 16 concurrent clients (each from its own loopback address), each on a fresh
//! TLS connection per release and on one keep-alive connection; anchor: the
//! same clients doing a keep-alive request the broker answers 404, measured in
//! the same run.
//!
//! `kbs_load load CLIENTS SECONDS`: CLIENTS concurrent legitimate clients, each
//! from its own loopback address (127.1.x.y: one peer each, as real guests are),
//! looping full sessions (new connection, auth, attest with sample evidence,
//! fetch) for SECONDS; prints sessions/s, latency and the number of errors.
//!
//! `kbs_load attack SECONDS`: one legitimate client's session latency alone
//! (anchor), then while 127.0.0.2 runs a slowloris (256 trickling connections)
//! and an `/auth` flood (2 keep-alive connections) against the same broker.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, Engine};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::http::{self, ServeLimits, ServerHandle};
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClient;
use ironclaw_enclave::tee::TeeKind;
use serde_json::json;

struct Bench {
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Arc::new(Broker::open(dir.path(), BrokerConfig::default()).expect("broker"));
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).expect("tls");
        let server =
            http::start_with(broker, "127.0.0.1:0", tls, ServeLimits::default()).expect("listen");
        let ok = |r: AdminRequest| {
            let reply = admin::call(dir.path(), r).expect("admin");
            assert!(reply.ok, "{:?}", reply.error);
        };
        ok(AdminRequest::PolicySet {
            policy: json!({"allow_sample": true,
                "rules": [{"resources": ["bench/key/*"], "tee": ["sample"], "measurements": ["*"]}]}),
        });
        ok(AdminRequest::SecretPut {
            path: "bench/key/a".into(),
            value_b64: STANDARD.encode(b"bench-secret-0123456789"),
        });
        Bench {
            server: Some(server),
            dir,
        }
    }

    fn addr(&self) -> String {
        self.server.as_ref().expect("server").addr().to_string()
    }

    fn client_from(&self, src: Option<Ipv4Addr>) -> KbsHttpClient {
        let roots =
            ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).expect("cert");
        let c = KbsHttpClient::new(&self.server.as_ref().expect("server").url(), &roots)
            .expect("client");
        match src {
            Some(ip) => c.with_connector(Arc::new(move |a: &str| {
                claw_testsupport::net::connect_from_str(ip, a)
            })),
            None => c,
        }
    }
}

/// auth + attest on `http`; the KBS client state and its cookie.
fn attest(http: &mut KbsHttpClient) -> Result<(KbsClient, Option<String>), String> {
    let mut kbs = KbsClient::new(TeeKind::SAMPLE, &mut ironclaw_broker::rng());
    let r = http
        .request(
            "POST",
            "/kbs/v0/auth",
            None,
            &kbs.auth_request().map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("auth: {e}"))?;
    let rd = kbs
        .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
        .map_err(|e| format!("auth: {e}"))?;
    let body = kbs
        .attest_request(json!({"svn": "1", "report_data": STANDARD.encode(rd)}))
        .map_err(|e| e.to_string())?;
    let cookie = kbs.cookie_header();
    let r = http
        .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
        .map_err(|e| format!("attest: {e}"))?;
    kbs.on_attest_response(r.status, &r.body)
        .map_err(|e| format!("attest: {e}"))?;
    Ok((kbs, cookie))
}

fn fetch(
    http: &mut KbsHttpClient,
    kbs: &mut KbsClient,
    cookie: Option<&str>,
) -> Result<(), String> {
    let r = http
        .request("GET", "/kbs/v0/resource/bench/key/a", cookie, b"")
        .map_err(|e| format!("resource: {e}"))?;
    kbs.on_resource_response(r.status, &r.body)
        .map(|_| ())
        .map_err(|e| format!("resource: {e}"))
}

/// One full session on a fresh connection.
fn session(b: &Bench, src: Option<Ipv4Addr>) -> Result<Duration, String> {
    let t = Instant::now();
    let mut http = b.client_from(src);
    let (mut kbs, cookie) = attest(&mut http)?;
    fetch(&mut http, &mut kbs, cookie.as_deref())?;
    Ok(t.elapsed())
}

fn pct(lat: &mut [Duration], p: usize) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat.sort();
    lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e6
}

#[derive(Clone, Copy)]
enum Mode {
    Anchor404,
    ReleaseKeepAlive,
    ReleaseFresh,
}

/// `clients` threads doing `mode` for `secs`: (completed, latencies).
fn run(b: &Bench, mode: Mode, clients: usize, secs: f64) -> (u64, Vec<Duration>) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let lat = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..clients {
            let (stop, done, lat) = (&stop, &done, &lat);
            s.spawn(move || {
                // One loopback address per client, as distinct hosts would be:
                // clients that reconnect for every release would otherwise
                // share one peer's connection quota (32) with lingering closes.
                let src = Ipv4Addr::new(127, 2, 0, i as u8 + 1);
                let mut http = b.client_from(Some(src));
                let (mut kbs, cookie) = attest(&mut http).expect("attest");
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match mode {
                        Mode::Anchor404 => {
                            let r = http.request("GET", "/nope", None, b"").expect("404");
                            assert_eq!(r.status, 404);
                        }
                        Mode::ReleaseKeepAlive => {
                            fetch(&mut http, &mut kbs, cookie.as_deref()).expect("release")
                        }
                        Mode::ReleaseFresh => {
                            http.close();
                            fetch(&mut http, &mut kbs, cookie.as_deref()).expect("release")
                        }
                    }
                    mine.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat.lock().expect("lock").extend(mine);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    (done.into_inner(), lat.into_inner().expect("lock"))
}

fn releases(secs: f64) {
    let b = Bench::new();
    println!("| clients | load | per second | ratio to anchor | median µs | p90 µs |");
    println!("|---|---|---|---|---|---|");
    for clients in [1usize, 4, 16] {
        let (n_a, mut l_a) = run(&b, Mode::Anchor404, clients, secs);
        let anchor = n_a as f64 / secs;
        for (name, mode) in [
            ("release, keep-alive", Mode::ReleaseKeepAlive),
            ("release, fresh TLS connection", Mode::ReleaseFresh),
        ] {
            let (n, mut l) = run(&b, mode, clients, secs);
            let rate = n as f64 / secs;
            println!(
                "| {clients} | {name} | {rate:.0} | {:.4} | {:.0} | {:.0} |",
                rate / anchor,
                pct(&mut l, 50),
                pct(&mut l, 90)
            );
        }
        println!(
            "| {clients} | anchor: keep-alive 404 | {anchor:.0} | 1 | {:.0} | {:.0} |",
            pct(&mut l_a, 50),
            pct(&mut l_a, 90)
        );
    }
}

fn load(clients: usize, secs: f64) {
    let b = Bench::new();
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let errors = Mutex::new(Vec::<String>::new());
    let lat = Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for i in 0..clients {
            let (stop, ok, errors, lat, b) = (&stop, &ok, &errors, &lat, &b);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    // 127.1.0.1 .. : one peer per client.
                    let n = i + 1;
                    let src = Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8);
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match session(b, Some(src)) {
                            Ok(d) => {
                                mine.push(d);
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => errors.lock().expect("lock").push(e),
                        }
                    }
                    lat.lock().expect("lock").extend(mine);
                })
                .expect("spawn");
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let took = t0.elapsed().as_secs_f64();
    let mut lat = lat.into_inner().expect("lock");
    let errors = errors.into_inner().expect("lock");
    println!(
        "{clients} concurrent clients (one loopback address each), {secs:.0} s: {} full sessions \
         ({:.0}/s), latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors: {}",
        ok.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) as f64 / took,
        pct(&mut lat, 50) / 1000.0,
        pct(&mut lat, 99) / 1000.0,
        pct(&mut lat, 100) / 1000.0,
        errors.len()
    );
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
}

fn trickle(addr: &str, stop: &AtomicBool) {
    const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp): Result<TcpStream, _> =
            claw_testsupport::net::connect_from_str(ATTACKER, addr)
        else {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        };
        let t = Instant::now();
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
        loop {
            if stop.load(Ordering::Relaxed) || tcp.write_all(&[0x16]).is_err() {
                break;
            }
            let mut b = [0u8; 16];
            match tcp.read(&mut b) {
                Ok(0) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                _ => break,
            }
        }
        if t.elapsed() < Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn attack(secs: f64) {
    let b = Bench::new();
    let measure = |b: &Bench| {
        let t0 = Instant::now();
        let mut lat = Vec::new();
        while t0.elapsed().as_secs_f64() < secs {
            lat.push(session(b, None).expect("legitimate session"));
        }
        lat
    };
    let mut alone = measure(&b);
    let stop = AtomicBool::new(false);
    let flooded = AtomicU64::new(0);
    let addr = b.addr();
    let mut under = std::thread::scope(|s| {
        for _ in 0..256 {
            s.spawn(|| trickle(&addr, &stop));
        }
        for _ in 0..2 {
            s.spawn(|| {
                let mut c = b.client_from(Some(Ipv4Addr::new(127, 0, 0, 2)));
                let body = br#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#;
                while !stop.load(Ordering::Relaxed) {
                    if c.request("POST", "/kbs/v0/auth", None, body).is_ok() {
                        flooded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let lat = measure(&b);
        stop.store(true, Ordering::Relaxed);
        lat
    });
    let (a50, u50) = (pct(&mut alone, 50), pct(&mut under, 50));
    println!(
        "| legitimate full session (fresh connection) | sessions | median µs | p90 µs | max µs |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| anchor: no attack | {} | {a50:.0} | {:.0} | {:.0} |",
        alone.len(),
        pct(&mut alone, 90),
        pct(&mut alone, 100)
    );
    println!(
        "| under slowloris (256 conns) + /auth flood ({:.0}/s) from 127.0.0.2 | {} | {u50:.0} | {:.0} | {:.0} |",
        flooded.load(Ordering::Relaxed) as f64 / secs,
        under.len(),
        pct(&mut under, 90),
        pct(&mut under, 100)
    );
    println!("median ratio under attack / anchor: {:.2}", u50 / a50);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: f64| args.get(i).and_then(|a| a.parse::<f64>().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("releases") => releases(num(2, 5.0)),
        Some("load") => load(num(2, 1000.0) as usize, num(3, 60.0)),
        Some("attack") => attack(num(2, 5.0)),
        _ => {
            eprintln!(
                "usage: kbs_load releases [SECONDS] | load [CLIENTS] [SECONDS] | attack [SECONDS]"
            );
            std::process::exit(2);
        }
    }
}
