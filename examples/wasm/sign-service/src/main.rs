//! IronClaw example service (wasm32-wasip1): an HTTP/1.1 signing service.
//!
//! Run it with `ironclaw serve sign-service.wasm --listen tcp:127.0.0.1:8080`. The key is
//! the secret at `SIGN_SECRET=REPOSITORY/TYPE/TAG` (fetched once from the key broker with
//! `get_secret`: released only to this module's attested measurement), or the bytes of
//! `SIGN_KEY` (`--env SIGN_KEY=...`) when there is no broker.
//!
//! - `POST /sign` → `200`, body = hex HMAC-SHA256(key, request body);
//! - `POST /fetch` with body `HOST:PORT` → connects there through `ironclaw.connect` (only
//!   the launch's `--egress` destinations), sends `ping\n`, answers with what the peer
//!   sends back until it closes (`502` + reason when refused or failed);
//! - `GET /health` → `200 ok`.
//!
//! Keep-alive, pipelining, any number of clients: one event loop over WASI preview 1
//! `poll_oneoff` with non-blocking `sock_accept` / `sock_recv` / `sock_send` on the
//! preopened listener fds (3, 4, ...), so idle or slow clients never block others.
//! `sign-service --blocking` instead serves one connection at a time with plain
//! `std::net::TcpListener::from_raw_fd(3)` (what ordinary blocking code does).

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAX_HEAD: usize = 8 << 10;
const MAX_BODY: usize = 1 << 20;

#[cfg(target_os = "wasi")]
#[allow(non_camel_case_types)]
mod wasi {
    #[repr(C)]
    pub(crate) struct Iovec {
        pub buf: *mut u8,
        pub len: usize,
    }
    #[repr(C)]
    pub(crate) struct Ciovec {
        pub buf: *const u8,
        pub len: usize,
    }
    pub(crate) const EAGAIN: u16 = 6;
    pub(crate) const FDFLAGS_NONBLOCK: u16 = 4;
    pub(crate) const FILETYPE_SOCKET_STREAM: u8 = 6;
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub(crate) fn poll_oneoff(
            subs: *const u8,
            events: *mut u8,
            n: u32,
            nevents: *mut u32,
        ) -> u16;
        pub(crate) fn sock_accept(fd: u32, flags: u16, out: *mut u32) -> u16;
        pub(crate) fn sock_recv(
            fd: u32,
            iovs: *const Iovec,
            n: u32,
            flags: u16,
            out_len: *mut u32,
            out_flags: *mut u16,
        ) -> u16;
        pub(crate) fn sock_send(
            fd: u32,
            iovs: *const Ciovec,
            n: u32,
            flags: u16,
            out: *mut u32,
        ) -> u16;
        pub(crate) fn fd_close(fd: u32) -> u16;
        pub(crate) fn fd_fdstat_get(fd: u32, out: *mut u8) -> u16;
        pub(crate) fn fd_fdstat_set_flags(fd: u32, flags: u16) -> u16;
    }
}

/// Lowercase hex (a table lookup: `format!` per byte costs more than the HMAC itself
/// when interpreted).
fn hex(b: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(b.len() * 2);
    for x in b {
        out.push(DIGITS[usize::from(x >> 4)]);
        out.push(DIGITS[usize::from(x & 15)]);
    }
    out
}

fn key() -> Vec<u8> {
    if let Ok(path) = std::env::var("SIGN_SECRET") {
        return ironclaw_guest::get_secret(&path).unwrap_or_else(|e| {
            eprintln!("sign-service: get_secret {path}: {e}");
            std::process::exit(3);
        });
    }
    if let Ok(k) = std::env::var("SIGN_KEY") {
        return k.into_bytes();
    }
    eprintln!("sign-service: set SIGN_SECRET=REPOSITORY/TYPE/TAG (with a broker) or SIGN_KEY");
    std::process::exit(2);
}

/// The listener fds the host preopened: 3, 4, ... while fd_fdstat_get says socket.
#[cfg(target_os = "wasi")]
fn listeners() -> Vec<u32> {
    let mut out = Vec::new();
    for fd in 3u32.. {
        let mut stat = [0u8; 24];
        // SAFETY: `stat` is 24 writable bytes, the size of a WASI fdstat.
        let r = unsafe { wasi::fd_fdstat_get(fd, stat.as_mut_ptr()) };
        if r != 0 || stat[0] != wasi::FILETYPE_SOCKET_STREAM {
            break;
        }
        out.push(fd);
    }
    out
}

struct Response {
    status: &'static str,
    body: Vec<u8>,
}

fn respond(out: &mut Vec<u8>, r: &Response, close: bool) {
    // Built by hand: `format!` is costly when interpreted.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(r.status.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    let mut digits = [0u8; 20];
    let mut n = r.body.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(if close {
        b"\r\nConnection: close\r\n\r\n".as_slice()
    } else {
        b"\r\nConnection: keep-alive\r\n\r\n".as_slice()
    });
    out.extend_from_slice(&r.body);
}

fn fetch(dest: &str) -> Response {
    let fail = |why: String| Response {
        status: "502 Bad Gateway",
        body: why.into_bytes(),
    };
    let mut s = match ironclaw_guest::connect(dest) {
        Ok(s) => s,
        Err(e) => return fail(format!("connect {dest}: {e}")),
    };
    if let Err(e) = s.write_all(b"ping\n") {
        return fail(format!("send to {dest}: {e}"));
    }
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => Response {
            status: "200 OK",
            body: reply,
        },
        Err(e) => fail(format!("receive from {dest}: {e}")),
    }
}

fn handle(key: &[u8], method: &str, path: &str, body: &[u8]) -> Response {
    match (method, path) {
        ("POST", "/sign") => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(body);
            Response {
                status: "200 OK",
                body: hex(&mac.finalize().into_bytes()),
            }
        }
        ("POST", "/fetch") => fetch(String::from_utf8_lossy(body).trim()),
        ("GET", "/health") => Response {
            status: "200 OK",
            body: b"ok".to_vec(),
        },
        _ => Response {
            status: "404 Not Found",
            body: b"not found".to_vec(),
        },
    }
}

/// Parses and answers every complete request at the start of `inbuf` (pipelining), into
/// `out`. Returns true when the connection must close after `out` is sent.
fn serve_buffered(key: &[u8], inbuf: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(inbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if inbuf.len() <= MAX_HEAD => return false,
            _ => {
                let r = Response {
                    status: "400 Bad Request",
                    body: b"bad request".to_vec(),
                };
                respond(out, &r, true);
                return true;
            }
        };
        let mut len = 0usize;
        let mut close = req.version == Some(0);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                len = match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => n,
                    None => usize::MAX,
                };
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                close = v.contains("close") || (close && !v.contains("keep-alive"));
            }
        }
        if len > MAX_BODY {
            let r = Response {
                status: "413 Content Too Large",
                body: b"body too large".to_vec(),
            };
            respond(out, &r, true);
            return true;
        }
        if inbuf.len() < head + len {
            return false;
        }
        let method = req.method.unwrap_or("").to_string();
        let path = req.path.unwrap_or("").to_string();
        let r = handle(key, &method, &path, &inbuf[head..head + len]);
        respond(out, &r, close);
        inbuf.drain(..head + len);
        if close {
            return true;
        }
    }
}

#[cfg(target_os = "wasi")]
struct Conn {
    fd: u32,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    closing: bool,
    dead: bool,
}

#[cfg(target_os = "wasi")]
impl Conn {
    /// Reads what is there (never blocks); false when the peer is gone.
    fn read(&mut self, buf: &mut [u8]) -> bool {
        loop {
            let iov = wasi::Iovec {
                buf: buf.as_mut_ptr(),
                len: buf.len(),
            };
            let (mut n, mut flags) = (0u32, 0u16);
            // SAFETY: one iovec over `buf`, and two out-parameters, all live.
            let r = unsafe { wasi::sock_recv(self.fd, &iov, 1, 0, &mut n, &mut flags) };
            match (r, n) {
                (0, 0) => return false,
                (0, n) => self.inbuf.extend_from_slice(&buf[..n as usize]),
                (wasi::EAGAIN, _) => return true,
                _ => return false,
            }
            if self.inbuf.len() > MAX_HEAD + MAX_BODY {
                return true;
            }
        }
    }

    /// Sends what the socket takes (never blocks); false on error.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            let iov = wasi::Ciovec {
                buf: self.out.as_ptr(),
                len: self.out.len(),
            };
            let mut n = 0u32;
            // SAFETY: one iovec over `self.out`, one out-parameter, all live.
            let r = unsafe { wasi::sock_send(self.fd, &iov, 1, 0, &mut n) };
            match r {
                0 => {
                    self.out.drain(..n as usize);
                }
                wasi::EAGAIN => return true,
                _ => return false,
            }
        }
        true
    }
}

#[cfg(target_os = "wasi")]
fn subscription(userdata: u64, write: bool, fd: u32) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[8] = if write { 2 } else { 1 };
    s[16..20].copy_from_slice(&fd.to_le_bytes());
    s
}

#[cfg(target_os = "wasi")]
fn event_loop(key: &[u8], mut listeners: Vec<u32>) {
    for fd in &listeners {
        // SAFETY: no pointers.
        unsafe { wasi::fd_fdstat_set_flags(*fd, wasi::FDFLAGS_NONBLOCK) };
    }
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut subs: Vec<u8> = Vec::new();
    let mut events: Vec<u8> = Vec::new();
    loop {
        if listeners.is_empty() && conns.is_empty() {
            return; // terminating and every client served
        }
        subs.clear();
        for fd in &listeners {
            subs.extend_from_slice(&subscription(u64::from(*fd), false, *fd));
        }
        for c in &conns {
            subs.extend_from_slice(&subscription(u64::from(c.fd), !c.out.is_empty(), c.fd));
        }
        let n = (subs.len() / 48) as u32;
        events.resize(subs.len() / 48 * 32, 0);
        let mut got = 0u32;
        // SAFETY: `subs` holds n subscriptions, `events` room for n events.
        let r = unsafe { wasi::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), n, &mut got) };
        if r != 0 {
            eprintln!("sign-service: poll_oneoff: errno {r}");
            std::process::exit(1);
        }
        for e in events.chunks(32).take(got as usize) {
            let fd = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let hangup = e[24] & 1 != 0;
            if let Some(pos) = listeners.iter().position(|l| *l == fd) {
                loop {
                    let mut new = 0u32;
                    // SAFETY: one out-parameter.
                    let r = unsafe { wasi::sock_accept(fd, wasi::FDFLAGS_NONBLOCK, &mut new) };
                    if r != 0 {
                        if r != wasi::EAGAIN || hangup {
                            // The host closed the listener (service terminating).
                            // SAFETY: no pointers.
                            unsafe { wasi::fd_close(fd) };
                            listeners.remove(pos);
                        }
                        break;
                    }
                    conns.push(Conn {
                        fd: new,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        closing: false,
                        dead: false,
                    });
                }
                continue;
            }
            let Some(c) = conns.iter_mut().find(|c| c.fd == fd) else {
                continue;
            };
            if !c.closing {
                let alive = c.read(&mut buf);
                if serve_buffered(key, &mut c.inbuf, &mut c.out) {
                    c.closing = true;
                }
                if !alive {
                    c.closing = true;
                }
            }
            if !c.flush() || (c.closing && c.out.is_empty()) {
                c.dead = true;
            }
        }
        conns.retain(|c| {
            if c.dead {
                // SAFETY: no pointers; the fd is ours and dropped from the list.
                unsafe { wasi::fd_close(c.fd) };
            }
            !c.dead
        });
    }
}

/// Serves one connection with blocking std I/O until it closes.
fn serve_stream<S: Read + Write>(key: &[u8], s: &mut S) {
    let mut inbuf = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut out = Vec::new();
        let close = serve_buffered(key, &mut inbuf, &mut out);
        if s.write_all(&out).is_err() || close {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
        }
    }
}

#[cfg(target_os = "wasi")]
fn blocking(key: &[u8]) {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 3 is the listener the host preopened for this module; nothing else owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { return };
        serve_stream(key, &mut s);
    }
}

#[cfg(target_os = "wasi")]
fn main() {
    let key = key();
    if std::env::args().nth(1).as_deref() == Some("--blocking") {
        blocking(&key);
        return;
    }
    let ls = listeners();
    if ls.is_empty() {
        eprintln!("sign-service: no listener (run with ironclaw serve --listen ...)");
        std::process::exit(2);
    }
    event_loop(&key, ls);
}

/// Natively (the benchmark's anchor): `sign-service IP:PORT`, the same request handling
/// with a thread per connection.
#[cfg(not(target_os = "wasi"))]
fn main() {
    let key: &'static [u8] = Vec::leak(key());
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage (native): sign-service IP:PORT");
        std::process::exit(2);
    };
    let listener = std::net::TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("sign-service: bind {addr}: {e}");
        std::process::exit(1);
    });
    if let Ok(a) = listener.local_addr() {
        eprintln!("sign-service: listening on tcp:{a}");
    }
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_nodelay(true);
        std::thread::spawn(move || serve_stream(key, &mut s));
    }
}
