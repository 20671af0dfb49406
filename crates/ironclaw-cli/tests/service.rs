//! `ironclaw serve`: the example signing service under concurrent, idle and slow clients,
//! measured egress, signals, stale socket files and the per-turn CPU guard.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const KEY: &str = "test-signing-key";

fn need(test: &str) -> bool {
    claw_testsupport::require_kvm(test)
}

/// A running `ironclaw serve`; SIGKILLed on drop if still running.
struct Service {
    child: Child,
    addrs: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        Self::try_start(args).unwrap_or_else(|(status, err)| {
            panic!("ironclaw serve exited early ({status:?}): {err}")
        })
    }

    /// Starts and waits for the "listening on" lines (one per --listen).
    fn try_start(args: &[&str]) -> Result<Service, (Option<ExitStatus>, String)> {
        let listens = args.iter().filter(|a| **a == "--listen").count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ironclaw serve");
        let stderr = child.stderr.take().expect("stderr pipe");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("ironclaw: listening on ") {
                    let _ = tx.send(a.to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut addrs = Vec::new();
        while addrs.len() < listens {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(a) => addrs.push(a),
                Err(e) => {
                    // Disconnected: the service closed stderr, it is exiting; reap it.
                    // Timeout: it hangs; kill it.
                    if e == std::sync::mpsc::RecvTimeoutError::Timeout {
                        let _ = child.kill();
                    }
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    return Err((status, log.lock().unwrap().clone()));
                }
            }
        }
        Ok(Service {
            child,
            addrs,
            stderr: log,
        })
    }

    fn tcp(&self) -> String {
        self.addrs
            .iter()
            .find_map(|a| a.strip_prefix("tcp:"))
            .expect("a tcp listener")
            .to_string()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "service did not exit within {limit:?}; stderr: {}",
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wasm(name: &str) -> String {
    std::path::PathBuf::from(ironclaw::shim::EXAMPLES_DIR)
        .join(name)
        .display()
        .to_string()
}

fn expected_mac(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One HTTP/1.1 request on a keep-alive connection: (status line, body).
fn request<S: Read + Write>(s: &mut S, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(s)
}

fn read_response<S: Read>(s: &mut S) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read response head");
        assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.lines().next().unwrap().to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn concurrent_keepalive_clients_get_correct_signatures() {
    if !need("concurrent_keepalive_clients_get_correct_signatures") {
        return;
    }
    let env = format!("SIGN_KEY={KEY}");
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    let addr = svc.tcp();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                for i in 0..20usize {
                    // Bodies from empty to 300 KB: larger than one window (256 KiB).
                    let len = if i == 7 {
                        300_000
                    } else {
                        (t * 131 + i * 977) % 5000
                    };
                    let body: Vec<u8> = (0..len).map(|j| (j * 7 + t + i) as u8).collect();
                    let (status, got) = request(&mut s, "POST", "/sign", &body);
                    assert_eq!(status, "HTTP/1.1 200 OK");
                    assert_eq!(String::from_utf8(got).unwrap(), expected_mac(&body));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    // Pipelined requests on one connection are answered in order.
    let mut s = connect(&addr);
    let mut batch = Vec::new();
    for b in ["one", "two", "three"] {
        batch.extend(
            format!(
                "POST /sign HTTP/1.1\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
            .bytes(),
        );
    }
    s.write_all(&batch).unwrap();
    for b in ["one", "two", "three"] {
        let (_, got) = read_response(&mut s);
        assert_eq!(String::from_utf8(got).unwrap(), expected_mac(b.as_bytes()));
    }
}

#[test]
fn idle_slow_and_vanishing_clients_do_not_block_others() {
    if !need("idle_slow_and_vanishing_clients_do_not_block_others") {
        return;
    }
    let env = format!("SIGN_KEY={KEY}");
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    let addr = svc.tcp();
    // 300 clients that connect and send nothing, 20 that send half a request head.
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(&addr)).collect();
    let mut slow: Vec<TcpStream> = (0..20).map(|_| connect(&addr)).collect();
    for s in &mut slow {
        s.write_all(b"POST /sign HTTP/1.1\r\nContent-Le").unwrap();
    }
    // Clients that send a large request and disconnect before reading the answer.
    for _ in 0..10 {
        let mut s = connect(&addr);
        let body = vec![b'x'; 100_000];
        let _ = s.write_all(
            format!(
                "POST /sign HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = s.write_all(&body);
        drop(s);
    }
    // Meanwhile a fresh client is served promptly, request after request.
    let mut s = connect(&addr);
    let started = Instant::now();
    for i in 0..50 {
        let body = format!("request {i}");
        let t = Instant::now();
        let (status, got) = request(&mut s, "POST", "/sign", body.as_bytes());
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            String::from_utf8(got).unwrap(),
            expected_mac(body.as_bytes())
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "request {i} took {:?} with 320 idle/slow clients",
            t.elapsed()
        );
    }
    eprintln!(
        "50 requests beside 320 idle/slow clients: {:?}",
        started.elapsed()
    );
    // The slow clients finish their requests and are answered too.
    for s in &mut slow {
        s.write_all(b"ngth: 2\r\n\r\nhi").unwrap();
    }
    for s in &mut slow {
        let (_, got) = read_response(s);
        assert_eq!(String::from_utf8(got).unwrap(), expected_mac(b"hi"));
    }
    drop(idle);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    if !need("idle_connections_are_closed_after_the_idle_timeout") {
        return;
    }
    let env = format!("SIGN_KEY={KEY}");
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--idle-timeout",
        "300ms",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    let mut s = connect(&svc.tcp());
    let t = Instant::now();
    let mut b = [0u8; 16];
    // The host closes the idle connection: the client reads end of stream (or a reset).
    let r = s.read(&mut b);
    assert!(matches!(r, Ok(0) | Err(_)), "got {r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

/// A line server: answers each connection with `reply` and closes. Returns its address and
/// a counter of connections it accepted.
fn line_server(reply: &'static [u8]) -> (String, Arc<Mutex<u32>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            *c.lock().unwrap() += 1;
            let mut line = [0u8; 5];
            let _ = s.read_exact(&mut line);
            let _ = s.write_all(reply);
        }
    });
    (addr, count)
}

#[test]
fn egress_reaches_listed_destinations_only() {
    if !need("egress_reaches_listed_destinations_only") {
        return;
    }
    let (allowed, allowed_hits) = line_server(b"pong\n");
    let (unlisted, unlisted_hits) = line_server(b"leak\n");
    let env = format!("SIGN_KEY={KEY}");
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--egress",
        &allowed,
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    let mut s = connect(&svc.tcp());
    let (status, body) = request(&mut s, "POST", "/fetch", allowed.as_bytes());
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"pong\n"[..])
    );
    let (status, body) = request(&mut s, "POST", "/fetch", unlisted.as_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert!(body.contains("refused"), "{body}");
    // A name that resolves to the same place is still not the listed name.
    let port = allowed.rsplit_once(':').unwrap().1;
    let (status, _) = request(
        &mut s,
        "POST",
        "/fetch",
        format!("localhost:{port}").as_bytes(),
    );
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*allowed_hits.lock().unwrap(), 1);
    assert_eq!(*unlisted_hits.lock().unwrap(), 0);
}

#[test]
fn sigterm_ends_the_service_with_zero_and_removes_its_socket_file() {
    if !need("sigterm_ends_the_service_with_zero_and_removes_its_socket_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sign.sock");
    let listen = format!("unix:{}", sock.display());
    let env = format!("SIGN_KEY={KEY}");
    let mut svc = Service::start(&[
        "--listen",
        &listen,
        "--listen",
        "tcp:127.0.0.1:0",
        "--grace",
        "2s",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    assert_eq!(svc.addrs[0], listen);
    let mut u = UnixStream::connect(&sock).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (_, got) = request(&mut u, "POST", "/sign", b"over unix");
    assert_eq!(String::from_utf8(got).unwrap(), expected_mac(b"over unix"));
    // An open keep-alive connection is still served during the grace period ...
    svc.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let (_, got) = request(&mut u, "POST", "/sign", b"in grace");
    assert_eq!(String::from_utf8(got).unwrap(), expected_mac(b"in grace"));
    // ... new connections are not (the listeners are closed) ...
    assert!(UnixStream::connect(&sock).is_err());
    assert!(TcpStream::connect(svc.tcp()).is_err());
    // ... and when the client leaves, the service ends at once with 0.
    drop(u);
    let t = Instant::now();
    let status = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", svc.stderr.lock().unwrap());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn sigint_with_a_lingering_client_ends_after_the_grace_period() {
    if !need("sigint_with_a_lingering_client_ends_after_the_grace_period") {
        return;
    }
    let env = format!("SIGN_KEY={KEY}");
    let mut svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--grace",
        "500ms",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ]);
    let _idle = connect(&svc.tcp());
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    svc.signal(libc::SIGINT);
    let status = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn sigkill_leaves_a_stale_socket_file_that_the_next_start_replaces() {
    if !need("sigkill_leaves_a_stale_socket_file_that_the_next_start_replaces") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let listen = format!("unix:{}", sock.display());
    let env = format!("SIGN_KEY={KEY}");
    let args = [
        "--listen",
        &listen,
        "--env",
        &env,
        &wasm("sign-service.wasm"),
    ];
    let mut first = Service::start(&args);
    // A second service on the same live socket is refused, and the first keeps it.
    let (status, err) = match Service::try_start(&args) {
        Err(e) => e,
        Ok(_) => panic!("a second service bound a live socket"),
    };
    assert_eq!(status.and_then(|s| s.code()), Some(125), "{err}");
    assert!(err.contains("a running service listens there"), "{err}");
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert!(
        sock.exists(),
        "SIGKILL cannot clean up; the file stays stale"
    );
    // The next start replaces the stale file and serves.
    let second = Service::start(&args);
    let mut u = UnixStream::connect(&sock).unwrap();
    let (_, got) = request(&mut u, "POST", "/sign", b"again");
    assert_eq!(String::from_utf8(got).unwrap(), expected_mac(b"again"));
    drop(second);
    // A path that is not a socket is never replaced.
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let listen = format!("unix:{}", file.display());
    let (status, err) = match Service::try_start(&["--listen", &listen, &wasm("sign-service.wasm")])
    {
        Err(e) => e,
        Ok(_) => panic!("bound over a regular file"),
    };
    assert_eq!(status.and_then(|s| s.code()), Some(125), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn bad_service_arguments_are_refused_naming_the_flag() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let m = wasm("sign-service.wasm");
    let (code, err) = run(&["--listen", "udp:1.2.3.4:5", &m]);
    assert_ne!(code, Some(0));
    assert!(err.contains("tcp:IP:PORT or unix:PATH"), "{err}");
    let (_, err) = run(&["--listen", "tcp:127.0.0.1:0", "--egress", "host:0", &m]);
    assert!(err.contains("--egress host:0"), "{err}");
    let (_, err) = run(&["--listen", "tcp:127.0.0.1:0", "--egress", "a b:80", &m]);
    assert!(err.contains("--egress a b:80"), "{err}");
    let (code, err) = run(&["--listen", "tcp:127.0.0.1:0", "--max-buffered", "10", &m]);
    assert_eq!(code, Some(125));
    assert!(err.contains("--max-buffered"), "{err}");
    let (code, err) = run(&[&m]);
    assert_eq!(code, Some(125));
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn the_egress_list_is_part_of_the_measurement() {
    let measure = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
            .arg("measure")
            .args(extra)
            .arg(wasm("sign-service.wasm"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let batch = measure(&[]);
    let svc = measure(&["--listen", "tcp:127.0.0.1:1"]);
    let other_port = measure(&["--listen", "tcp:127.0.0.1:2"]);
    let egress = measure(&["--listen", "tcp:127.0.0.1:1", "--egress", "api.example:443"]);
    let egress2 = measure(&[
        "--listen",
        "tcp:127.0.0.1:1",
        "--egress",
        "evil.example:443",
    ]);
    assert_ne!(batch, svc);
    assert_eq!(svc, other_port, "where it listens is not measured");
    assert_ne!(svc, egress);
    assert_ne!(egress, egress2);
    assert_eq!(egress.len(), 96);
}

#[test]
fn serve_prints_the_same_measurement_as_measure() {
    if !need("serve_prints_the_same_measurement_as_measure") {
        return;
    }
    let args = ["--listen", "tcp:127.0.0.1:0", "--egress", "api.example:443"];
    let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .arg("measure")
        .args(args)
        .arg(wasm("sign-service.wasm"))
        .output()
        .unwrap();
    let measured = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let env = format!("SIGN_KEY={KEY}");
    let mut all = args.to_vec();
    all.extend(["--print-measurement", "--env", &env]);
    let m = wasm("sign-service.wasm");
    all.push(&m);
    let svc = Service::start(&all);
    let log = svc.stderr.lock().unwrap().clone();
    assert!(log.contains(&format!("measurement: {measured}")), "{log}");
}

#[test]
fn the_module_exit_code_ends_the_service() {
    if !need("the_module_exit_code_ends_the_service") {
        return;
    }
    // No key configured: the example exits 2 before serving.
    let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args([
            "serve",
            "--listen",
            "tcp:127.0.0.1:0",
            &wasm("sign-service.wasm"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGN_KEY"));
}

#[test]
fn plain_std_tcplistener_code_serves_unchanged() {
    if !need("plain_std_tcplistener_code_serves_unchanged") {
        return;
    }
    let env = format!("SIGN_KEY={KEY}");
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--env",
        &env,
        &wasm("sign-service.wasm"),
        "--blocking",
    ]);
    for i in 0..3 {
        let mut s = connect(&svc.tcp());
        let body = format!("blocking {i}");
        let (_, got) = request(&mut s, "POST", "/sign", body.as_bytes());
        assert_eq!(
            String::from_utf8(got).unwrap(),
            expected_mac(body.as_bytes())
        );
    }
}

#[test]
fn a_runaway_turn_is_stopped_by_the_per_turn_fuel() {
    if !need("a_runaway_turn_is_stopped_by_the_per_turn_fuel") {
        return;
    }
    // Blocks in sock_accept (no fuel used while waiting), then spins forever.
    let mut svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--fuel",
        "2000000",
        &wasm("accept-then-spin.wasm"),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "died before any client"
    );
    let _c = connect(&svc.tcp());
    let status = svc.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(101), "{}", svc.stderr.lock().unwrap());
    assert!(svc.stderr.lock().unwrap().contains("fuel"));
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3; utime/stime are 14 and 15.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_flood_to_a_client_that_never_reads_blocks_the_module_with_bounded_memory() {
    if !need("a_flood_to_a_client_that_never_reads_blocks_the_module_with_bounded_memory") {
        return;
    }
    let svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--max-buffered",
        "65536",
        &wasm("flood-client.wasm"),
    ]);
    let pid = svc.child.id();
    let c = connect(&svc.tcp());
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent <= 10,
        "{spent} ticks in 1 s: the blocked module must not spin"
    );
    let hwm = proc_status(pid, "VmHWM:");
    assert!(
        hwm < 64 * 1024,
        "peak RSS {hwm} kB while flooding a stalled client"
    );
    // The bytes were relayed, not dropped: reading drains them and the flood resumes.
    let mut c = c;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let t = Instant::now();
    while total < 8 << 20 && t.elapsed() < Duration::from_secs(20) {
        total += c.read(&mut buf).unwrap();
    }
    assert!(total >= 8 << 20, "only {total} bytes arrived");
}

#[test]
fn a_module_opening_connections_in_a_loop_hits_the_connection_limit() {
    if !need("a_module_opening_connections_in_a_loop_hits_the_connection_limit") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args([
            "serve",
            "--listen",
            "tcp:127.0.0.1:0",
            "--egress",
            "127.0.0.1:9",
            "--max-connections",
            "5",
            &wasm("connect-loop.wasm"),
        ])
        .output()
        .unwrap();
    // 5 connections opened, the 6th answered E_UNAVAILABLE (-3); the unlisted one -4.
    assert_eq!(
        out.status.code(),
        Some(53),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_clock_subscription_waits_on_the_host_without_spinning() {
    if !need("a_clock_subscription_waits_on_the_host_without_spinning") {
        return;
    }
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args([
            "serve",
            "--stats",
            "--listen",
            "tcp:127.0.0.1:0",
            &wasm("poll-clock.wasm"),
        ])
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // A sleeping module costs a handful of exits, not a busy loop of them.
    let exits: u64 = err
        .split("exits=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exit count in {err}"));
    assert!(exits <= 10, "{exits} exits for one 300 ms sleep");
}

#[test]
fn sigterm_ends_a_service_whose_module_computes_through_the_grace_period() {
    if !need("sigterm_ends_a_service_whose_module_computes_through_the_grace_period") {
        return;
    }
    // A turn budget far beyond the test: only the grace period can end this spin.
    let mut svc = Service::start(&[
        "--listen",
        "tcp:127.0.0.1:0",
        "--fuel",
        "1000000000000",
        "--grace",
        "300ms",
        &wasm("accept-then-spin.wasm"),
    ]);
    let _c = connect(&svc.tcp());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "the module should be spinning"
    );
    let t = Instant::now();
    svc.signal(libc::SIGTERM);
    let status = svc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", svc.stderr.lock().unwrap());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
