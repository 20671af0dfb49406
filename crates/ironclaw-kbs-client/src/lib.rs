//! A small HTTPS client for the KBS API: used by the tests, the benchmark and
//! the IronClaw host, which forwards the enclave's KBS requests to the broker.
//! It is its own crate so the host's VMM does not link the broker's server.
//!
//! It trusts exactly the certificates it is given (a KBS certificate is pinned
//! per deployment; `STATE/tls.crt` for the self-signed one), keeps one
//! keep-alive connection, and reads Content-Length bodies. The same two crates as
//! the server (rustls, httparse) do the work; a general HTTP client crate would add
//! redirects, proxies and public roots that a pinned KBS connection must not use.
//! Replies are untrusted: sizes are bounded and heads parsed by httparse.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring;
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};

/// Largest reply body.
pub const MAX_REPLY_BODY: usize = 8 * 1024 * 1024;
const MAX_REPLY_HEAD: usize = 16 * 1024;

/// Certificate and TLS configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// PEM content.
    #[error("{path}: {reason}")]
    Pem {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Reads every certificate of a PEM file (`STATE/tls.crt` of the broker, or a deployment's
/// pinned KBS certificate).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A client configuration trusting exactly `roots`.
pub fn client_config(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store
            .add(c.clone())
            .map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `https://HOST:PORT[/]`.
    #[error("broker URL {0:?}: expected https://HOST:PORT")]
    BadUrl(String),
    /// A request header name or value that would break the request head.
    #[error("request header {0:?}: invalid name, or CR/LF in its value")]
    BadHeader(String),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Network / TLS failure.
    #[error("{addr}: {source}")]
    Io {
        /// Server address.
        addr: String,
        /// Error.
        source: io::Error,
    },
    /// The reply is not valid HTTP.
    #[error("{addr}: malformed reply: {reason}")]
    BadReply {
        /// Server address.
        addr: String,
        /// What is wrong.
        reason: String,
    },
}

/// One HTTP reply.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Set-Cookie` header value.
    pub set_cookie: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

type Conn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A KBS HTTPS client.
pub struct KbsHttpClient {
    addr: String,
    host: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    conn: Option<Conn>,
    connector: Option<Connector>,
    /// Socket timeouts.
    pub timeout: Duration,
}

/// Opens the TCP connection to `HOST:PORT` (the default is
/// `TcpStream::connect`); tests use it to connect from chosen source addresses.
pub type Connector = Arc<dyn Fn(&str) -> io::Result<TcpStream> + Send + Sync>;

impl std::fmt::Debug for KbsHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsHttpClient")
            .field("addr", &self.addr)
            .finish()
    }
}

impl KbsHttpClient {
    /// A client for `url` (`https://HOST:PORT`) trusting `roots`.
    pub fn new(url: &str, roots: &[CertificateDer<'static>]) -> Result<Self, ClientError> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| ClientError::BadUrl(url.into()))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.is_empty() {
            return Err(ClientError::BadUrl(url.into()));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| ClientError::BadUrl(url.into()))?;
        port.parse::<u16>()
            .map_err(|_| ClientError::BadUrl(url.into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| ClientError::BadUrl(url.into()))?;
        Ok(KbsHttpClient {
            addr: authority.to_string(),
            host,
            server_name,
            tls: client_config(roots)?,
            conn: None,
            connector: None,
            timeout: Duration::from_secs(30),
        })
    }

    /// Opens connections with `connector` instead of `TcpStream::connect`.
    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Closes the kept-alive connection: the next request opens a new one
    /// (a fresh TCP connection and TLS handshake).
    pub fn close(&mut self) {
        self.conn = None;
    }

    fn io(&self) -> impl FnOnce(io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<Conn, ClientError> {
        let tcp = match &self.connector {
            Some(c) => c(&self.addr),
            None => TcpStream::connect(&self.addr),
        }
        .map_err(self.io())?;
        tcp.set_read_timeout(Some(self.timeout))
            .map_err(self.io())?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(self.io())?;
        let _ = tcp.set_nodelay(true);
        let conn = rustls::ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| ClientError::Io {
                addr: self.addr.clone(),
                source: io::Error::other(e),
            })?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// Sends one request and reads the reply (reconnecting once if a kept-alive
    /// connection was closed by the server).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: &[u8],
    ) -> Result<HttpReply, ClientError> {
        self.request_with_headers(method, path, cookie, &[], body)
    }

    /// [`KbsHttpClient::request`] with extra request headers (e.g.
    /// `Authorization: Bearer <attestation token>`).
    pub fn request_with_headers(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpReply, ClientError> {
        for (name, value) in headers {
            if name.is_empty()
                || name.contains(|c: char| c == ':' || c.is_ascii_whitespace() || c.is_control())
                || value.contains(['\r', '\n'])
            {
                return Err(ClientError::BadHeader((*name).to_string()));
            }
        }
        let reused = self.conn.is_some();
        match self.try_request(method, path, cookie, headers, body) {
            Err(ClientError::Io { .. }) if reused => {
                self.conn = None;
                self.try_request(method, path, cookie, headers, body)
            }
            other => other,
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpReply, ClientError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(c) = cookie {
            head.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        conn.write_all(&out)
            .and_then(|()| conn.flush())
            .map_err(self.io())?;
        let (reply, keep) = self.read_reply(&mut conn)?;
        if keep {
            self.conn = Some(conn);
        }
        Ok(reply)
    }

    fn read_reply(&self, conn: &mut Conn) -> Result<(HttpReply, bool), ClientError> {
        let bad = |reason: String| ClientError::BadReply {
            addr: self.addr.clone(),
            reason,
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > MAX_REPLY_HEAD {
                return Err(bad("reply head too large".into()));
            }
            let n = conn.read(&mut chunk).map_err(self.io())?;
            if n == 0 {
                return Err(ClientError::Io {
                    addr: self.addr.clone(),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf.get(..head_end).unwrap_or_default()) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(bad("unparseable status line or headers".into())),
        }
        let status = resp.code.ok_or_else(|| bad("no status code".into()))?;
        let mut len = None;
        let mut set_cookie = None;
        let mut keep = true;
        for h in resp.headers.iter() {
            let v = std::str::from_utf8(h.value).unwrap_or("");
            if h.name.eq_ignore_ascii_case("content-length") {
                len = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad("bad Content-Length".into()))?,
                );
            } else if h.name.eq_ignore_ascii_case("set-cookie") {
                set_cookie = Some(v.to_string());
            } else if h.name.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                keep = false;
            }
        }
        let len = len.ok_or_else(|| bad("no Content-Length".into()))?;
        if len > MAX_REPLY_BODY {
            return Err(bad(format!("body of {len} bytes is too large")));
        }
        let total = head_end + len;
        while buf.len() < total {
            let n = conn.read(&mut chunk).map_err(self.io())?;
            if n == 0 {
                return Err(bad("connection closed inside the body".into()));
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let body = buf.get(head_end..total).unwrap_or_default().to_vec();
        Ok((
            HttpReply {
                status,
                set_cookie,
                body,
            },
            keep,
        ))
    }
}
