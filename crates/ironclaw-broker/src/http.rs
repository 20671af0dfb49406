//! The HTTPS server: untrusted bytes from any TCP peer.
//!
//! Synchronous: one thread per connection, HTTP/1.1 keep-alive. Against slow
//! and greedy peers ([`ServeLimits`]): at most `max_connections` at once and
//! `max_connections_per_peer` from one peer (IPv4 address or IPv6 /64; as many
//! more may wait up to [`SLOT_WAIT`] for one of them to close, the rest are
//! closed right after accept), and deadlines on whole phases rather than on
//! single reads: the TLS handshake and the first request head must arrive
//! within `head_timeout` of the accept, a later head within `head_timeout` of its
//! first byte (after at most `idle_timeout` of keep-alive idleness), a body within
//! `head_timeout` plus its length at `body_min_rate`. A peer trickling one byte
//! at a time therefore holds a connection for `head_timeout` at most, and only
//! `max_connections_per_peer` of them. Request heads are parsed by httparse; bodies must carry
//! a Content-Length (chunked bodies are refused with 411). Every malformed
//! request gets a 4xx with a JSON `ErrorInformation` body, then the connection
//! is closed; nothing a peer sends can panic the server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::kbs::{ApiRequest, ApiResponse};
use crate::session::PeerKey;
use crate::Broker;

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (evidence with certificate chains and DCAP collateral).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most connections served at once (default).
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections from one peer at once (default).
pub const MAX_CONNECTIONS_PER_PEER: usize = 32;
/// Write timeout, and the default head and idle timeouts.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's limits against slow and greedy peers (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections from one peer (IPv4 address, IPv6 /64) at once.
    pub max_connections_per_peer: usize,
    /// TLS handshake + first head from accept; a later head from its first byte.
    pub head_timeout: Duration,
    /// Keep-alive idleness between requests.
    pub idle_timeout: Duration,
    /// Slowest accepted body rate, bytes per second (on top of `head_timeout`).
    pub body_min_rate: u64,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            head_timeout: IO_TIMEOUT,
            idle_timeout: IO_TIMEOUT,
            body_min_rate: 64 * 1024,
        }
    }
}

/// Where a connection is in reading a request; [`read_request`] reports the
/// transitions so the connection can move its read deadline.
trait Phases {
    /// Waiting for the first byte of a request.
    fn waiting(&self) {}
    /// The first byte of a request head has arrived.
    fn head_started(&self) {}
    /// The head is complete and announces a `len`-byte body.
    fn body(&self, _len: usize) {}
    /// The request has been read completely.
    fn done(&self) {}
}

/// No deadlines (in-memory parsing, already-wrapped streams).
struct NoPhases;
impl Phases for NoPhases {}

/// The read deadline of one connection, moved by the request phases.
struct ConnDeadline {
    deadline: std::rc::Rc<std::cell::Cell<Instant>>,
    first: std::cell::Cell<bool>,
    limits: ServeLimits,
}

impl Phases for ConnDeadline {
    fn waiting(&self) {
        // The first request's head (and the TLS handshake) keep the deadline
        // set at accept; a later request may wait `idle_timeout` to start.
        if !self.first.get() {
            self.deadline.set(Instant::now() + self.limits.idle_timeout);
        }
    }
    fn head_started(&self) {
        if !self.first.get() {
            self.deadline.set(Instant::now() + self.limits.head_timeout);
        }
    }
    fn body(&self, len: usize) {
        let rate = self.limits.body_min_rate.max(1);
        let body_time = Duration::from_millis((len as u64).saturating_mul(1000) / rate);
        self.deadline
            .set(Instant::now() + self.limits.head_timeout + body_time);
    }
    fn done(&self) {
        self.first.set(false);
    }
}

/// A TCP socket whose every read waits at most until the shared deadline: the
/// timeout is set afresh before each read (rustls reads the socket several
/// times per record, so a per-read timeout alone would reset with every byte).
struct DeadlineSocket {
    tcp: TcpStream,
    deadline: std::rc::Rc<std::cell::Cell<Instant>>,
}

impl Read for DeadlineSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .get()
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request deadline passed",
            ));
        }
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}
const MAX_HEADERS: usize = 64;

/// What reading one request produced.
enum ReadOutcome {
    Request(ApiRequest, bool),
    Closed,
    Bad(ApiError),
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses one request from `stream`, with `buf` holding bytes already read.
fn read_request<S: Read>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    phases: &dyn Phases,
) -> io::Result<ReadOutcome> {
    let mut chunk = [0u8; 8192];
    if buf.is_empty() {
        phases.waiting();
    } else {
        phases.head_started();
    }
    let head_end = loop {
        if let Some(end) = find_head_end(buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Ok(ReadOutcome::Bad(ApiError::HeadersTooLarge));
        }
        let was_empty = buf.is_empty();
        let n = stream.read(&mut chunk)?;
        if was_empty && n > 0 {
            phases.head_started();
        }
        if n == 0 {
            return Ok(if buf.is_empty() {
                ReadOutcome::Closed
            } else {
                ReadOutcome::Bad(ApiError::BadHttp(
                    "connection closed inside the request head".into(),
                ))
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    if head_end > MAX_HEAD {
        return Ok(ReadOutcome::Bad(ApiError::HeadersTooLarge));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf.get(..head_end).unwrap_or_default()) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Ok(ReadOutcome::Bad(ApiError::BadHttp(
                "incomplete request head".into(),
            )))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Ok(ReadOutcome::Bad(ApiError::HeadersTooLarge))
        }
        Err(e) => {
            return Ok(ReadOutcome::Bad(ApiError::BadHttp(format!(
                "malformed request head: {e}"
            ))))
        }
    }
    let method = parsed.method.unwrap_or("").to_string();
    let path = parsed.path.unwrap_or("").to_string();
    let mut content_length: Option<usize> = None;
    let mut session = None;
    let mut authorization: Option<String> = None;
    let mut close = parsed.version == Some(0);
    for h in parsed.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = std::str::from_utf8(h.value).unwrap_or("");
        match name.as_str() {
            "content-length" => {
                let n: usize = match value.trim().parse() {
                    Ok(n) => n,
                    Err(_) => {
                        return Ok(ReadOutcome::Bad(ApiError::BadHttp(
                            "Content-Length is not a number".into(),
                        )))
                    }
                };
                if content_length.is_some_and(|c| c != n) {
                    return Ok(ReadOutcome::Bad(ApiError::BadHttp(
                        "conflicting Content-Length headers".into(),
                    )));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => return Ok(ReadOutcome::Bad(ApiError::LengthRequired)),
            "cookie" => {
                if let Some(v) = ironclaw_enclave::kbs_client::session_from_cookie_header(value) {
                    session = Some(v.to_string());
                }
            }
            "authorization" => {
                if authorization.is_some() {
                    return Ok(ReadOutcome::Bad(ApiError::InvalidRequest(
                        "more than one Authorization header".into(),
                    )));
                }
                match std::str::from_utf8(h.value) {
                    Ok(v) => authorization = Some(v.to_string()),
                    Err(_) => {
                        return Ok(ReadOutcome::Bad(ApiError::InvalidRequest(
                            "Authorization header is not UTF-8".into(),
                        )))
                    }
                }
            }
            "connection" => close = close || value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let len = content_length.unwrap_or(0);
    if len > MAX_BODY {
        return Ok(ReadOutcome::Bad(ApiError::PayloadTooLarge(len)));
    }
    let total = head_end
        .checked_add(len)
        .ok_or(io::ErrorKind::InvalidData)?;
    phases.body(len);
    while buf.len() < total {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(ReadOutcome::Bad(ApiError::BadHttp(format!(
                "connection closed after {} of {len} body bytes",
                buf.len() - head_end
            ))));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let body = buf.get(head_end..total).unwrap_or_default().to_vec();
    buf.drain(..total);
    phases.done();
    Ok(ReadOutcome::Request(
        ApiRequest {
            method,
            path,
            session,
            authorization,
            body,
            peer: None,
        },
        close,
    ))
}

/// Parses one request from `bytes` (the fuzzing entry point of the request parser):
/// `Ok(None)` for no request, `Ok(Some((request, close)))`, or the 4xx it answers.
pub fn parse_request(bytes: &[u8]) -> Result<Option<(ApiRequest, bool)>, ApiError> {
    let mut cursor = io::Cursor::new(bytes);
    match read_request(&mut cursor, &mut Vec::new(), &NoPhases) {
        Ok(ReadOutcome::Request(r, close)) => Ok(Some((r, close))),
        Ok(ReadOutcome::Closed) => Ok(None),
        Ok(ReadOutcome::Bad(e)) => Err(e),
        Err(e) => Err(ApiError::BadHttp(e.to_string())),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

fn write_response<S: Write>(stream: &mut S, resp: &ApiResponse, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    );
    if let Some(c) = &resp.set_cookie {
        head.push_str(&format!("Set-Cookie: {c}\r\n"));
    }
    if let Some(s) = resp.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Serves requests on one (already TLS-wrapped) stream until it closes.
pub fn serve_stream<S: Read + Write>(
    broker: &Broker,
    stream: &mut S,
    peer: Option<String>,
) -> io::Result<()> {
    serve_stream_with(broker, stream, peer, &NoPhases)
}

fn serve_stream_with<S: Read + Write>(
    broker: &Broker,
    stream: &mut S,
    peer: Option<String>,
    phases: &dyn Phases,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        match read_request(stream, &mut buf, phases)? {
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::Bad(e) => {
                let resp: ApiResponse = e.into();
                return write_response(stream, &resp, true);
            }
            ReadOutcome::Request(mut req, close) => {
                req.peer = peer.clone();
                let resp = broker.handle(&req);
                write_response(stream, &resp, close)?;
                if close {
                    return Ok(());
                }
            }
        }
    }
}

fn handle_connection(
    broker: &Broker,
    tls: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    limits: ServeLimits,
) {
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let deadline = std::rc::Rc::new(std::cell::Cell::new(Instant::now() + limits.head_timeout));
    let phases = ConnDeadline {
        deadline: deadline.clone(),
        first: std::cell::Cell::new(true),
        limits,
    };
    let sock = DeadlineSocket { tcp, deadline };
    let mut stream = rustls::StreamOwned::new(conn, sock);
    // I/O errors here are the peer's doing (reset, deadline, bad TLS): drop the connection.
    let _ = serve_stream_with(broker, &mut stream, Some(peer.to_string()), &phases);
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

/// Connections held per peer; a slot is released when its guard drops.
///
/// A connection over its peer's quota may wait [`SLOT_WAIT`] for a slot, at most
/// as many at once as the quota: clients behind one address that reconnect
/// quickly (NAT, a fresh connection per request) find the slots of their own
/// just-closed connections still held for the moment the server threads take to
/// notice the close. A peer therefore holds at most twice its quota in threads,
/// and a waiting connection is closed unserved when the wait ends.
#[derive(Default)]
struct PeerSlots {
    held: std::sync::Mutex<std::collections::HashMap<PeerKey, (usize, usize)>>,
    freed: std::sync::Condvar,
}

/// How long a connection over its peer's quota waits for a slot.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: PeerKey,
}

/// A place in a peer's waiting line (released when dropped).
struct PeerWaiter {
    slots: Arc<PeerSlots>,
    peer: PeerKey,
}

impl PeerSlots {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<PeerKey, (usize, usize)>> {
        match self.held.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        }
    }

    /// A slot now, or a place in the waiting line, or neither.
    fn take(self: &Arc<Self>, peer: PeerKey, max: usize) -> Result<PeerSlot, Option<PeerWaiter>> {
        let mut held = self.lock();
        let (n, waiting) = held.entry(peer).or_insert((0, 0));
        if *n < max {
            *n += 1;
            return Ok(PeerSlot {
                slots: self.clone(),
                peer,
            });
        }
        if *waiting < max {
            *waiting += 1;
            return Err(Some(PeerWaiter {
                slots: self.clone(),
                peer,
            }));
        }
        Err(None)
    }

    fn forget_if_unused(
        held: &mut std::collections::HashMap<PeerKey, (usize, usize)>,
        peer: PeerKey,
    ) {
        if held.get(&peer) == Some(&(0, 0)) {
            held.remove(&peer);
        }
    }
}

impl PeerWaiter {
    /// Waits up to `wait` for a slot of the peer.
    fn wait(self, max: usize, wait: Duration) -> Option<PeerSlot> {
        let deadline = Instant::now() + wait;
        let mut held = self.slots.lock();
        loop {
            let entry = held.entry(self.peer).or_insert((0, 0));
            if entry.0 < max {
                entry.0 += 1;
                drop(held);
                // `self` drops on return and leaves the waiting line.
                return Some(PeerSlot {
                    slots: self.slots.clone(),
                    peer: self.peer,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(held);
                return None;
            }
            held = match self.slots.freed.wait_timeout(held, left) {
                Ok((h, _)) => h,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for PeerWaiter {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(e) = held.get_mut(&self.peer) {
            e.1 = e.1.saturating_sub(1);
        }
        PeerSlots::forget_if_unused(&mut held, self.peer);
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(e) = held.get_mut(&self.peer) {
            e.0 = e.0.saturating_sub(1);
        }
        PeerSlots::forget_if_unused(&mut held, self.peer);
        drop(held);
        self.slots.freed.notify_all();
    }
}

/// Accepts connections on `listener` until `stop` is set (checked after each
/// accept), with the default [`ServeLimits`].
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
) {
    serve_with(listener, tls, broker, stop, ServeLimits::default())
}

/// [`serve`] with explicit limits.
pub fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
    limits: ServeLimits,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(PeerSlots::default());
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(tcp) = conn else { continue };
        let Ok(peer) = tcp.peer_addr() else { continue };
        let per_peer = limits.max_connections_per_peer.max(1);
        let place = match slots.take(PeerKey::of_ip(peer.ip()), per_peer) {
            Ok(slot) => Ok(slot),
            Err(Some(waiter)) => Err(waiter),
            Err(None) => continue, // dropped: closes the socket
        };
        if active.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (b, t, a) = (broker.clone(), tls.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("kbs-conn".into())
            .spawn(move || {
                let slot = match place {
                    Ok(slot) => Some(slot),
                    Err(waiter) => waiter.wait(per_peer, SLOT_WAIT),
                };
                if let Some(slot) = slot {
                    handle_connection(&b, t, tcp, peer, limits);
                    drop(slot);
                }
                a.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // No thread: the connection and its slot were dropped with the closure.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> ReadOutcome {
        let mut cur = io::Cursor::new(bytes.to_vec());
        read_request(&mut cur, &mut Vec::new(), &NoPhases).unwrap()
    }

    #[test]
    fn parses_a_request_with_cookie_and_body() {
        match parse(b"POST /kbs/v0/attest HTTP/1.1\r\nCookie: kbs-session-id=abc\r\nContent-Length: 2\r\n\r\n{}") {
            ReadOutcome::Request(r, close) => {
                assert_eq!(r.method, "POST");
                assert_eq!(r.session.as_deref(), Some("abc"));
                assert_eq!(r.body, b"{}");
                assert!(!close);
            }
            _ => panic!("expected a request"),
        }
    }

    #[test]
    fn malformed_heads_are_4xx() {
        for (input, status) in [
            (&b"GARBAGE\x00\r\n\r\n"[..], 400),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                413,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", 400),
        ] {
            match parse(input) {
                ReadOutcome::Bad(e) => assert_eq!(e.status(), status, "{input:?}"),
                _ => panic!("accepted {input:?}"),
            }
        }
    }
}

/// A running broker: HTTPS listener and admin socket.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tcp: Option<(TcpListener, std::thread::JoinHandle<()>)>,
    admin: Option<(
        std::path::PathBuf,
        std::os::unix::net::UnixListener,
        std::thread::JoinHandle<()>,
    )>,
}

/// Wakes a thread blocked in `accept` on (a clone of) `fd`'s listening socket.
fn wake_accept(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is a listening socket this handle owns (a clone of the
    // listener's descriptor), open for the duration of the call; shutdown(2)
    // only changes socket state: a blocked accept returns EINVAL.
    unsafe {
        libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
    }
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Waits until the listener stops (it runs until [`ServerHandle::shutdown`]).
    pub fn join(mut self) {
        if let Some((_, t)) = self.tcp.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, stops the admin socket, and waits for both threads.
    /// Connections still open finish on their own (idle timeout).
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        use std::os::fd::AsFd;
        if let Some((waker, t)) = self.tcp.take() {
            wake_accept(waker.as_fd());
            let _ = t.join();
        }
        if let Some((path, waker, t)) = self.admin.take() {
            wake_accept(waker.as_fd());
            let _ = t.join();
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.tcp.is_some() || self.admin.is_some() {
            self.stop_threads();
        }
    }
}

/// Binds `listen` (e.g. `127.0.0.1:8443`, port 0 for any) and the admin socket,
/// and serves both on background threads, with the default [`ServeLimits`].
pub fn start(
    broker: Arc<Broker>,
    listen: &str,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<ServerHandle> {
    start_with(broker, listen, tls, ServeLimits::default())
}

/// [`start`] with explicit limits.
pub fn start_with(
    broker: Arc<Broker>,
    listen: &str,
    tls: Arc<rustls::ServerConfig>,
    limits: ServeLimits,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let admin = crate::admin::spawn_admin_socket(broker.clone(), stop.clone())?;
    let s = stop.clone();
    let waker = listener.try_clone()?;
    let tcp = std::thread::Builder::new()
        .name("kbs-accept".into())
        .spawn(move || serve_with(listener, tls, broker, s, limits))?;
    Ok(ServerHandle {
        addr,
        stop,
        tcp: Some((waker, tcp)),
        admin: Some(admin),
    })
}
