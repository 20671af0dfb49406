//! In-place AEAD over the module's linear memory: the `aead_seal` / `aead_open` IronClaw
//! calls.
//!
//! A module doing TLS would otherwise run the record cipher in the interpreter, at 30–200 ns
//! per byte (ChaCha20-Poly1305 to AES-GCM); here it runs as native code inside the enclave
//! (a few ns per byte). The key is
//! module memory, i.e. enclave memory, and goes nowhere else: this is computation, with no
//! hypercall and nothing for the host to see.
//!
//! Every argument comes from the untrusted module: each region (offset and length, as the
//! module's `i32`s read as `u32`) is checked against the memory's length without overflow,
//! and every check is done before a byte is written. The key, nonce and associated data are
//! copied out first, so regions may overlap; the record itself is worked on in place.
//!
//! | call | regions | on success |
//! |---|---|---|
//! | seal | key, nonce, aad, `buf` holding `len` plaintext bytes with room for `cap` | `buf[..len + 16]` = ciphertext ‖ tag; returns `len + 16` |
//! | open | key, nonce, aad, `buf` holding `len` bytes of ciphertext ‖ tag | `buf[..len - 16]` = plaintext; returns `len - 16` |
//!
//! When open fails authentication the buffer is left exactly as it was: both ciphers
//! verify the tag before decrypting a byte, so no unauthenticated plaintext is ever written.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use zeroize::Zeroizing;

/// Authentication tag length of every algorithm here.
pub const TAG_LEN: usize = 16;
/// Nonce length of every algorithm here (RFC 8439, and GCM's 96-bit IV).
pub const NONCE_LEN: usize = 12;
/// Longest associated data accepted (TLS uses 5 or 13 bytes); copied to the stack.
pub const MAX_AAD: usize = 1024;
/// Longest record: the result length must fit the module's `i32` return value.
pub const MAX_LEN: usize = i32::MAX as usize - TAG_LEN;

/// The algorithms, by the id the module passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ChaCha20-Poly1305 (RFC 8439), 32-byte key: id 1.
    ChaCha20Poly1305,
    /// AES-128-GCM (NIST SP 800-38D), 16-byte key: id 2.
    Aes128Gcm,
    /// AES-256-GCM, 32-byte key: id 3.
    Aes256Gcm,
}

impl Algorithm {
    /// The algorithm with module-facing id `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        match id {
            1 => Some(Self::ChaCha20Poly1305),
            2 => Some(Self::Aes128Gcm),
            3 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::ChaCha20Poly1305 | Self::Aes256Gcm => 32,
        }
    }
}

/// A region of the module's memory as the module gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Offset in the module's memory.
    pub ptr: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Region {
    /// A region from the module's `i32` pointer and length (both read as unsigned).
    pub fn from_i32(ptr: i32, len: i32) -> Self {
        Self {
            ptr: ptr as u32,
            len: len as u32,
        }
    }
}

/// The arguments of one call, as passed by the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    /// Algorithm id (see [`Algorithm`]).
    pub alg: u32,
    /// The key.
    pub key: Region,
    /// The nonce.
    pub nonce: Region,
    /// The associated data.
    pub aad: Region,
    /// The record: plaintext (seal) or ciphertext ‖ tag (open).
    pub buf: Region,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// A region is not inside the module's memory.
    #[error("aead: `{field}` {ptr:#x}+{len} is outside the module's {mem_len}-byte memory")]
    OutOfBounds {
        /// Which argument.
        field: &'static str,
        /// Its offset.
        ptr: u32,
        /// Its length.
        len: u32,
        /// The memory's length.
        mem_len: usize,
    },
    /// No algorithm has this id.
    #[error("aead: unknown algorithm id {0}")]
    UnknownAlgorithm(u32),
    /// The key has the wrong length for the algorithm.
    #[error("aead: {alg:?} takes a {expected}-byte key, got {len}")]
    KeyLength {
        /// The algorithm.
        alg: Algorithm,
        /// Its key length.
        expected: usize,
        /// The given length.
        len: u32,
    },
    /// The nonce is not [`NONCE_LEN`] bytes.
    #[error("aead: the nonce must be {NONCE_LEN} bytes, got {0}")]
    NonceLength(u32),
    /// The associated data is over [`MAX_AAD`].
    #[error("aead: associated data of {0} bytes is over the {MAX_AAD}-byte limit")]
    AadTooLong(u32),
    /// The record is over [`MAX_LEN`].
    #[error("aead: a record of {0} bytes is over the {MAX_LEN}-byte limit")]
    TooLong(u32),
    /// Seal: `cap` has no room for the tag after the plaintext.
    #[error("aead: seal needs {needed} bytes of buffer, the capacity is {cap}")]
    TooSmall {
        /// Plaintext length + tag.
        needed: u64,
        /// The given capacity.
        cap: u32,
    },
    /// Open: the input is shorter than a tag.
    #[error("aead: a sealed record of {0} bytes is shorter than the {TAG_LEN}-byte tag")]
    TooShort(u32),
    /// Open: the tag does not match (wrong key, nonce, aad, or modified record).
    #[error("aead: authentication failed")]
    Authentication,
}

fn bounds(
    mem_len: usize,
    field: &'static str,
    r: Region,
) -> Result<core::ops::Range<usize>, AeadError> {
    let start = r.ptr as usize;
    start
        .checked_add(r.len as usize)
        .filter(|&end| end <= mem_len)
        .map(|end| start..end)
        .ok_or(AeadError::OutOfBounds {
            field,
            ptr: r.ptr,
            len: r.len,
            mem_len,
        })
}

/// Key, nonce and aad, checked and copied out of the module's memory.
struct Params {
    alg: Algorithm,
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; NONCE_LEN],
    aad: [u8; MAX_AAD],
    aad_len: usize,
}

impl Params {
    /// Checks `a` against a memory of `mem.len()` bytes (all of it, `buf` as `buf_span`)
    /// and copies the small inputs out.
    fn read(mem: &[u8], a: &Args, buf_span: Region) -> Result<Self, AeadError> {
        let alg = Algorithm::from_id(a.alg).ok_or(AeadError::UnknownAlgorithm(a.alg))?;
        let key = bounds(mem.len(), "key", a.key)?;
        let nonce = bounds(mem.len(), "nonce", a.nonce)?;
        let aad = bounds(mem.len(), "aad", a.aad)?;
        bounds(mem.len(), "buf", buf_span)?;
        if key.len() != alg.key_len() {
            return Err(AeadError::KeyLength {
                alg,
                expected: alg.key_len(),
                len: a.key.len,
            });
        }
        if nonce.len() != NONCE_LEN {
            return Err(AeadError::NonceLength(a.nonce.len));
        }
        if aad.len() > MAX_AAD {
            return Err(AeadError::AadTooLong(a.aad.len));
        }
        if a.buf.len as usize > MAX_LEN {
            return Err(AeadError::TooLong(a.buf.len));
        }
        let mut p = Params {
            alg,
            key: Zeroizing::new([0; 32]),
            nonce: [0; NONCE_LEN],
            aad: [0; MAX_AAD],
            aad_len: aad.len(),
        };
        p.key[..key.len()].copy_from_slice(&mem[key]);
        p.nonce.copy_from_slice(&mem[nonce]);
        p.aad[..p.aad_len].copy_from_slice(&mem[aad]);
        Ok(p)
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.alg.key_len()]
    }

    fn aad(&self) -> &[u8] {
        &self.aad[..self.aad_len]
    }
}

/// Encrypts `mem[buf]` in place and writes the tag after it; `cap` is the room at `buf.ptr`.
/// Returns the sealed length, `buf.len + TAG_LEN`.
pub fn seal_in_place(mem: &mut [u8], a: &Args, cap: u32) -> Result<usize, AeadError> {
    let span = Region {
        ptr: a.buf.ptr,
        len: cap,
    };
    let p = Params::read(mem, a, span)?;
    let len = a.buf.len as usize;
    let needed = u64::from(a.buf.len) + TAG_LEN as u64;
    if needed > u64::from(cap) {
        return Err(AeadError::TooSmall { needed, cap });
    }
    let start = a.buf.ptr as usize;
    // In bounds: `span` (start..start + cap) was checked and len + TAG_LEN <= cap.
    let (msg, rest) = mem[start..start + len + TAG_LEN].split_at_mut(len);
    let tag = match p.alg {
        Algorithm::ChaCha20Poly1305 => seal_with::<ChaCha20Poly1305>(&p, msg)?,
        Algorithm::Aes128Gcm => seal_with::<aes_gcm::Aes128Gcm>(&p, msg)?,
        Algorithm::Aes256Gcm => seal_with::<aes_gcm::Aes256Gcm>(&p, msg)?,
    };
    rest.copy_from_slice(&tag);
    Ok(len + TAG_LEN)
}

/// Verifies and decrypts `mem[buf]` (ciphertext ‖ tag) in place. Returns the plaintext
/// length, `buf.len - TAG_LEN`; on [`AeadError::Authentication`] nothing was written.
pub fn open_in_place(mem: &mut [u8], a: &Args) -> Result<usize, AeadError> {
    let p = Params::read(mem, a, a.buf)?;
    let len = (a.buf.len as usize)
        .checked_sub(TAG_LEN)
        .ok_or(AeadError::TooShort(a.buf.len))?;
    let start = a.buf.ptr as usize;
    // In bounds: `a.buf` was checked by `Params::read`.
    let (msg, tag) = mem[start..start + len + TAG_LEN].split_at_mut(len);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    match p.alg {
        Algorithm::ChaCha20Poly1305 => open_with::<ChaCha20Poly1305>(&p, msg, &t)?,
        Algorithm::Aes128Gcm => open_with::<aes_gcm::Aes128Gcm>(&p, msg, &t)?,
        Algorithm::Aes256Gcm => open_with::<aes_gcm::Aes256Gcm>(&p, msg, &t)?,
    }
    Ok(len)
}

fn seal_with<C>(p: &Params, msg: &mut [u8]) -> Result<[u8; TAG_LEN], AeadError>
where
    C: KeyInit + AeadInOut,
{
    // Key length was checked against the algorithm, so this cannot fail; a failure is
    // still an error, never a panic.
    let c = C::new_from_slice(p.key()).map_err(|_| AeadError::KeyLength {
        alg: p.alg,
        expected: p.alg.key_len(),
        len: p.key().len() as u32,
    })?;
    let nonce = chacha20poly1305::aead::Nonce::<C>::try_from(&p.nonce[..])
        .map_err(|_| AeadError::NonceLength(NONCE_LEN as u32))?;
    let tag = c
        .encrypt_inout_detached(&nonce, p.aad(), msg.into())
        .map_err(|_| AeadError::TooLong(msg.len() as u32))?;
    tag.as_slice()
        .try_into()
        .map_err(|_| AeadError::TooLong(msg.len() as u32))
}

fn open_with<C>(p: &Params, msg: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), AeadError>
where
    C: KeyInit + AeadInOut,
{
    let c = C::new_from_slice(p.key()).map_err(|_| AeadError::KeyLength {
        alg: p.alg,
        expected: p.alg.key_len(),
        len: p.key().len() as u32,
    })?;
    let nonce = chacha20poly1305::aead::Nonce::<C>::try_from(&p.nonce[..])
        .map_err(|_| AeadError::NonceLength(NONCE_LEN as u32))?;
    let tag = chacha20poly1305::aead::Tag::<C>::try_from(&tag[..])
        .map_err(|_| AeadError::Authentication)?;
    c.decrypt_inout_detached(&nonce, p.aad(), msg.into(), &tag)
        .map_err(|_| AeadError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn args(
        alg: u32,
        key: (u32, u32),
        nonce: (u32, u32),
        aad: (u32, u32),
        buf: (u32, u32),
    ) -> Args {
        let r = |(ptr, len)| Region { ptr, len };
        Args {
            alg,
            key: r(key),
            nonce: r(nonce),
            aad: r(aad),
            buf: r(buf),
        }
    }

    /// RFC 8439 §2.8.2: key 80..9f, nonce 07000000 40414243 44454647, aad 50515253c0c1c2c3c4c5c6c7.
    #[test]
    fn chacha20_poly1305_rfc8439_vector_in_place() {
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut mem = vec![0u8; 512];
        let key: Vec<u8> = (0x80..=0x9f).collect();
        mem[..32].copy_from_slice(&key);
        mem[32..44].copy_from_slice(&hex::decode("070000004041424344454647").unwrap());
        mem[44..56].copy_from_slice(&hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap());
        mem[64..64 + pt.len()].copy_from_slice(pt);
        let a = args(1, (0, 32), (32, 12), (44, 12), (64, pt.len() as u32));
        let n = seal_in_place(&mut mem, &a, 200).unwrap();
        assert_eq!(n, pt.len() + 16);
        assert_eq!(
            hex::encode(&mem[64..64 + n - 16][..16]),
            "d31a8d34648e60db7b86afbc53ef7ec2"
        );
        assert_eq!(
            hex::encode(&mem[64 + n - 16..64 + n]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        let o = args(1, (0, 32), (32, 12), (44, 12), (64, n as u32));
        assert_eq!(open_in_place(&mut mem, &o).unwrap(), pt.len());
        assert_eq!(&mem[64..64 + pt.len()], pt);
    }

    #[test]
    fn every_region_is_checked_before_anything_is_written() {
        let mut mem = vec![0x55u8; 128];
        let before = mem.clone();
        for (a, cap) in [
            (args(1, (120, 32), (0, 12), (0, 0), (64, 16)), 64),
            (args(1, (0, 32), (u32::MAX, 12), (0, 0), (64, 16)), 64),
            (args(1, (0, 32), (32, 12), (u32::MAX - 1, 4), (64, 16)), 64),
            (args(1, (0, 32), (32, 12), (0, 0), (64, 16)), 65),
        ] {
            let e = seal_in_place(&mut mem, &a, cap).unwrap_err();
            assert!(matches!(e, AeadError::OutOfBounds { .. }), "{e}");
            assert_eq!(mem, before);
        }
        let e =
            open_in_place(&mut mem, &args(1, (0, 32), (32, 12), (0, 0), (100, 29))).unwrap_err();
        assert_eq!(
            e,
            AeadError::OutOfBounds {
                field: "buf",
                ptr: 100,
                len: 29,
                mem_len: 128
            }
        );
    }

    #[test]
    fn bad_algorithm_key_nonce_and_sizes_are_refused() {
        let mut mem = vec![0u8; 256];
        let ok = args(3, (0, 32), (32, 12), (44, 4), (64, 32));
        assert_eq!(
            seal_in_place(&mut mem, &Args { alg: 9, ..ok }, 64),
            Err(AeadError::UnknownAlgorithm(9))
        );
        assert!(matches!(
            seal_in_place(&mut mem, &Args { alg: 2, ..ok }, 64),
            Err(AeadError::KeyLength {
                expected: 16,
                len: 32,
                ..
            })
        ));
        let short_nonce = Args {
            nonce: Region { ptr: 32, len: 8 },
            ..ok
        };
        assert_eq!(
            seal_in_place(&mut mem, &short_nonce, 64),
            Err(AeadError::NonceLength(8))
        );
        assert_eq!(
            seal_in_place(&mut mem, &ok, 47),
            Err(AeadError::TooSmall {
                needed: 48,
                cap: 47
            })
        );
        let tiny = Args {
            buf: Region { ptr: 64, len: 15 },
            ..ok
        };
        assert_eq!(open_in_place(&mut mem, &tiny), Err(AeadError::TooShort(15)));
    }

    #[test]
    fn a_tampered_record_is_refused_and_left_as_it_was() {
        for alg in 1..=3u32 {
            let mut mem = vec![0u8; 256];
            mem[..32].copy_from_slice(&[0x42; 32]);
            mem[64..96].copy_from_slice(&[0x17; 32]);
            let key_len = Algorithm::from_id(alg).unwrap().key_len() as u32;
            let a = args(alg, (0, key_len), (32, 12), (44, 13), (64, 32));
            let n = seal_in_place(&mut mem, &a, 64).unwrap() as u32;
            mem[64 + 40] ^= 1;
            let sealed = mem.clone();
            let o = Args {
                buf: Region { ptr: 64, len: n },
                ..a
            };
            assert_eq!(open_in_place(&mut mem, &o), Err(AeadError::Authentication));
            assert_eq!(
                mem, sealed,
                "alg {alg}: the buffer changed after a failed open"
            );
            mem[64 + 40] ^= 1;
            assert_eq!(open_in_place(&mut mem, &o), Ok(32));
            assert_eq!(&mem[64..96], &[0x17; 32]);
        }
    }
}
