//! IronClaw's LLM API key proxy (wasm32-wasip1), run by `ironclaw proxy`.
//!
//! `llm-proxy --upstream URL --secret REPOSITORY/TYPE/TAG --inject 'Header: ...{secret}...'
//! [--upstream ... --secret ... --inject ...]...`
//!
//! Each route's key is fetched with `get_secret` from the key broker (released only to this
//! module's attested launch measurement) and lives only in enclave memory. Clients speak
//! plain HTTP/1.1 to the listener(s) the host preopened (fd 3, 4, ...), like SDKs pointed at
//! a `base_url`; the proxy:
//!
//! - picks the route: the one route when there is one; otherwise the route whose upstream
//!   host is the first path segment (`/api.openai.com/v1/...` → `/v1/...`); an absolute-form
//!   target (`http://host/...`) must name a configured upstream. Anything else is refused
//!   (403/404), as are CONNECT, heads over 16 KiB (431), bodies over 2 MiB (413), more than 4 MiB of request bytes buffered at once (503) and chunked
//!   request bodies (411);
//! - drops the client's `Authorization`, `x-api-key`, `Proxy-Authorization`, `Host`,
//!   hop-by-hop headers and any header named like the injected one, then adds `Host` and the
//!   injected header (the template with `{secret}` replaced);
//! - connects to the upstream through `ironclaw.connect` (the launch's measured egress list
//!   is the only place it can reach) and relays the response to the client as it arrives:
//!   a chunked or `text/event-stream` body goes out chunk by chunk, never buffered whole;
//!   response headers whose value contains the key are dropped, and a response body that
//!   contains it is cut before those bytes (the client connection closes): no reflection;
//! - answers 502 with the reason when the upstream is unreachable or fails before its
//!   response head, 503 when the broker did not release the key (retried on the next
//!   request; a 401 from the upstream also makes the next request fetch the key again, so a
//!   rotated key is picked up), and keeps serving.
//!
//! Client connections are keep-alive with pipelining; one upstream request per client is in
//! flight at a time; upstream connections (and their TLS sessions) are kept alive and reused
//! (a reused one found closed by the upstream is replaced once, before any response byte); every socket is non-blocking under one `poll_oneoff` loop, so a slow
//! client or upstream never blocks the others.

use std::sync::Arc;

mod native_aead;

const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 2 << 20;
/// Request bytes buffered across all clients at once (the module's linear memory is
/// bounded: 16 MiB by default); a client that would go over it gets a 503 and is closed.
const BUFFER_BUDGET: usize = 4 << 20;
const MAX_HEADERS: usize = 64;
/// Stop reading from an upstream while this much is waiting for its client.
const HIGH_WATER: usize = 64 << 10;
/// Upstream requests in flight at once (each holds a client buffer, an upstream connection
/// and maybe a TLS session); more wait with a 503.
const MAX_IN_FLIGHT: usize = 256;
/// Upstream requests in flight: recounted by the event loop before each client is pumped,
/// counted up as requests start.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Client headers never forwarded: credentials, the connection's own and hop-by-hop ones.
const DROPPED: &[&str] = &[
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "proxy-connection",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
    "transfer-encoding",
];

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
    #[cfg(target_os = "wasi")]
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

/// One configured upstream and its key.
struct Route {
    /// Host name as configured (matched against path prefixes and absolute targets).
    host: String,
    /// `HOST:PORT`: the egress destination (as measured) and the `Host` header.
    dest: String,
    /// For an https upstream: the name its certificate must carry.
    tls: Option<rustls_pki_types::ServerName<'static>>,
    secret_path: String,
    /// Injected header name, lower case.
    header: String,
    /// Injected header as `Name: value-with-{secret}`.
    template: String,
    secret: Option<Vec<u8>>,
    /// Idle keep-alive connections to the upstream, most recent last.
    idle: Vec<(u32, Option<Box<rustls::ClientConnection>>)>,
}

/// Idle upstream connections kept per route.
const MAX_IDLE: usize = 16;

impl Route {
    /// The key, fetched from the broker on first use (or after a refusal / a 401).
    fn key(&mut self) -> Result<&[u8], String> {
        if self.secret.is_none() {
            let k = ironclaw_guest::get_secret(&self.secret_path)
                .map_err(|e| format!("key broker did not release {}: {e}", self.secret_path))?;
            if k.is_empty() || k.iter().any(|b| *b < 0x20 || *b == 0x7f) {
                return Err(format!(
                    "secret {} is not a valid header value",
                    self.secret_path
                ));
            }
            self.secret = Some(k);
        }
        Ok(self.secret.as_deref().unwrap_or_default())
    }
}

fn usage(why: &str) -> ! {
    eprintln!(
        "llm-proxy: {why}\nusage: llm-proxy (--upstream http://HOST[:PORT] --secret REPO/TYPE/TAG \
         --inject 'Header: ...{{secret}}...')..."
    );
    std::process::exit(2);
}

/// The routes, and the CA certificates (PEM) given with `--upstream-ca-pem`.
fn parse_routes(args: &[String]) -> (Vec<Route>, Option<String>) {
    let mut routes: Vec<Route> = Vec::new();
    let mut ca = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--upstream-ca-pem" => ca = Some(value.clone()),
            "--upstream" => {
                let (rest, https) = if let Some(r) = value.strip_prefix("http://") {
                    (r, false)
                } else if let Some(r) = value.strip_prefix("https://") {
                    (r, true)
                } else {
                    usage(&format!("{value}: expected http(s)://HOST[:PORT]"))
                };
                let authority = rest.trim_end_matches('/');
                if authority.is_empty() || authority.contains('/') || authority.contains('@') {
                    usage(&format!(
                        "{value}: expected http://HOST[:PORT] with no path"
                    ));
                }
                let default_port = if https { 443 } else { 80 };
                let (host, dest) = match authority.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), authority.into()),
                    _ => (authority.to_string(), format!("{authority}:{default_port}")),
                };
                let tls = if https {
                    let name = host.trim_start_matches('[').trim_end_matches(']');
                    match rustls_pki_types::ServerName::try_from(name.to_string()) {
                        Ok(n) => Some(n),
                        Err(e) => usage(&format!("{value}: {e}")),
                    }
                } else {
                    None
                };
                routes.push(Route {
                    host: host.to_ascii_lowercase(),
                    dest,
                    tls,
                    secret_path: String::new(),
                    header: String::new(),
                    template: String::new(),
                    secret: None,
                    idle: Vec::new(),
                });
            }
            "--secret" | "--inject" => {
                let Some(r) = routes.last_mut() else {
                    usage(&format!("{flag} before any --upstream"))
                };
                if flag == "--secret" {
                    r.secret_path = value.clone();
                } else {
                    let Some((name, tmpl)) = value.split_once(':') else {
                        usage(&format!("--inject {value:?}: expected 'Header: template'"))
                    };
                    let name = name.trim();
                    let token = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                    if !token || tmpl.matches("{secret}").count() != 1 {
                        usage(&format!(
                            "--inject {value:?}: a header name and a value with {{secret}} once"
                        ));
                    }
                    r.header = name.to_ascii_lowercase();
                    r.template = format!("{name}: {}", tmpl.trim());
                }
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if routes.is_empty() {
        usage("no --upstream");
    }
    for r in &routes {
        if r.secret_path.is_empty() || r.template.is_empty() {
            usage(&format!("upstream {}: needs --secret and --inject", r.dest));
        }
    }
    (routes, ca)
}

/// The TLS client configuration: the given CA certificates, or the compiled-in Mozilla
/// roots; TLS 1.2 and 1.3 with the RustCrypto provider.
fn tls_config(ca_pem: Option<&str>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let added = cert
                    .map_err(|e| e.to_string())
                    .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
                if let Err(e) = added {
                    usage(&format!("--upstream-ca: {e}"));
                }
            }
            if roots.is_empty() {
                usage("--upstream-ca: no certificate in the PEM");
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // Record protection runs natively in the shim (see native_aead.rs).
    let provider = Arc::new(native_aead::provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => Arc::new(b.with_root_certificates(roots).with_no_client_auth()),
        Err(e) => usage(&format!("TLS configuration: {e}")),
    }
}

/// An answer the proxy gives itself (never forwarded).
struct Refusal {
    status: &'static str,
    reason: String,
}

fn refuse(status: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

fn error_response(out: &mut Vec<u8>, r: &Refusal, close: bool) {
    let body = format!("llm-proxy: {}\n", r.reason);
    let conn = if close { "close" } else { "keep-alive" };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
            r.status,
            body.len()
        )
        .as_bytes(),
    );
}

/// The route and upstream path for a request target.
fn route_for(routes: &[Route], target: &str) -> Result<(usize, String), Refusal> {
    let find = |host: &str| {
        let host = host.to_ascii_lowercase();
        routes
            .iter()
            .position(|r| r.host == host || r.dest.eq_ignore_ascii_case(&host))
    };
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        return match find(authority) {
            Some(i) => Ok((i, path.to_string())),
            None => Err(refuse(
                "403 Forbidden",
                format!("host {authority} is not a configured upstream"),
            )),
        };
    }
    if !target.starts_with('/') {
        return Err(refuse("400 Bad Request", "unsupported request target"));
    }
    let seg_end = target[1..].find(['/', '?']).map_or(target.len(), |i| i + 1);
    if let Some(i) = find(&target[1..seg_end]) {
        let path = &target[seg_end..];
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        return Ok((i, path));
    }
    if routes.len() == 1 {
        return Ok((0, target.to_string()));
    }
    Err(refuse(
        "404 Not Found",
        "no route: start the path with a configured upstream host",
    ))
}

/// How the end of a response body is recognised.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes: the client connection closes after it.
    Close,
}

struct Upstream {
    fd: u32,
    /// The TLS session of an https upstream (`out` then holds TLS records).
    tls: Option<Box<rustls::ClientConnection>>,
    route: usize,
    dest: String,
    /// Request bytes not yet sent.
    out: Vec<u8>,
    /// Response head bytes until it parses.
    head: Vec<u8>,
    framing: Option<Framing>,
    relayed: u64,
    /// Where a chunked body is (its end, or invalid framing).
    chunks: ChunkTracker,
    /// Taken from the route's idle pool (may have been closed meanwhile: retried once).
    reused: bool,
    /// The request (plain text), kept for that retry.
    request: Vec<u8>,
    /// The upstream closed, or said it will (`Connection: close`).
    upstream_close: bool,
    /// The key, to keep it out of the relayed body.
    secret: Vec<u8>,
    /// Body bytes held back: they could be the start of the key.
    held: Vec<u8>,
    /// The body contained the key: relaying stopped, the client connection is cut.
    leaked: bool,
    is_head_request: bool,
    /// The client asked to close after this response.
    close_after: bool,
}

struct Client {
    fd: u32,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    closing: bool,
    dead: bool,
    continued: bool,
    up: Option<Upstream>,
}

enum Io {
    Data(usize),
    Again,
    Eof,
    Error(u16),
}

#[cfg(target_os = "wasi")]
fn recv(fd: u32, buf: &mut [u8]) -> Io {
    let iov = wasi::Iovec {
        buf: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let (mut n, mut flags) = (0u32, 0u16);
    // SAFETY: one iovec over `buf`, and two out-parameters, all live.
    let r = unsafe { wasi::sock_recv(fd, &iov, 1, 0, &mut n, &mut flags) };
    match (r, n) {
        (0, 0) => Io::Eof,
        (0, n) => Io::Data(n as usize),
        (wasi::EAGAIN, _) => Io::Again,
        (e, _) => Io::Error(e),
    }
}

/// Sends what the socket takes from the front of `out` (never blocks).
#[cfg(target_os = "wasi")]
fn flush(fd: u32, out: &mut Vec<u8>) -> Result<(), u16> {
    while !out.is_empty() {
        let iov = wasi::Ciovec {
            buf: out.as_ptr(),
            len: out.len(),
        };
        let mut n = 0u32;
        // SAFETY: one iovec over `out`, one out-parameter, all live.
        let r = unsafe { wasi::sock_send(fd, &iov, 1, 0, &mut n) };
        match r {
            0 => {
                out.drain(..(n as usize).min(out.len()));
            }
            wasi::EAGAIN => return Ok(()),
            e => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_os = "wasi")]
fn close(fd: u32) {
    // SAFETY: no pointers; the caller owns `fd` and forgets it.
    unsafe { wasi::fd_close(fd) };
}

fn errno_text(e: u16) -> String {
    match e {
        8 => "bad descriptor".into(),
        14 => "connection aborted".into(),
        15 => "connection refused".into(),
        26 => "connection reset".into(),
        29 => "I/O error".into(),
        64 => "broken pipe".into(),
        73 => "timed out".into(),
        other => format!("errno {other}"),
    }
}

/// Follows a chunked body's framing (without decoding it) to find its end.
#[derive(Default)]
struct ChunkTracker {
    state: Chunk,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Chunk {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
    Invalid,
}

impl ChunkTracker {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.state == Chunk::Data {
                let take = (data.len() as u64).min(self.size);
                self.size -= take;
                data = &data[take as usize..];
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = data[0];
            data = &data[1..];
            self.state = match (self.state, b) {
                (Chunk::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    match self.size.checked_mul(16) {
                        Some(v) => {
                            self.size = v + digit;
                            Chunk::Size
                        }
                        None => Chunk::Invalid,
                    }
                }
                (Chunk::Size, b';') | (Chunk::Size, b' ') => Chunk::Ext,
                (Chunk::Size | Chunk::Ext, b'\r') => Chunk::SizeLf,
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::SizeLf, b'\n') if self.size == 0 => Chunk::TrailerStart,
                (Chunk::SizeLf, b'\n') => Chunk::Data,
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::TrailerStart, b'\r') => Chunk::FinalLf,
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::TrailerStart | Chunk::Trailer, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                (Chunk::FinalLf, b'\n') => Chunk::Done,
                _ => Chunk::Invalid,
            };
            if matches!(self.state, Chunk::Done | Chunk::Invalid) {
                return;
            }
        }
    }
}

/// Starts `request` to the route's upstream: on an idle keep-alive connection when there is
/// one and `pooled`, else on a new one.
#[cfg(target_os = "wasi")]
fn start_upstream(
    routes: &mut [Route],
    ri: usize,
    tls: &Arc<rustls::ClientConfig>,
    request: Vec<u8>,
    pooled: bool,
    is_head_request: bool,
    close_after: bool,
) -> Result<Upstream, Refusal> {
    use std::os::fd::IntoRawFd;
    let route = &mut routes[ri];
    let dest = route.dest.clone();
    let idle = if pooled { route.idle.pop() } else { None };
    let reused = idle.is_some();
    let (fd, mut session) = match idle {
        Some(c) => c,
        None => {
            let fd = ironclaw_guest::connect(&dest)
                .map_err(|e| refuse("502 Bad Gateway", format!("upstream {dest}: {e}")))?
                .into_raw_fd() as u32;
            // SAFETY: no pointers.
            unsafe { wasi::fd_fdstat_set_flags(fd, wasi::FDFLAGS_NONBLOCK) };
            let mut session = None;
            if let Some(name) = &route.tls {
                match rustls::ClientConnection::new(tls.clone(), name.clone()) {
                    Ok(mut conn) => {
                        conn.set_buffer_limit(None);
                        session = Some(Box::new(conn));
                    }
                    Err(e) => {
                        close(fd);
                        return Err(refuse(
                            "502 Bad Gateway",
                            format!("upstream {dest}: TLS: {e}"),
                        ));
                    }
                }
            }
            (fd, session)
        }
    };
    let mut out = Vec::new();
    match session.as_mut() {
        Some(conn) => {
            // Buffered by rustls until the handshake is done, then encrypted.
            let _ = std::io::Write::write_all(&mut conn.writer(), &request);
            encode(conn, &mut out);
        }
        None => out.extend_from_slice(&request),
    }
    Ok(Upstream {
        fd,
        tls: session,
        route: ri,
        dest,
        out,
        head: Vec::new(),
        framing: None,
        relayed: 0,
        chunks: ChunkTracker::default(),
        reused,
        request: if reused { request } else { Vec::new() },
        upstream_close: false,
        secret: Vec::new(),
        held: Vec::new(),
        leaked: false,
        is_head_request,
        close_after,
    })
}

/// Appends the TLS records the session wants to send to `out`.
fn encode(conn: &mut rustls::ClientConnection, out: &mut Vec<u8>) {
    while conn.wants_write() {
        if conn.write_tls(out).is_err() {
            break;
        }
    }
}

/// Parses and starts every complete request at the front of `c.inbuf` while no upstream
/// request is in flight.
#[cfg(target_os = "wasi")]
fn process_requests(c: &mut Client, routes: &mut [Route], tls: &Arc<rustls::ClientConfig>) {
    while !c.closing && c.up.is_none() && !c.inbuf.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&c.inbuf) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
            Ok(httparse::Status::Partial) if c.inbuf.len() <= MAX_HEAD => return,
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                let r = refuse(
                    "431 Request Header Fields Too Large",
                    "request head over 16 KiB or 64 headers",
                );
                error_response(&mut c.out, &r, true);
                c.closing = true;
                return;
            }
            Err(e) => {
                error_response(&mut c.out, &refuse("400 Bad Request", e.to_string()), true);
                c.closing = true;
                return;
            }
        };
        let mut len = 0usize;
        let mut close = req.version == Some(0);
        let mut chunked = false;
        let mut expect = false;
        for h in req.headers.iter() {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if h.name.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(usize::MAX);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = v.contains("close") || (close && !v.contains("keep-alive"));
            } else if h.name.eq_ignore_ascii_case("expect") {
                expect = v.contains("100-continue");
            }
        }
        if chunked {
            let r = refuse(
                "411 Length Required",
                "chunked request bodies are not supported",
            );
            error_response(&mut c.out, &r, true);
            c.closing = true;
            return;
        }
        if len > MAX_BODY {
            let r = refuse("413 Content Too Large", "request body over 2 MiB");
            error_response(&mut c.out, &r, true);
            c.closing = true;
            return;
        }
        if c.inbuf.len() < head + len {
            // Room for the whole body at once (no doubling past it).
            c.inbuf.reserve_exact(head + len - c.inbuf.len());
            if expect && !c.continued {
                c.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                c.continued = true;
            }
            return;
        }
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("").to_string();
        let outcome = if method.eq_ignore_ascii_case("CONNECT") {
            Err(refuse("405 Method Not Allowed", "CONNECT is not proxied"))
        } else if IN_FLIGHT.load(std::sync::atomic::Ordering::Relaxed) >= MAX_IN_FLIGHT {
            Err(refuse(
                "503 Service Unavailable",
                "proxy busy: too many upstream requests in flight",
            ))
        } else {
            route_for(routes, &target)
        };
        let started = outcome.and_then(|(ri, path)| {
            let route = &mut routes[ri];
            let header = route.header.clone();
            let key = route
                .key()
                .map_err(|why| refuse("503 Service Unavailable", why))?
                .to_vec();
            let mut up =
                format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", route.dest).into_bytes();
            for h in req.headers.iter() {
                let name = h.name.to_ascii_lowercase();
                if DROPPED.contains(&name.as_str()) || name == header {
                    continue;
                }
                up.extend_from_slice(h.name.as_bytes());
                up.extend_from_slice(b": ");
                up.extend_from_slice(h.value);
                up.extend_from_slice(b"\r\n");
            }
            let (before, after) = route
                .template
                .split_once("{secret}")
                .unwrap_or((&route.template, ""));
            up.extend_from_slice(before.as_bytes());
            up.extend_from_slice(&key);
            up.extend_from_slice(after.as_bytes());
            up.extend_from_slice(format!("\r\nContent-Length: {len}\r\n\r\n").as_bytes());
            up.extend_from_slice(&c.inbuf[head..head + len]);
            start_upstream(
                routes,
                ri,
                tls,
                up,
                true,
                method.eq_ignore_ascii_case("HEAD"),
                close,
            )
        });
        c.inbuf.drain(..head + len);
        c.continued = false;
        match started {
            Ok(up) => {
                IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c.up = Some(up);
            }
            Err(r) => {
                error_response(&mut c.out, &r, close);
                c.closing = close;
            }
        }
    }
}

/// The response head rewritten for the client, and its framing.
fn rewrite_head(
    resp: &httparse::Response<'_, '_>,
    secret: &[u8],
    is_head_request: bool,
    client_close: bool,
) -> (Vec<u8>, Framing) {
    let code = resp.code.unwrap_or(502);
    let mut framing = Framing::Close;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
            {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && framing == Framing::Close {
            if let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                framing = Framing::Length(n);
            }
        }
    }
    if is_head_request || code == 204 || code == 304 {
        framing = Framing::Empty;
    }
    let close = client_close || framing == Framing::Close;
    let mut out = format!("HTTP/1.1 {code} {}\r\n", resp.reason.unwrap_or("")).into_bytes();
    for h in resp.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let reflects = !secret.is_empty() && h.value.windows(secret.len()).any(|w| w == secret);
        if reflects || ["connection", "keep-alive", "proxy-connection"].contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if close {
        b"Connection: close\r\n\r\n".as_slice()
    } else {
        b"Connection: keep-alive\r\n\r\n".as_slice()
    });
    (out, framing)
}

impl Upstream {
    /// Whether the relayed body is complete.
    fn complete(&self) -> bool {
        match self.framing {
            Some(Framing::Empty) => true,
            Some(Framing::Length(n)) => self.relayed >= n,
            Some(Framing::Chunked) => self.chunks.state == Chunk::Done,
            _ => false,
        }
    }

    /// Takes response bytes: parses the head, then relays body bytes to `out`.
    /// Err = a refusal for the client (nothing relayed yet).
    fn take(
        &mut self,
        data: &[u8],
        routes: &mut [Route],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        if self.framing.is_some() {
            self.relay(data, out);
            return Ok(());
        }
        self.head.extend_from_slice(data);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            let n = match resp.parse(&self.head) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if self.head.len() <= MAX_HEAD => return Ok(()),
                Ok(_) => {
                    return Err(refuse(
                        "502 Bad Gateway",
                        format!("upstream {}: response head over 16 KiB", self.dest),
                    ))
                }
                Err(e) => {
                    return Err(refuse(
                        "502 Bad Gateway",
                        format!("upstream {}: invalid response: {e}", self.dest),
                    ))
                }
            };
            let code = resp.code.unwrap_or(0);
            if (100..200).contains(&code) {
                // Interim response (we never send Expect): skip it.
                self.head.drain(..n);
                continue;
            }
            self.upstream_close |= resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("close")
            }) || resp.version == Some(0);
            let route = &mut routes[self.route];
            let secret = route.secret.clone().unwrap_or_default();
            self.secret = secret.clone();
            if code == 401 {
                // Maybe the key was rotated at the broker: fetch it again next time.
                route.secret = None;
            }
            let (head, framing) =
                rewrite_head(&resp, &secret, self.is_head_request, self.close_after);
            out.extend_from_slice(&head);
            self.framing = Some(framing);
            let rest = self.head.split_off(n);
            self.head = Vec::new();
            self.relay(&rest, out);
            return Ok(());
        }
    }

    fn relay(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let data = match self.framing {
            Some(Framing::Empty) => &data[..0],
            Some(Framing::Length(n)) => {
                let left = n.saturating_sub(self.relayed);
                &data[..data.len().min(left as usize)]
            }
            _ => data,
        };
        self.relayed += data.len() as u64;
        if self.framing == Some(Framing::Chunked) {
            self.chunks.feed(data);
        }
        if self.leaked {
            return;
        }
        // Never relay the key: hold back a tail that could be the start of it until the
        // next bytes (or the end) show it is not.
        let mut pending = std::mem::take(&mut self.held);
        pending.extend_from_slice(data);
        let key = &self.secret;
        if key.is_empty() {
            out.extend_from_slice(&pending);
            return;
        }
        if contains(&pending, key) {
            self.leaked = true;
            return;
        }
        let hold = (1..key.len().min(pending.len() + 1))
            .rev()
            .find(|k| pending.ends_with(&key[..*k]))
            .unwrap_or(0);
        out.extend_from_slice(&pending[..pending.len() - hold]);
        self.held = pending[pending.len() - hold..].to_vec();
    }
}

/// Whether `needle` (not empty) occurs in `hay`: a scan for its first byte, then a compare
/// (the interpreter pays per instruction, so no windowed compare per position).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return false;
    };
    let mut at = 0;
    while let Some(p) = hay[at..].iter().position(|b| *b == first) {
        if hay[at + p..].starts_with(needle) {
            return true;
        }
        at += p + 1;
    }
    false
}

/// Feeds TLS records to the session and returns the plaintext they carried; handshake
/// answers go to `out`; `ended` is set when the upstream closed the TLS session.
fn decrypt(
    conn: &mut rustls::ClientConnection,
    mut data: &[u8],
    out: &mut Vec<u8>,
    ended: &mut bool,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut plain = Vec::new();
    while !data.is_empty() {
        conn.read_tls(&mut data).map_err(|e| e.to_string())?;
        let state = conn.process_new_packets().map_err(|e| {
            encode(conn, out); // the alert
            e.to_string()
        })?;
        let mut n = state.plaintext_bytes_to_read();
        while n > 0 {
            let at = plain.len();
            plain.resize(at + n, 0);
            let got = conn
                .reader()
                .read(&mut plain[at..])
                .map_err(|e| e.to_string())?;
            plain.truncate(at + got);
            if got == 0 {
                break;
            }
            n -= got;
        }
        if state.peer_has_closed() {
            *ended = true;
        }
    }
    encode(conn, out);
    Ok(plain)
}

/// Moves bytes for one client: its requests, its upstream's request and response.
#[cfg(target_os = "wasi")]
fn pump(
    c: &mut Client,
    routes: &mut [Route],
    tls: &Arc<rustls::ClientConfig>,
    buf: &mut [u8],
    others: usize,
) {
    if c.up.is_none() && !c.closing {
        loop {
            if others + c.inbuf.len() + buf.len() > BUFFER_BUDGET {
                let r = refuse(
                    "503 Service Unavailable",
                    "proxy busy: too many request bytes buffered",
                );
                error_response(&mut c.out, &r, true);
                c.closing = true;
                c.inbuf = Vec::new();
                break;
            }
            match recv(c.fd, buf) {
                Io::Data(n) => c.inbuf.extend_from_slice(&buf[..n]),
                Io::Again => break,
                Io::Eof | Io::Error(_) => {
                    c.closing = true;
                    break;
                }
            }
            if c.inbuf.len() > MAX_HEAD + MAX_BODY {
                break;
            }
        }
        // A client that closed its side after a complete request still gets its answer.
        let closing = std::mem::replace(&mut c.closing, false);
        process_requests(c, routes, tls);
        c.closing |= closing;
    }
    while let Some(up) = c.up.as_mut() {
        let mut failure: Option<String> = flush(up.fd, &mut up.out)
            .err()
            .map(|e| format!("upstream {}: {}", up.dest, errno_text(e)));
        let mut ended = false;
        while failure.is_none() && !ended && c.out.len() < HIGH_WATER {
            let n = match recv(up.fd, buf) {
                Io::Data(n) => n,
                Io::Again => break,
                Io::Eof => {
                    ended = true;
                    up.upstream_close = true;
                    break;
                }
                Io::Error(e) => {
                    failure = Some(format!("upstream {}: {}", up.dest, errno_text(e)));
                    break;
                }
            };
            let plain = match up.tls.as_mut() {
                None => Ok(buf[..n].to_vec()),
                Some(conn) => {
                    let mut closed = false;
                    let p = decrypt(conn, &buf[..n], &mut up.out, &mut closed);
                    if closed {
                        ended = true;
                        up.upstream_close = true;
                    }
                    p
                }
            };
            let taken = plain
                .map_err(|e| format!("upstream {}: TLS: {e}", up.dest))
                .and_then(|p| up.take(&p, routes, &mut c.out).map_err(|r| r.reason));
            match taken {
                Err(why) => failure = Some(why),
                Ok(()) if up.leaked => {
                    failure = Some(format!(
                        "upstream {}: the response contained the key; cut",
                        up.dest
                    ));
                    eprintln!(
                        "llm-proxy: upstream {} echoed the key: response cut",
                        up.dest
                    );
                }
                Ok(()) if up.complete() => ended = true,
                Ok(()) => {}
            }
            if failure.is_none() && !up.out.is_empty() {
                failure = flush(up.fd, &mut up.out)
                    .err()
                    .map(|e| format!("upstream {}: {}", up.dest, errno_text(e)));
            }
        }
        if failure.is_none() && !ended {
            break;
        }
        let complete = up.complete();
        let started = up.framing.is_some();
        let close_after = up.close_after || up.framing == Some(Framing::Close);
        let dest = up.dest.clone();
        let Some(done) = c.up.take() else { break };
        if !started && done.reused && done.head.is_empty() {
            // An idle connection the upstream had closed meanwhile: once more on a new one.
            close(done.fd);
            match start_upstream(
                routes,
                done.route,
                tls,
                done.request,
                false,
                done.is_head_request,
                done.close_after,
            ) {
                Ok(up) => {
                    c.up = Some(up);
                    continue;
                }
                Err(r) => {
                    error_response(&mut c.out, &r, done.close_after);
                    c.closing |= done.close_after;
                    process_requests(c, routes, tls);
                    continue;
                }
            }
        }
        if started && !done.leaked {
            c.out.extend_from_slice(&done.held);
        }
        let failed = failure.is_some();
        let reusable = failure.is_none()
            && complete
            && !done.upstream_close
            && done.framing != Some(Framing::Close)
            && routes[done.route].idle.len() < MAX_IDLE;
        if reusable {
            routes[done.route].idle.push((done.fd, done.tls));
        } else {
            close(done.fd);
        }
        if !started {
            let reason =
                failure.unwrap_or_else(|| format!("upstream {dest}: closed without a response"));
            error_response(&mut c.out, &refuse("502 Bad Gateway", reason), close_after);
            c.closing |= close_after;
        } else if !complete || close_after || failed {
            // Cut short (or delimited by the close): the client cannot reuse the connection.
            c.closing = true;
        }
        process_requests(c, routes, tls);
    }
    if flush(c.fd, &mut c.out).is_err() || (c.closing && c.out.is_empty() && c.up.is_none()) {
        c.dead = true;
    }
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

#[cfg(target_os = "wasi")]
fn subscription(fd: u32, write: bool) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&u64::from(fd).to_le_bytes());
    s[8] = if write { 2 } else { 1 };
    s[16..20].copy_from_slice(&fd.to_le_bytes());
    s
}

#[cfg(target_os = "wasi")]
fn event_loop(routes: &mut [Route], tls: &Arc<rustls::ClientConfig>, mut listeners: Vec<u32>) {
    for fd in &listeners {
        // SAFETY: no pointers.
        unsafe { wasi::fd_fdstat_set_flags(*fd, wasi::FDFLAGS_NONBLOCK) };
    }
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut subs: Vec<u8> = Vec::new();
    let mut events: Vec<u8> = Vec::new();
    loop {
        if listeners.is_empty() && clients.is_empty() {
            return;
        }
        subs.clear();
        for fd in &listeners {
            subs.extend_from_slice(&subscription(*fd, false));
        }
        for c in &clients {
            if !c.out.is_empty() {
                subs.extend_from_slice(&subscription(c.fd, true));
            }
            match &c.up {
                None if !c.closing => subs.extend_from_slice(&subscription(c.fd, false)),
                None => {}
                Some(up) => {
                    if !up.out.is_empty() {
                        subs.extend_from_slice(&subscription(up.fd, true));
                    }
                    if c.out.len() < HIGH_WATER {
                        subs.extend_from_slice(&subscription(up.fd, false));
                    }
                }
            }
        }
        let n = (subs.len() / 48) as u32;
        events.resize(subs.len() / 48 * 32, 0);
        let mut got = 0u32;
        // SAFETY: `subs` holds n subscriptions, `events` room for n events.
        let r = unsafe { wasi::poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), n, &mut got) };
        if r != 0 {
            eprintln!("llm-proxy: poll_oneoff: errno {r}");
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
                            close(fd);
                            listeners.remove(pos);
                        }
                        break;
                    }
                    clients.push(Client {
                        fd: new,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        closing: false,
                        dead: false,
                        continued: false,
                        up: None,
                    });
                }
                continue;
            }
            let buffered: usize = clients.iter().map(|c| c.inbuf.len()).sum();
            let in_flight = clients.iter().filter(|c| c.up.is_some()).count();
            IN_FLIGHT.store(in_flight, std::sync::atomic::Ordering::Relaxed);
            let Some(c) = clients
                .iter_mut()
                .find(|c| c.fd == fd || c.up.as_ref().is_some_and(|u| u.fd == fd))
            else {
                continue;
            };
            if !c.dead {
                pump(c, routes, tls, &mut buf, buffered - c.inbuf.len());
            }
        }
        clients.retain(|c| {
            if c.dead {
                if let Some(up) = &c.up {
                    close(up.fd);
                }
                close(c.fd);
            }
            !c.dead
        });
    }
}

#[cfg(target_os = "wasi")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut routes, ca) = parse_routes(&args);
    let tls = tls_config(ca.as_deref());
    for r in routes.iter_mut() {
        // Fetch each key once at start; a failure is retried on the route's next request.
        match r.key() {
            Ok(_) => eprintln!("llm-proxy: key for {} ready", r.dest),
            Err(why) => eprintln!("llm-proxy: {why} (retried on the next request)"),
        }
    }
    let ls = listeners();
    if ls.is_empty() {
        eprintln!("llm-proxy: no listener (run it with ironclaw proxy --listen ...)");
        std::process::exit(2);
    }
    event_loop(&mut routes, &tls, ls);
}

#[cfg(not(target_os = "wasi"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (routes, ca) = parse_routes(&args);
    let _ = (route_for(&routes, "/"), tls_config(ca.as_deref()));
    eprintln!("llm-proxy runs inside IronClaw only (ironclaw proxy)");
    std::process::exit(2);
}
