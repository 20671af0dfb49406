//! One peer attacking the broker over loopback while another keeps working:
//! slowloris (connections that trickle bytes), `/auth` floods (session table and
//! audit log). Peers are told apart by source address: the attacker connects
//! from 127.0.0.2, the legitimate client from 127.0.0.1 (all of 127/8 is
//! loopback). Each test is bounded in time and prints the legitimate client's
//! latency under attack.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, Engine};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::audit::AuditLimits;
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::http::{self, ServeLimits, ServerHandle, SLOT_WAIT};
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClient;
use ironclaw_enclave::tee::TeeKind;
use serde_json::{json, Value};

const SECRET: &[u8] = b"flood-proof";
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

struct Env {
    // Dropped first: the server stops before its state directory is removed.
    server: Option<ServerHandle>,
    broker: Arc<Broker>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(config: BrokerConfig, limits: ServeLimits) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(Broker::open(dir.path(), config).unwrap());
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = http::start_with(broker.clone(), "127.0.0.1:0", tls, limits).unwrap();
        let env = Env {
            server: Some(server),
            broker,
            dir,
        };
        let r = admin::call(
            env.dir.path(),
            AdminRequest::PolicySet {
                policy: json!({
                    "allow_sample": true,
                    "rules": [{"resources": ["test/key/s"], "tee": ["sample"], "measurements": ["*"]}],
                }),
            },
        )
        .unwrap();
        assert!(r.ok);
        let r = admin::call(
            env.dir.path(),
            AdminRequest::SecretPut {
                path: "test/key/s".into(),
                value_b64: STANDARD.encode(SECRET),
            },
        )
        .unwrap();
        assert!(r.ok);
        env
    }

    fn addr(&self) -> String {
        self.server.as_ref().unwrap().addr().to_string()
    }

    fn client(&self) -> KbsHttpClient {
        let roots = ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    /// A client whose connections come from `src`.
    fn client_from(&self, src: Ipv4Addr) -> KbsHttpClient {
        self.client().with_connector(Arc::new(move |addr: &str| {
            claw_testsupport::net::connect_from_str(src, addr)
        }))
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// One full legitimate exchange on a fresh connection: auth → attest (sample
/// evidence) → resource. Its duration, or what failed.
fn legit_round(env: &Env) -> Result<Duration, String> {
    let t = Instant::now();
    let mut http = env.client();
    let mut kbs = KbsClient::new(TeeKind::SAMPLE, &mut ironclaw_broker::rng());
    let r = http
        .request("POST", "/kbs/v0/auth", None, &kbs.auth_request().unwrap())
        .map_err(|e| format!("auth: {e}"))?;
    let rd = kbs
        .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
        .map_err(|e| format!("auth: {e}"))?;
    let evidence = json!({"svn": "1", "report_data": STANDARD.encode(rd)});
    let body = kbs.attest_request(evidence).unwrap();
    let cookie = kbs.cookie_header();
    let r = http
        .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
        .map_err(|e| format!("attest: {e}"))?;
    kbs.on_attest_response(r.status, &r.body)
        .map_err(|e| format!("attest: {e}"))?;
    let r = http
        .request("GET", "/kbs/v0/resource/test/key/s", cookie.as_deref(), b"")
        .map_err(|e| format!("resource: {e}"))?;
    let secret = kbs
        .on_resource_response(r.status, &r.body)
        .map_err(|e| format!("resource: {e}"))?;
    if secret != SECRET {
        return Err("wrong secret".into());
    }
    Ok(t.elapsed())
}

/// Runs `legit_round` until `stop`; returns the latencies (panics on a failure).
fn legit_until(env: &Env, stop: &AtomicBool) -> Vec<Duration> {
    let mut lat = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match legit_round(env) {
            Ok(d) => lat.push(d),
            Err(e) => panic!(
                "legitimate client failed under attack after {} rounds: {e}",
                lat.len()
            ),
        }
    }
    lat
}

fn report(what: &str, lat: &mut [Duration]) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{what}: {} legitimate rounds, latency median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        lat.len(),
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 95 / 100]),
        ms(lat[lat.len() - 1])
    );
}

#[test]
fn slowloris_from_one_peer_does_not_lock_out_others() {
    let head_timeout = Duration::from_secs(2);
    let limits = ServeLimits {
        max_connections: 128,
        max_connections_per_peer: 16,
        head_timeout,
        ..ServeLimits::default()
    };
    let env = Env::new(BrokerConfig::default(), limits);
    let addr = env.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let held_longest = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    // 2x the global cap in trickling connections, from one peer: half raw TCP
    // sending a byte every 0.5 s (the TLS handshake never completes), half a
    // completed TLS handshake then a request head at a byte every 0.5 s.
    let mut attackers = Vec::new();
    for i in 0..256 {
        let (addr, stop, held, opened) = (
            addr.clone(),
            stop.clone(),
            held_longest.clone(),
            opened.clone(),
        );
        let roots = ironclaw_broker::tls::load_certs(&env.dir.path().join("tls.crt")).unwrap();
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(tcp) = claw_testsupport::net::connect_from_str(ATTACKER, &addr) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                opened.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                let closed = if i % 2 == 0 {
                    trickle_raw(tcp, &stop)
                } else {
                    trickle_tls(tcp, &roots, &stop)
                };
                if closed {
                    held.fetch_max(t.elapsed().as_millis() as usize, Ordering::SeqCst);
                    if t.elapsed() < Duration::from_millis(100) {
                        // Refused at once (per-peer cap): a slowloris retries
                        // later rather than spinning.
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let legit_stop = AtomicBool::new(false);
    let mut lat = std::thread::scope(|s| {
        let h = s.spawn(|| legit_until(&env, &legit_stop));
        // Long enough for several head timeouts to pass under attack.
        std::thread::sleep(head_timeout * 3);
        legit_stop.store(true, Ordering::SeqCst);
        h.join().unwrap()
    });
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(lat.len() >= 3, "only {} rounds", lat.len());
    report("slowloris (256 trickling connections)", &mut lat);
    let held = held_longest.load(Ordering::SeqCst) as u64;
    eprintln!(
        "attacker opened {} connections; the longest the server kept one open: {held} ms",
        opened.load(Ordering::SeqCst)
    );
    // Every trickling connection was closed by the server within the head
    // deadline (+ scheduling slack on a loaded machine), not kept alive by its
    // trickle.
    assert!(held > 0, "no attacker connection was ever closed");
    assert!(
        held <= (head_timeout + Duration::from_millis(1500)).as_millis() as u64,
        "a trickling connection was held {held} ms"
    );
}

/// Sends one byte every 0.5 s until the server closes (true) or `stop` (false).
fn trickle_raw(mut tcp: TcpStream, stop: &AtomicBool) -> bool {
    let hello = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut i = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if tcp.write_all(&hello[i % hello.len()..][..1]).is_err() {
            return true;
        }
        i += 1;
        let mut b = [0u8; 64];
        match tcp.read(&mut b) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// Completes the TLS handshake, then sends a request head one byte every 0.5 s.
fn trickle_tls(
    tcp: TcpStream,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    stop: &AtomicBool,
) -> bool {
    let config = ironclaw_broker::client::client_config(roots).unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let head = b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    let mut i = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if s.write_all(&head[i % head.len()..][..1])
            .and_then(|_| s.flush())
            .is_err()
        {
            return true;
        }
        i += 1;
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
            // A reply means the head completed: the trickle outlived nothing.
            Ok(_) => return true,
        }
    }
}

#[test]
fn auth_flood_from_one_peer_neither_locks_out_others_nor_floods_the_audit_log() {
    const FLOOD: usize = 10_000;
    let config = BrokerConfig {
        audit_limits: AuditLimits {
            summary_interval: Duration::from_millis(200),
            ..AuditLimits::default()
        },
        ..BrokerConfig::default()
    };
    let env = Env::new(config, ServeLimits::default());
    let flooded = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let mut lat = std::thread::scope(|s| {
        let legit = s.spawn(|| legit_until(&env, &done));
        let floods: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut c = env.client_from(ATTACKER);
                    let body = br#"{"version":"0.4.0","tee":"sample","extra-params":{}}"#;
                    while flooded.fetch_add(1, Ordering::SeqCst) < FLOOD {
                        let r = c.request("POST", "/kbs/v0/auth", None, body).unwrap();
                        assert_eq!(r.status, 200, "the flooder itself is never refused");
                    }
                })
            })
            .collect();
        for f in floods {
            f.join().unwrap();
        }
        // The table the flood filled still serves others.
        let after = Instant::now();
        while after.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::SeqCst);
        legit.join().unwrap()
    });
    let took = start.elapsed();
    assert!(!lat.is_empty());
    report(
        &format!(
            "/auth flood ({FLOOD} requests in {:.1} s)",
            took.as_secs_f64()
        ),
        &mut lat,
    );
    // Every legitimate round still works after the flood, at once.
    legit_round(&env).unwrap();

    env.broker.flush_audit();
    let log = env.audit();
    let attacker = ATTACKER.to_string();
    let from_attacker = |l: &&Value| {
        l["peer"]
            .as_str()
            .is_some_and(|p| p == attacker || p.starts_with(&format!("{attacker}:")))
    };
    let written = log
        .iter()
        .filter(from_attacker)
        .filter(|l| l["event"] == "challenge")
        .count();
    let suppressed: u64 = log
        .iter()
        .filter(from_attacker)
        .filter(|l| l["event"] == "suppressed")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    // Nothing is lost: every flooded /auth is a line or counted in a summary.
    assert_eq!(written as u64 + suppressed, FLOOD as u64);
    // The flood wrote at most its burst plus its sustained rate.
    let limits = AuditLimits::default();
    let allowed = limits.per_peer_burst + limits.per_peer_per_sec * took.as_secs_f64() + 1.0;
    assert!(
        (written as f64) <= allowed,
        "{written} challenge lines from one peer in {took:?}"
    );
    let bytes = std::fs::metadata(env.dir.path().join("audit.jsonl"))
        .unwrap()
        .len();
    eprintln!(
        "audit: {written} lines + {} summaries for {FLOOD} flooded /auth; {bytes} bytes in all",
        log.iter().filter(|l| l["event"] == "suppressed").count()
    );
    // Legitimate releases are all recorded.
    let releases = log.iter().filter(|l| l["event"] == "release").count();
    assert_eq!(releases, lat.len() + 1);
    // No session id appears in the log.
    for l in &log {
        if let Some(s) = l["session"].as_str() {
            assert_eq!(s.len(), 32, "a session reference, not an id: {l}");
        }
    }
}

/// Clients behind one address that reconnect quickly find their own closing
/// connections' slots still held for a moment: a connection over the quota
/// waits (up to `SLOT_WAIT`, at most quota-many at once) for a slot instead of
/// being dropped; beyond the waiting line it is closed at once.
#[test]
fn a_connection_over_the_peer_quota_waits_for_a_slot() {
    const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
    let limits = ServeLimits {
        max_connections_per_peer: 2,
        ..ServeLimits::default()
    };
    let env = Env::new(BrokerConfig::default(), limits);
    let addr = env.addr();
    let hold = || claw_testsupport::net::connect_from_str(PEER, &addr).unwrap();
    let (a, _b) = (hold(), hold());
    std::thread::sleep(Duration::from_millis(200));
    // Over the quota: this request waits; a slot frees 300 ms later.
    let waiting = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let t = Instant::now();
            let r = env
                .client_from(PEER)
                .request("GET", "/healthz", None, b"")
                .map(|r| r.status);
            (r, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(a);
        h.join().unwrap()
    });
    assert_eq!(waiting.0.unwrap(), 200);
    assert!(waiting.1 >= Duration::from_millis(250), "{:?}", waiting.1);
    // Let everything above finish (the served connection's slot, the holder).
    drop(_b);
    std::thread::sleep(Duration::from_millis(1500));
    // Ten connections at once: 2 are served (they wait for a TLS handshake),
    // 2 wait for a slot, the other 6 are closed at once; once the wait is over
    // (nothing freed a slot) the 2 waiting ones are closed too.
    let mut conns: Vec<TcpStream> = (0..10).map(|_| hold()).collect();
    let still_open = |conns: &mut Vec<TcpStream>| {
        let mut open = 0;
        for c in conns.iter_mut() {
            c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
            let mut byte = [0u8; 1];
            if matches!(c.read(&mut byte), Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut)
            {
                open += 1;
            }
        }
        open
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(still_open(&mut conns), 4, "2 served + 2 waiting");
    std::thread::sleep(SLOT_WAIT + Duration::from_millis(500));
    assert_eq!(still_open(&mut conns), 2, "the waiting line gave up");
    // Another peer is served meanwhile.
    assert_eq!(
        env.client()
            .request("GET", "/healthz", None, b"")
            .unwrap()
            .status,
        200
    );
}
