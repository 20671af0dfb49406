//! A small, blocking, single-threaded D-Bus client: exactly what the systemd driver needs (unix
//! socket, SASL EXTERNAL, method calls, errors, one kind of signal) and nothing more.
//!
//! Why not a D-Bus crate: `create` clones the container's init with `clone3`, which needs a
//! single-threaded runtime, and the user instance's cgroup is looked up before that clone; the
//! maintained Rust client (zbus) runs its connection on an executor thread and brings an async
//! stack of some forty crates with it. youki made the same choice.
//!
//! Every byte read from the bus is parsed with bounds checks (lengths, alignment padding, nesting
//! depth, UTF-8): the bus daemon is trusted to route messages, but a parser that can be made to
//! panic or loop is a bug whoever sends the bytes.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The largest message this client accepts (its replies are a few hundred bytes).
const MAX_MESSAGE: usize = 4 << 20;
/// The spec's limit on container nesting (arrays + structs + variants).
const MAX_DEPTH: u32 = 64;
/// Longest SASL line accepted from the bus (`OK <32 hex digits>` is 35 bytes).
const MAX_AUTH_LINE: usize = 512;
/// Signals kept while a reply is awaited (the driver waits for one `JobRemoved`).
const MAX_QUEUED_SIGNALS: usize = 256;

/// Failures of the bus itself; systemd's refusals are [`DbusError::Remote`].
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("connecting to the D-Bus socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("bus address {0:?} has no unix:path= entry this client can use")]
    Address(String),
    #[error("D-Bus authentication on {path} refused: {reply:?}")]
    Auth { path: String, reply: String },
    #[error("D-Bus {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("no answer from the bus in time while {what}")]
    Timeout { what: String },
    #[error("malformed D-Bus message: {0}")]
    Protocol(String),
    /// An error reply: its D-Bus error name and message.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

impl DbusError {
    /// The D-Bus error name of a remote error (`org.freedesktop.systemd1.NoSuchUnit`).
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            DbusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

type Result<T, E = DbusError> = std::result::Result<T, E>;

fn proto<T>(msg: impl Into<String>) -> Result<T> {
    Err(DbusError::Protocol(msg.into()))
}

/// A D-Bus value (the subset of the type system systemd's API uses).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    /// Element signature, elements.
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::Str(_) => "s".into(),
            Value::ObjectPath(_) => "o".into(),
            Value::Signature(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                let inner: String = fields.iter().map(Value::signature).collect();
                format!("({inner})")
            }
            Value::Variant(_) => "v".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            Value::Variant(v) => v.as_str(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            Value::U32(v) => Some(u64::from(*v)),
            Value::Variant(v) => v.as_u64(),
            _ => None,
        }
    }
}

fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// Serializes values in little-endian byte order. Offsets are relative to the message start,
/// which both header and body alignment are defined against.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I32(n) => {
                self.pad(4);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::Str(s) | Value::ObjectPath(s) => self.string(s),
            Value::Signature(s) => {
                self.buf.push(s.len() as u8);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Value::Array(elem, items) => {
                self.u32(0);
                let len_at = self.buf.len() - 4;
                self.pad(alignment(elem.as_bytes().first().copied().unwrap_or(b'y')));
                let start = self.buf.len();
                for i in items {
                    self.value(i);
                }
                let len = (self.buf.len() - start) as u32;
                self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            }
            Value::Struct(fields) => {
                self.pad(8);
                for f in fields {
                    self.value(f);
                }
            }
            Value::Variant(inner) => {
                self.value(&Value::Signature(inner.signature()));
                self.value(inner);
            }
        }
    }
}

/// Parses values out of a received message, bounds-checked at every step.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize, big: bool) -> Self {
        Reader { buf, pos, big }
    }

    fn align(&mut self, a: usize) -> Result<()> {
        let next = self.pos.div_ceil(a) * a;
        if next > self.buf.len() {
            return proto("padding runs past the end");
        }
        if self.buf[self.pos..next].iter().any(|b| *b != 0) {
            return proto("non-zero alignment padding");
        }
        self.pos = next;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                DbusError::Protocol(format!("{n} bytes wanted at offset {}", self.pos))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.align(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        if self.big {
            out.reverse();
        }
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.fixed::<4>()?))
    }

    fn text(&mut self, len: usize) -> Result<String> {
        let bytes = self.take(len)?;
        if self.take(1)? != [0] {
            return proto("string not NUL-terminated");
        }
        String::from_utf8(bytes.to_vec()).or_else(|_| proto("string is not UTF-8"))
    }

    /// Reads one value of the single complete type `sig`.
    pub fn value(&mut self, sig: &str, depth: u32) -> Result<Value> {
        if depth > MAX_DEPTH {
            return proto("values nested too deeply");
        }
        let b = sig.as_bytes();
        let Some(&code) = b.first() else {
            return proto("empty signature");
        };
        Ok(match code {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match self.u32()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                n => return proto(format!("boolean {n}")),
            },
            b'i' => Value::I32(i32::from_le_bytes(self.fixed::<4>()?)),
            b'u' | b'h' => Value::U32(self.u32()?),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed::<8>()?)),
            b't' => Value::U64(u64::from_le_bytes(self.fixed::<8>()?)),
            b'n' | b'q' => Value::U32(u32::from(u16::from_le_bytes(self.fixed::<2>()?))),
            b'd' => Value::U64(u64::from_le_bytes(self.fixed::<8>()?)),
            b's' | b'o' => {
                let len = self.u32()? as usize;
                let s = self.text(len)?;
                if code == b'o' {
                    Value::ObjectPath(s)
                } else {
                    Value::Str(s)
                }
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Signature(self.text(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.text(len)?;
                if complete_type_len(&inner)? != inner.len() {
                    return proto(format!("variant signature {inner:?} is not one type"));
                }
                Value::Variant(Box::new(self.value(&inner, depth + 1)?))
            }
            b'a' => {
                let elem = &sig[1..1 + complete_type_len(&sig[1..])?];
                let len = self.u32()? as usize;
                if len > MAX_MESSAGE {
                    return proto(format!("array of {len} bytes"));
                }
                self.align(alignment(elem.as_bytes()[0]))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or_else(|| DbusError::Protocol("array runs past the end".into()))?;
                let mut items = Vec::new();
                while self.pos < end {
                    let at = self.pos;
                    items.push(self.value(elem, depth + 1)?);
                    if self.pos == at {
                        return proto("array element of no bytes");
                    }
                }
                if self.pos != end {
                    return proto("array elements overrun the array length");
                }
                Value::Array(elem.to_string(), items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let inner = &sig[1..complete_type_len(sig)? - 1];
                let mut fields = Vec::new();
                let mut rest = inner;
                while !rest.is_empty() {
                    let n = complete_type_len(rest)?;
                    fields.push(self.value(&rest[..n], depth + 1)?);
                    rest = &rest[n..];
                }
                Value::Struct(fields)
            }
            other => return proto(format!("unsupported type code {:?}", other as char)),
        })
    }
}

/// Length of the first complete type in `sig`.
pub fn complete_type_len(sig: &str) -> Result<usize> {
    fn walk(b: &[u8], depth: u32) -> Result<usize> {
        if depth > MAX_DEPTH {
            return proto("signature nested too deeply");
        }
        match b.first() {
            None => proto("truncated signature"),
            Some(b'a') => Ok(1 + walk(&b[1..], depth + 1)?),
            Some(&open @ (b'(' | b'{')) => {
                let close = if open == b'(' { b')' } else { b'}' };
                let mut i = 1;
                loop {
                    match b.get(i) {
                        None => return proto("unclosed struct in signature"),
                        // An empty struct or dict entry is not a type (and an array of one
                        // would never advance through its bytes).
                        Some(c) if *c == close && i == 1 => {
                            return proto("empty struct in signature")
                        }
                        Some(c) if *c == close => return Ok(i + 1),
                        Some(_) => i += walk(&b[i..], depth + 1)?,
                    }
                }
            }
            Some(b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o')
            | Some(b'g' | b'v' | b'h') => Ok(1),
            Some(c) => proto(format!("bad signature code {:?}", *c as char)),
        }
    }
    walk(sig.as_bytes(), 0)
}

/// Splits a signature into its complete types.
fn split_signature(sig: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = sig;
    while !rest.is_empty() {
        let n = complete_type_len(rest)?;
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(out)
}

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;
/// Header flag: the caller wants no reply.
pub const NO_REPLY_EXPECTED: u8 = 1;

/// A received (or to-be-sent) message with the header fields this client uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub kind: u8,
    /// Header flags ([`NO_REPLY_EXPECTED`]).
    pub flags: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub body: Vec<Value>,
}

impl Message {
    pub fn call(dest: &str, path: &str, iface: &str, member: &str, body: Vec<Value>) -> Self {
        Message {
            kind: METHOD_CALL,
            path: Some(path.into()),
            interface: Some(iface.into()),
            member: Some(member.into()),
            destination: Some(dest.into()),
            body,
            ..Default::default()
        }
    }

    /// The wire bytes (little-endian), every header field that is set.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Writer::default();
        // The body starts 8-aligned, so aligning relative to it equals aligning to the message.
        for v in &self.body {
            body.value(v);
        }
        let sig: String = self.body.iter().map(Value::signature).collect();
        let field = |code: u8, v: Value| {
            Value::Struct(vec![Value::Byte(code), Value::Variant(Box::new(v))])
        };
        let mut fields = Vec::new();
        if let Some(p) = &self.path {
            fields.push(field(1, Value::ObjectPath(p.clone())));
        }
        if let Some(i) = &self.interface {
            fields.push(field(2, Value::Str(i.clone())));
        }
        if let Some(m) = &self.member {
            fields.push(field(3, Value::Str(m.clone())));
        }
        if let Some(e) = &self.error_name {
            fields.push(field(4, Value::Str(e.clone())));
        }
        if let Some(r) = self.reply_serial {
            fields.push(field(5, Value::U32(r)));
        }
        if let Some(d) = &self.destination {
            fields.push(field(6, Value::Str(d.clone())));
        }
        // Set by the bus on what it delivers; a client leaves it out (tests play the bus).
        if let Some(s) = &self.sender {
            fields.push(field(7, Value::Str(s.clone())));
        }
        if !sig.is_empty() {
            fields.push(field(8, Value::Signature(sig)));
        }
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[b'l', self.kind, self.flags, 1]);
        w.u32(body.buf.len() as u32);
        w.u32(self.serial);
        w.value(&Value::Array("(yv)".into(), fields));
        w.pad(8);
        w.buf.extend_from_slice(&body.buf);
        w.buf
    }

    /// Total length of the message whose first 16 bytes are `head`.
    fn total_len(head: &[u8; 16]) -> Result<usize> {
        let big = match head[0] {
            b'l' => false,
            b'B' => true,
            other => return proto(format!("endianness byte {other:#x}")),
        };
        let num = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big {
                u32::from_be_bytes(a) as usize
            } else {
                u32::from_le_bytes(a) as usize
            }
        };
        let body = num(&head[4..8]);
        let fields = num(&head[12..16]);
        let total = (16usize + fields).div_ceil(8) * 8 + body;
        if body > MAX_MESSAGE || fields > MAX_MESSAGE || total > MAX_MESSAGE {
            return proto(format!(
                "message of {total} bytes is larger than {MAX_MESSAGE}"
            ));
        }
        Ok(total)
    }

    /// Parses one complete message.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        if buf.len() < 16 {
            return proto("message shorter than its header");
        }
        let big = buf[0] == b'B';
        let mut r = Reader::new(buf, 0, big);
        r.take(4)?;
        let body_len = r.u32()? as usize;
        let serial = r.u32()?;
        let Value::Array(_, fields) = r.value("a(yv)", 0)? else {
            return proto("header fields are not an array");
        };
        r.align(8)?;
        if buf.len() - r.pos != body_len {
            return proto("body length does not match the header");
        }
        let mut m = Message {
            kind: buf[1],
            flags: buf[2],
            serial,
            ..Default::default()
        };
        let mut sig = String::new();
        for f in fields {
            let Value::Struct(parts) = f else { continue };
            let [Value::Byte(code), Value::Variant(v)] = parts.as_slice() else {
                return proto("malformed header field");
            };
            let s = v.as_str().map(str::to_string);
            match code {
                1 => m.path = s,
                2 => m.interface = s,
                3 => m.member = s,
                4 => m.error_name = s,
                5 => m.reply_serial = v.as_u64().and_then(|n| u32::try_from(n).ok()),
                6 => m.destination = s,
                7 => m.sender = s,
                8 => sig = s.unwrap_or_default(),
                _ => {}
            }
        }
        for t in split_signature(&sig)? {
            m.body.push(r.value(t, 0)?);
        }
        if r.pos != buf.len() {
            return proto("bytes left after the body");
        }
        Ok(m)
    }
}

/// Where a bus lives: the first `unix:path=` of a D-Bus address.
pub fn socket_path(address: &str) -> Result<String> {
    for entry in address.split(';') {
        let Some(params) = entry.strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            if let Some(p) = kv.strip_prefix("path=") {
                return Ok(unescape(p));
            }
        }
    }
    Err(DbusError::Address(address.to_string()))
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One connection to a bus.
pub struct Connection {
    sock: UnixStream,
    path: String,
    serial: u32,
    /// Bytes read from the socket and not yet consumed (`rbuf[rpos..]`): the bus sends several
    /// lines or messages per read, and one read per byte cost milliseconds on slow hosts.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Signals that arrived while a reply was awaited: only broadcasts from
    /// [`Connection::signal_sender`], at most [`MAX_QUEUED_SIGNALS`].
    queued: VecDeque<Message>,
    /// The unique bus name whose broadcast signals are wanted; `None`: none are.
    signal_sender: Option<String>,
}

impl Connection {
    /// Connects to the socket at `path`, authenticates and says Hello. The Hello is not waited
    /// for: the calls that follow are pipelined behind it (the bus answers them after it, and
    /// drops the connection if it failed).
    pub fn open(path: &str, deadline: Instant) -> Result<Self> {
        let sock = UnixStream::connect(path).map_err(|source| DbusError::Connect {
            path: path.to_string(),
            source,
        })?;
        let mut c = Connection {
            sock,
            path: path.to_string(),
            serial: 0,
            rbuf: Vec::new(),
            rpos: 0,
            queued: VecDeque::new(),
            signal_sender: None,
        };
        c.authenticate(deadline)?;
        c.send(Message::call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            vec![],
        ))?;
        Ok(c)
    }

    fn set_deadline(&self, deadline: Instant, what: &str) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DbusError::Timeout {
                what: what.to_string(),
            });
        }
        self.sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|source| DbusError::Io {
                what: "setting the socket timeout",
                source,
            })
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes).map_err(|source| DbusError::Io {
            what: "write",
            source,
        })
    }

    /// Reads what the socket has (at least one byte) into the buffer, or times out at
    /// `deadline`.
    fn fill(&mut self, deadline: Instant, what: &str) -> Result<()> {
        // Consumed bytes go first: the buffer holds at most one unfinished message (or line)
        // and one read, however much a peer streams at us.
        self.rbuf.drain(..self.rpos);
        self.rpos = 0;
        let mut chunk = [0u8; 4096];
        loop {
            self.set_deadline(deadline, what)?;
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    return Err(DbusError::Io {
                        what: "read",
                        source: std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the bus closed the connection",
                        ),
                    })
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(DbusError::Timeout {
                        what: what.to_string(),
                    })
                }
                Err(source) => {
                    return Err(DbusError::Io {
                        what: "read",
                        source,
                    })
                }
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant, what: &str) -> Result<()> {
        while self.rbuf.len() - self.rpos < buf.len() {
            self.fill(deadline, what)?;
        }
        let end = self.rpos + buf.len();
        buf.copy_from_slice(&self.rbuf[self.rpos..end]);
        self.rpos = end;
        Ok(())
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String> {
        loop {
            let pending = &self.rbuf[self.rpos..];
            if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&pending[..at]).into_owned();
                self.rpos += at + 2;
                return Ok(line);
            }
            if pending.len() > MAX_AUTH_LINE {
                return proto("authentication line too long");
            }
            self.fill(deadline, "authenticating")?;
        }
    }

    /// SASL EXTERNAL with an empty identity: the bus takes our credentials from the socket
    /// (SO_PEERCRED), which is right even inside a user namespace where our euid is not the uid
    /// the bus sees. The empty `DATA` answer goes with the `AUTH` in one write (as sd-bus does):
    /// the bus answers `DATA` then `OK`, one round trip. A server that refuses an empty
    /// identity answers `REJECTED` (and `ERROR` to the early `DATA`); then the hex euid is sent.
    fn authenticate(&mut self, deadline: Instant) -> Result<()> {
        self.write_all(b"\0AUTH EXTERNAL\r\nDATA\r\n")?;
        let mut reply = self.read_line(deadline)?;
        if reply.starts_with("DATA") {
            reply = self.read_line(deadline)?;
        } else if reply.starts_with("REJECTED") {
            let answer_to_data = self.read_line(deadline)?;
            if !answer_to_data.starts_with("ERROR") {
                reply = answer_to_data;
            }
        }
        if reply.starts_with("REJECTED") {
            let uid = rustix::process::geteuid().as_raw().to_string();
            let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
            self.write_all(format!("AUTH EXTERNAL {hex}\r\n").as_bytes())?;
            reply = self.read_line(deadline)?;
        }
        if !reply.starts_with("OK ") {
            return Err(DbusError::Auth {
                path: self.path.clone(),
                reply,
            });
        }
        self.write_all(b"BEGIN\r\n")
    }

    /// Reads the next message, whatever it is.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Message> {
        let mut head = [0u8; 16];
        self.read_exact(&mut head, deadline, what)?;
        let total = Message::total_len(&head)?;
        let mut buf = vec![0u8; total];
        buf[..16].copy_from_slice(&head);
        self.read_exact(&mut buf[16..], deadline, what)?;
        Message::decode(&buf)
    }

    /// Sends a method call without waiting: its serial, for [`Connection::wait_reply`]. The
    /// bus delivers one connection's messages in order, so calls can be pipelined.
    pub fn send(&mut self, mut msg: Message) -> Result<u32> {
        self.serial = self.serial.wrapping_add(1).max(1);
        msg.serial = self.serial;
        self.write_all(&msg.encode())?;
        Ok(msg.serial)
    }

    /// Sends a method call whose reply is not wanted (`NO_REPLY_EXPECTED`): the bus and the
    /// service send none, and a failure goes unreported.
    pub fn send_no_reply(&mut self, mut msg: Message) -> Result<()> {
        msg.flags |= NO_REPLY_EXPECTED;
        self.send(msg).map(|_| ())
    }

    /// Waits for the reply to call `serial` (`member` names it in a timeout); signals that
    /// arrive meanwhile are queued for [`Connection::next_signal`], replies to other calls
    /// dropped. An error reply becomes [`DbusError::Remote`].
    pub fn wait_reply(&mut self, serial: u32, member: &str, deadline: Instant) -> Result<Message> {
        let what = format!("waiting for the reply to {member}");
        loop {
            let m = self.read_message(deadline, &what)?;
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m),
                ERROR if m.reply_serial == Some(serial) => {
                    return Err(DbusError::Remote {
                        name: m.error_name.clone().unwrap_or_default(),
                        message: m
                            .body
                            .first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                }
                SIGNAL if self.wanted(&m) => {
                    if self.queued.len() == MAX_QUEUED_SIGNALS {
                        self.queued.pop_front();
                    }
                    self.queued.push_back(m);
                }
                _ => {}
            }
        }
    }

    /// Takes broadcast signals from the bus name `sender` only (the bus stamps a message's
    /// sender, so it cannot be forged; a unicast signal, which any client may send us, has a
    /// destination and is dropped).
    pub fn accept_signals_from(&mut self, sender: &str) {
        self.signal_sender = Some(sender.to_string());
    }

    fn wanted(&self, m: &Message) -> bool {
        m.kind == SIGNAL
            && m.destination.is_none()
            && self.signal_sender.is_some()
            && m.sender == self.signal_sender
    }

    /// Sends a method call and waits for its reply (see [`Connection::wait_reply`]).
    pub fn call(&mut self, msg: Message, deadline: Instant) -> Result<Message> {
        let member = msg.member.clone().unwrap_or_else(|| "a call".into());
        let serial = self.send(msg)?;
        self.wait_reply(serial, &member, deadline)
    }

    /// The next wanted signal ([`Connection::accept_signals_from`]; queued first), or a
    /// timeout at `deadline`.
    pub fn next_signal(&mut self, deadline: Instant, what: &str) -> Result<Message> {
        if let Some(m) = self.queued.pop_front() {
            return Ok(m);
        }
        loop {
            let m = self.read_message(deadline, what)?;
            if self.wanted(&m) {
                return Ok(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_transient_unit_call_round_trips() {
        let props = Value::Array(
            "(sv)".into(),
            vec![
                Value::Struct(vec![
                    Value::Str("PIDs".into()),
                    Value::Variant(Box::new(Value::Array("u".into(), vec![Value::U32(42)]))),
                ]),
                Value::Struct(vec![
                    Value::Str("MemoryMax".into()),
                    Value::Variant(Box::new(Value::U64(1 << 30))),
                ]),
                Value::Struct(vec![
                    Value::Str("Delegate".into()),
                    Value::Variant(Box::new(Value::Bool(true))),
                ]),
            ],
        );
        let aux = Value::Array("(sa(sv))".into(), vec![]);
        let mut m = Message::call(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartTransientUnit",
            vec![
                Value::Str("nanoclaw-x.scope".into()),
                Value::Str("fail".into()),
                props,
                aux,
            ],
        );
        m.serial = 7;
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            Message::total_len(bytes[..16].try_into().unwrap()).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn known_wire_bytes_of_hello() {
        // Hello as dbus-send writes it: fields path, interface, member, destination.
        let mut m = Message::call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            vec![],
        );
        m.serial = 1;
        let b = m.encode();
        assert_eq!(&b[..4], b"l\x01\x00\x01");
        assert_eq!(&b[4..8], &0u32.to_le_bytes()); // no body
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        // path field: code 1, signature "o", then the string aligned to 4.
        assert_eq!(&b[16..20], b"\x01\x01o\x00");
        assert_eq!(&b[20..24], &21u32.to_le_bytes());
        assert_eq!(&b[24..45], b"/org/freedesktop/DBus");
    }

    #[test]
    fn truncated_and_hostile_messages_are_errors_not_panics() {
        let mut m = Message::call("d", "/p", "i.f", "M", vec![Value::Str("hello".into())]);
        m.serial = 3;
        let good = m.encode();
        for cut in 0..good.len() {
            assert!(Message::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte corruption: an error or a message, never a panic.
        for i in 0..good.len() {
            for v in [0u8, 0xff, b'a', b'(', b'v'] {
                let mut b = good.clone();
                b[i] = v;
                let _ = Message::decode(&b);
            }
        }
        // A huge announced length is refused before anything is allocated.
        let mut head = [0u8; 16];
        head[0] = b'l';
        head[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Message::total_len(&head).is_err());
        // Deep nesting in a signature.
        let deep = "a".repeat(200) + "y";
        assert!(complete_type_len(&deep).is_err());
        // An empty struct is no type; an array of it would never advance.
        for sig in ["()", "{}", "a()", "(())"] {
            assert!(complete_type_len(sig).is_err(), "{sig}");
        }
        let mut zeros = vec![0u8; 64];
        zeros[0] = 8;
        assert!(Reader::new(&zeros, 0, false).value("a()", 0).is_err());
    }

    /// A connection over one end of a socket pair; the other end plays the bus.
    fn pair() -> (Connection, UnixStream) {
        let (ours, bus) = UnixStream::pair().unwrap();
        let c = Connection {
            sock: ours,
            path: "pair".into(),
            serial: 0,
            rbuf: Vec::new(),
            rpos: 0,
            queued: VecDeque::new(),
            signal_sender: None,
        };
        (c, bus)
    }

    fn signal(sender: &str, destination: Option<&str>, body: Vec<Value>) -> Vec<u8> {
        let mut m = Message {
            kind: SIGNAL,
            serial: 9,
            path: Some("/org/freedesktop/systemd1".into()),
            interface: Some("org.freedesktop.systemd1.Manager".into()),
            member: Some("JobRemoved".into()),
            sender: Some(sender.into()),
            destination: destination.map(str::to_string),
            body,
            ..Default::default()
        };
        m.serial = 9;
        m.encode()
    }

    #[test]
    fn signals_are_taken_from_systemd_broadcasts_only() {
        let (mut c, mut bus) = pair();
        c.accept_signals_from(":1.1");
        let job = |j: &str| {
            vec![
                Value::U32(1),
                Value::ObjectPath(j.into()),
                Value::Str("u.scope".into()),
                Value::Str("failed".into()),
            ]
        };
        // Spoofed by another client (as a broadcast and sent to us), then systemd's own.
        bus.write_all(&signal(":1.66", None, job("/j/1"))).unwrap();
        bus.write_all(&signal(":1.66", Some(":1.5"), job("/j/1")))
            .unwrap();
        bus.write_all(&signal(":1.1", Some(":1.5"), job("/j/1")))
            .unwrap();
        bus.write_all(&signal(":1.1", None, job("/j/2"))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = c.next_signal(deadline, "test").unwrap();
        assert_eq!(got.sender.as_deref(), Some(":1.1"));
        assert_eq!(got.body[1], Value::ObjectPath("/j/2".into()));
        // Nothing else is waiting: the next read times out.
        let short = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            c.next_signal(short, "test"),
            Err(DbusError::Timeout { .. })
        ));
    }

    #[test]
    fn a_stream_of_large_messages_does_not_grow_the_buffer() {
        let (mut c, mut bus) = pair();
        let writer = std::thread::spawn(move || {
            // 24 signals of 1 MB from a client we take nothing from, then the reply.
            let big = signal(":1.66", None, vec![Value::Str("x".repeat(1 << 20))]);
            for _ in 0..24 {
                bus.write_all(&big).unwrap();
            }
            let mut reply = Message {
                kind: METHOD_RETURN,
                reply_serial: Some(1),
                ..Default::default()
            };
            reply.serial = 10;
            bus.write_all(&reply.encode()).unwrap();
            bus
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        c.wait_reply(1, "test", deadline).unwrap();
        let _bus = writer.join().unwrap();
        // At most one message and one read were ever held (24 MB went through).
        assert!(
            c.rbuf.capacity() < 4 << 20,
            "buffer grew to {} bytes",
            c.rbuf.capacity()
        );
        assert!(c.queued.is_empty());
    }

    #[test]
    fn signal_body_uoss_decodes() {
        let mut m = Message {
            kind: SIGNAL,
            serial: 9,
            path: Some("/org/freedesktop/systemd1".into()),
            interface: Some("org.freedesktop.systemd1.Manager".into()),
            member: Some("JobRemoved".into()),
            body: vec![
                Value::U32(17),
                Value::ObjectPath("/org/freedesktop/systemd1/job/17".into()),
                Value::Str("nanoclaw-x.scope".into()),
                Value::Str("done".into()),
            ],
            ..Default::default()
        };
        m.serial = 9;
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back.body, m.body);
    }

    /// A bus on a unix socket that runs `script` against what the client sends: each step
    /// waits until the received bytes end with `expect`, then sends `answer`. Returns the
    /// socket path and the handle with everything received.
    fn fake_bus(
        script: Vec<(&'static str, &'static str)>,
    ) -> (tempfile::TempDir, String, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus").display().to_string();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            fn read_until(
                s: &mut std::os::unix::net::UnixStream,
                got: &mut Vec<u8>,
                done: &dyn Fn(&[u8]) -> Option<usize>,
            ) -> usize {
                let mut buf = [0u8; 512];
                loop {
                    if let Some(end) = done(got) {
                        return end;
                    }
                    let n = s.read(&mut buf).unwrap();
                    assert!(
                        n > 0,
                        "client closed; got {:?}",
                        String::from_utf8_lossy(got)
                    );
                    got.extend_from_slice(&buf[..n]);
                }
            }
            let mut got = Vec::new();
            let mut seen = 0;
            for (expect, answer) in script {
                let at = seen;
                seen = read_until(&mut s, &mut got, &|g: &[u8]| {
                    g[at..]
                        .windows(expect.len())
                        .position(|w| w == expect.as_bytes())
                        .map(|p| at + p + expect.len())
                });
                s.write_all(answer.as_bytes()).unwrap();
            }
            // The head of the Hello that follows BEGIN.
            read_until(&mut s, &mut got, &|g: &[u8]| {
                (g.len() >= seen + 16).then_some(0)
            });
            got
        });
        (dir, path, server)
    }

    #[test]
    fn auth_is_one_round_trip_with_both_answers_in_one_read() {
        let (_dir, path, server) = fake_bus(vec![
            (
                "\0AUTH EXTERNAL\r\nDATA\r\n",
                "DATA\r\nOK 0123456789abcdef\r\n",
            ),
            ("BEGIN\r\n", ""),
        ]);
        Connection::open(&path, Instant::now() + Duration::from_secs(10)).unwrap();
        let got = server.join().unwrap();
        assert!(got.starts_with(b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\nl\x01"));
    }

    #[test]
    fn a_bus_refusing_an_empty_identity_gets_the_hex_euid() {
        let uid = rustix::process::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let auth: &'static str = Box::leak(format!("AUTH EXTERNAL {hex}\r\n").into_boxed_str());
        let (_dir, path, server) = fake_bus(vec![
            ("DATA\r\n", "REJECTED EXTERNAL\r\nERROR\r\n"),
            (auth, "OK 0123456789abcdef\r\n"),
            ("BEGIN\r\n", ""),
        ]);
        Connection::open(&path, Instant::now() + Duration::from_secs(10)).unwrap();
        server.join().unwrap();
        // A bus that refuses both: the error names the socket and the bus's answer.
        let (_dir, path, _server) = fake_bus(vec![
            ("DATA\r\n", "REJECTED EXTERNAL\r\nERROR\r\n"),
            (auth, "REJECTED EXTERNAL\r\n"),
        ]);
        let e = Connection::open(&path, Instant::now() + Duration::from_secs(10))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&path) && e.contains("REJECTED"), "{e}");
    }

    #[test]
    fn bus_addresses() {
        assert_eq!(
            socket_path("unix:path=/run/dbus/system_bus_socket").unwrap(),
            "/run/dbus/system_bus_socket"
        );
        assert_eq!(
            socket_path("unix:abstract=x;unix:path=/run/user/1000/bus,guid=ab").unwrap(),
            "/run/user/1000/bus"
        );
        assert_eq!(socket_path("unix:path=/tmp/a%20b").unwrap(), "/tmp/a b");
        assert!(socket_path("tcp:host=localhost,port=1").is_err());
    }
}
