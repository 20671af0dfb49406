//! IronClaw's own calls for WebAssembly modules (`wasm32-wasip1`).
//!
//! The functions are imports from the `"ironclaw"` module, implemented by the
//! IronClaw guest shim (`crates/ironclaw-shim/src/ironclaw_calls.rs`):
//!
//! - [`attest`]: evidence for this enclave binding up to 64 bytes of caller data;
//! - [`get_secret`]: a secret from the key broker, released only if this
//!   enclave's attested launch measurement matches the broker's policy (the shim
//!   runs the KBS protocol; the host only relays bytes);
//! - [`seal`] / [`unseal`]: data bound to this enclave's launch measurement;
//! - [`connect`]: in a service (`ironclaw serve`), a TCP connection to one of the
//!   launch's measured `--egress` destinations.
//!
//! Outside an IronClaw enclave (other targets) every call returns
//! [`Error::Unavailable`].

/// Why a call failed (the shim's negative return codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A pointer/length was outside the module's memory (-1).
    Fault,
    /// The result did not fit (-2); handled internally by growing the buffer.
    TooSmall,
    /// The host offers no such service: no platform key, no broker (-3).
    Unavailable,
    /// The broker refused to release the secret (-4); the reason is on stderr.
    Refused,
    /// The host or broker answered something invalid (-5).
    Protocol,
    /// The blob does not unseal here: another module or host, or modified (-6).
    Authentication,
    /// Invalid argument (-7): path syntax, blob format, data too long.
    Invalid,
    /// A code this crate does not know.
    Unknown(i32),
}

impl Error {
    fn from_code(code: i32) -> Self {
        match code {
            -1 => Error::Fault,
            -2 => Error::TooSmall,
            -3 => Error::Unavailable,
            -4 => Error::Refused,
            -5 => Error::Protocol,
            -6 => Error::Authentication,
            -7 => Error::Invalid,
            other => Error::Unknown(other),
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Error::Fault => "bad pointer",
            Error::TooSmall => "output buffer too small",
            Error::Unavailable => "not available on this host",
            Error::Refused => "refused by the key broker",
            Error::Protocol => "invalid answer from the host or broker",
            Error::Authentication => "sealed blob does not unseal in this enclave",
            Error::Invalid => "invalid argument",
            Error::Unknown(c) => return write!(f, "unknown error code {c}"),
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "ironclaw")]
    extern "C" {
        pub(crate) fn attest(data: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
        pub(crate) fn get_secret(path: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
        pub(crate) fn seal(data: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
        pub(crate) fn unseal(blob: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
        pub(crate) fn connect(dest: *const u8, len: i32) -> i32;
    }
}

type RawCall = unsafe extern "C" fn(*const u8, i32, *mut u8, i32) -> i32;

const MAX_OUT: usize = 1 << 20;

#[allow(unused_variables)]
fn invoke(f: Option<RawCall>, input: &[u8]) -> Result<Vec<u8>, Error> {
    let Some(f) = f else {
        return Err(Error::Unavailable);
    };
    let len = i32::try_from(input.len()).map_err(|_| Error::Invalid)?;
    let mut cap = 4096usize;
    loop {
        let mut out = vec![0u8; cap];
        // SAFETY: `input` and `out` are live slices of this module's memory with the
        // lengths passed; the shim only reads/writes inside those ranges (and checks them
        // against the module's memory bounds itself).
        let r = unsafe { f(input.as_ptr(), len, out.as_mut_ptr(), cap as i32) };
        if r >= 0 {
            out.truncate(r as usize);
            return Ok(out);
        }
        match Error::from_code(r) {
            Error::TooSmall if cap < MAX_OUT => cap *= 4,
            e => return Err(e),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn raw(which: u8) -> Option<RawCall> {
    Some(match which {
        0 => sys::attest,
        1 => sys::get_secret,
        2 => sys::seal,
        _ => sys::unseal,
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn raw(_which: u8) -> Option<RawCall> {
    None
}

/// Attestation evidence (IronClaw `kvm`: a COSE_Sign1 from the host's platform
/// key) binding `report_data` (at most 64 bytes, zero-padded).
pub fn attest(report_data: &[u8]) -> Result<Vec<u8>, Error> {
    invoke(raw(0), report_data)
}

/// The secret at `path` (`repository/type/tag`) from the key broker given to
/// `ironclaw run --broker`.
pub fn get_secret(path: &str) -> Result<Vec<u8>, Error> {
    invoke(raw(1), path.as_bytes())
}

/// Seals `data` to this enclave's launch measurement (and this host's sealing root).
pub fn seal(data: &[u8]) -> Result<Vec<u8>, Error> {
    invoke(raw(2), data)
}

/// Unseals a blob from [`seal`]; fails with [`Error::Authentication`] in any other enclave.
pub fn unseal(blob: &[u8]) -> Result<Vec<u8>, Error> {
    invoke(raw(3), blob)
}

/// Opens a TCP connection to `dest` (`HOST:PORT`, exactly as given to `ironclaw serve
/// --egress`): a blocking [`std::net::TcpStream`]. [`Error::Refused`] for a destination
/// that is not in the launch's (measured) egress list; [`Error::Unavailable`] outside a
/// service or at the connection limit. Name resolution happens on the host; connection
/// failures show up as I/O errors on the first read or write.
pub fn connect(dest: &str) -> Result<std::net::TcpStream, Error> {
    let len = i32::try_from(dest.len()).map_err(|_| Error::Invalid)?;
    let fd = connect_raw(dest.as_ptr(), len);
    if fd < 0 {
        return Err(Error::from_code(fd));
    }
    from_fd(fd)
}

#[cfg(target_arch = "wasm32")]
fn connect_raw(dest: *const u8, len: i32) -> i32 {
    // SAFETY: `dest` points at `len` bytes of this module's memory; the shim reads only
    // that range (and checks it against the memory bounds itself).
    unsafe { sys::connect(dest, len) }
}

#[cfg(not(target_arch = "wasm32"))]
fn connect_raw(_dest: *const u8, _len: i32) -> i32 {
    -3
}

#[cfg(target_os = "wasi")]
fn from_fd(fd: i32) -> Result<std::net::TcpStream, Error> {
    use std::os::fd::FromRawFd;
    // SAFETY: the shim just created fd `fd` for this connection and nothing else owns it;
    // the stream takes ownership and closes it on drop.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

#[cfg(not(target_os = "wasi"))]
fn from_fd(_fd: i32) -> Result<std::net::TcpStream, Error> {
    Err(Error::Unavailable)
}
