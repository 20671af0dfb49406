//! Load generator for `bench/ironclaw-serve.sh`: N keep-alive HTTP/1.1 clients send
//! `POST /sign` (a 64-byte body) back to back for D seconds against ADDR and report
//! requests/s and the p50/p99 latency. Every answer is checked to be a 200 with a
//! 64-character body, so a broken server cannot look fast.
//!
//! `cargo run --release -p ironclaw --example serve_bench -- ADDR CLIENTS SECONDS`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn one(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
    s.write_all(req).map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("unexpected answer: {head}"));
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("no content-length")?;
            if len != 64 {
                return Err(format!("body of {len} bytes, expected 64"));
            }
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(clients), Some(secs)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: serve_bench ADDR CLIENTS SECONDS");
        std::process::exit(2);
    };
    let clients: usize = clients.parse().expect("CLIENTS");
    let secs: f64 = secs.parse().expect("SECONDS");
    let body = [b'm'; 64];
    let mut req = format!(
        "POST /sign HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.clone();
            let req = req.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut buf = Vec::new();
                let mut lat = Vec::new();
                // Warm the connection, then start together.
                one(&mut s, &req, &mut buf).expect("warm-up request");
                while Instant::now() < start {
                    std::thread::sleep(Duration::from_millis(1));
                }
                while Instant::now() < end {
                    let t = Instant::now();
                    one(&mut s, &req, &mut buf).expect("request");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::new();
    for t in threads {
        all.extend(t.join().expect("client thread"));
    }
    let elapsed = (Instant::now() - start).as_secs_f64().max(secs);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "clients={clients} requests={} rps={:.0} p50_ms={:.3} p99_ms={:.3}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}
