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
//!   launch's measured `--egress` destinations;
//! - [`aead_seal`] / [`aead_open`]: ChaCha20-Poly1305 or AES-GCM over a buffer in place,
//!   computed natively by the shim (a TLS record costs a few ns per byte instead of the
//!   interpreter's 30–200); the key stays in enclave memory and no hypercall is made.
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
    /// Authentication failed (-6): a sealed blob from another module or host, or
    /// modified; for [`aead_open`], a tag that does not match.
    Authentication,
    /// Invalid argument (-7): path syntax, blob format, data too long; for the AEAD
    /// calls, a key of the wrong length or a buffer shorter than the tag.
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
            Error::Authentication => {
                "authentication failed: a sealed blob that does not unseal in this enclave, or a modified record"
            }
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
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn aead_seal(
            alg: i32,
            key: *const u8,
            key_len: i32,
            nonce: *const u8,
            nonce_len: i32,
            aad: *const u8,
            aad_len: i32,
            buf: *mut u8,
            len: i32,
            cap: i32,
        ) -> i32;
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn aead_open(
            alg: i32,
            key: *const u8,
            key_len: i32,
            nonce: *const u8,
            nonce_len: i32,
            aad: *const u8,
            aad_len: i32,
            buf: *mut u8,
            len: i32,
        ) -> i32;
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

/// The AEAD algorithms of [`aead_seal`] / [`aead_open`] (the value is the shim's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// ChaCha20-Poly1305 (RFC 8439), 32-byte key.
    ChaCha20Poly1305 = 1,
    /// AES-128-GCM, 16-byte key.
    Aes128Gcm = 2,
    /// AES-256-GCM, 32-byte key.
    Aes256Gcm = 3,
}

/// Tag length of every [`Aead`].
pub const AEAD_TAG_LEN: usize = 16;
/// Nonce length of every [`Aead`].
pub const AEAD_NONCE_LEN: usize = 12;

/// Encrypts in place: `buf` is the plaintext followed by [`AEAD_TAG_LEN`] bytes of room;
/// afterwards it holds the ciphertext followed by the tag. `key` must have the length of
/// `alg`'s key ([`Error::Invalid`] otherwise); `aad` is at most 1024 bytes.
pub fn aead_seal(
    alg: Aead,
    key: &[u8],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<(), Error> {
    let msg_len = buf.len().checked_sub(AEAD_TAG_LEN).ok_or(Error::Invalid)?;
    let [kl, al, len, cap] = lengths([key.len(), aad.len(), msg_len, buf.len()])?;
    let r = seal_raw(alg as i32, key, kl, nonce, aad, al, buf, len, cap);
    if r < 0 {
        return Err(Error::from_code(r));
    }
    Ok(())
}

/// Verifies and decrypts in place: `buf` is the ciphertext followed by the tag. Returns
/// the plaintext length `n` (`buf.len() - AEAD_TAG_LEN`), the plaintext being `buf[..n]`.
/// On [`Error::Authentication`] `buf` is unchanged: nothing is decrypted before the tag
/// is verified.
pub fn aead_open(
    alg: Aead,
    key: &[u8],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<usize, Error> {
    let [kl, al, len] = lengths([key.len(), aad.len(), buf.len()])?;
    let r = open_raw(alg as i32, key, kl, nonce, aad, al, buf, len);
    if r < 0 {
        return Err(Error::from_code(r));
    }
    Ok(r as usize)
}

fn lengths<const N: usize>(lens: [usize; N]) -> Result<[i32; N], Error> {
    let mut out = [0i32; N];
    for (o, l) in out.iter_mut().zip(lens) {
        *o = i32::try_from(l).map_err(|_| Error::Invalid)?;
    }
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
#[allow(clippy::too_many_arguments)]
fn seal_raw(
    alg: i32,
    key: &[u8],
    key_len: i32,
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    aad_len: i32,
    buf: &mut [u8],
    len: i32,
    cap: i32,
) -> i32 {
    // SAFETY: every pointer is a live slice of this module's memory with the length passed
    // (`cap` is `buf.len()`, `len` <= `cap`); the shim reads the inputs and writes only
    // inside `buf`, after checking each range against the memory bounds itself.
    unsafe {
        sys::aead_seal(
            alg,
            key.as_ptr(),
            key_len,
            nonce.as_ptr(),
            AEAD_NONCE_LEN as i32,
            aad.as_ptr(),
            aad_len,
            buf.as_mut_ptr(),
            len,
            cap,
        )
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(clippy::too_many_arguments)]
fn open_raw(
    alg: i32,
    key: &[u8],
    key_len: i32,
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    aad_len: i32,
    buf: &mut [u8],
    len: i32,
) -> i32 {
    // SAFETY: as in `seal_raw`; `len` is `buf.len()`, the only range written.
    unsafe {
        sys::aead_open(
            alg,
            key.as_ptr(),
            key_len,
            nonce.as_ptr(),
            AEAD_NONCE_LEN as i32,
            aad.as_ptr(),
            aad_len,
            buf.as_mut_ptr(),
            len,
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn seal_raw(
    _alg: i32,
    _key: &[u8],
    _key_len: i32,
    _nonce: &[u8; AEAD_NONCE_LEN],
    _aad: &[u8],
    _aad_len: i32,
    _buf: &mut [u8],
    _len: i32,
    _cap: i32,
) -> i32 {
    -3
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn open_raw(
    _alg: i32,
    _key: &[u8],
    _key_len: i32,
    _nonce: &[u8; AEAD_NONCE_LEN],
    _aad: &[u8],
    _aad_len: i32,
    _buf: &mut [u8],
    _len: i32,
) -> i32 {
    -3
}
