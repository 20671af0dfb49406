//! Sealed blobs: data bound to the launch measurement.
//!
//! The shape mirrors SEV-SNP's `MSG_KEY_REQ`: the enclave asks the platform for a
//! key derived from a root it never sees, mixed with fields the platform selects
//! from *its own* view of the enclave (here: the launch measurement the host
//! computed, never a value the guest claims), and does the AEAD itself. An
//! enclave with another measurement gets another key, so it cannot unseal.
//!
//! Blob layout, version 1 (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 6 | magic `ICSEAL` |
//! | 6 | 1 | format version (1) |
//! | 7 | 1 | AEAD algorithm (1 = AES-256-GCM) |
//! | 8 | 4 | key version (selects the sealing-root generation) |
//! | 12 | 8 | guest field select (bit 0: launch measurement; must be set) |
//! | 20 | 12 | AEAD nonce |
//! | 32 | n+16 | ciphertext and tag |
//!
//! The whole 32-byte header is the AEAD's associated data, so no header field can
//! be changed without unseal failing.

use alloc::{format, string::String, vec::Vec};

use aes_gcm::{aead::AeadInOut, Aes256Gcm, KeyInit};

/// Blob magic.
pub const MAGIC: &[u8; 6] = b"ICSEAL";
/// Current blob format version.
pub const FORMAT_VERSION: u8 = 1;
/// AEAD id for AES-256-GCM.
pub const AEAD_AES256GCM: u8 = 1;
/// Header length (associated data).
pub const HEADER_LEN: usize = 32;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// Field-select bit: mix the launch measurement into the key.
pub const FIELD_MEASUREMENT: u64 = 1;

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than header + tag.
    #[error("sealed blob: {len} bytes, shorter than the {min}-byte minimum")]
    TooShort {
        /// Blob length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// A header field has an unsupported value.
    #[error("sealed blob: field `{field}` at byte offset {offset}: {reason}")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// Byte offset.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Authentication failed: sealed by another measurement, another platform, or tampered.
    #[error("sealed blob: authentication failed (sealed for another measurement or platform, or modified)")]
    Authentication,
    /// Plaintext too large for AES-GCM.
    #[error("cannot seal {len} bytes")]
    TooLarge {
        /// Plaintext length.
        len: usize,
    },
}

/// The key request a blob needs: what the enclave asks the platform for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// Sealing-root generation.
    pub key_version: u32,
    /// Which launch fields to mix into the key.
    pub field_select: u64,
}

impl KeyRequest {
    /// The default request: current key version, bound to the measurement.
    pub const MEASUREMENT_BOUND: KeyRequest = KeyRequest {
        key_version: 1,
        field_select: FIELD_MEASUREMENT,
    };
}

fn header(req: KeyRequest, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..6].copy_from_slice(MAGIC);
    h[6] = FORMAT_VERSION;
    h[7] = AEAD_AES256GCM;
    h[8..12].copy_from_slice(&req.key_version.to_le_bytes());
    h[12..20].copy_from_slice(&req.field_select.to_le_bytes());
    h[20..32].copy_from_slice(nonce);
    h
}

/// Parses the header of `blob` and returns the key request it needs.
pub fn key_request(blob: &[u8]) -> Result<KeyRequest, SealError> {
    let min = HEADER_LEN + TAG_LEN;
    let h: &[u8; HEADER_LEN] = blob
        .get(..HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .filter(|_| blob.len() >= min)
        .ok_or(SealError::TooShort {
            len: blob.len(),
            min,
        })?;
    if &h[0..6] != MAGIC {
        return Err(SealError::BadHeader {
            field: "magic",
            offset: 0,
            reason: "not an IronClaw sealed blob".into(),
        });
    }
    if h[6] != FORMAT_VERSION {
        return Err(SealError::BadHeader {
            field: "version",
            offset: 6,
            reason: format!("version {} (supported: {FORMAT_VERSION})", h[6]),
        });
    }
    if h[7] != AEAD_AES256GCM {
        return Err(SealError::BadHeader {
            field: "aead",
            offset: 7,
            reason: format!("algorithm {} (supported: 1)", h[7]),
        });
    }
    let mut kv = [0u8; 4];
    kv.copy_from_slice(&h[8..12]);
    let mut fs = [0u8; 8];
    fs.copy_from_slice(&h[12..20]);
    let req = KeyRequest {
        key_version: u32::from_le_bytes(kv),
        field_select: u64::from_le_bytes(fs),
    };
    if req.field_select & FIELD_MEASUREMENT == 0 || req.field_select & !FIELD_MEASUREMENT != 0 {
        return Err(SealError::BadHeader {
            field: "field_select",
            offset: 12,
            reason: format!(
                "{:#x} (supported: {FIELD_MEASUREMENT:#x}, measurement-bound)",
                req.field_select
            ),
        });
    }
    Ok(req)
}

/// Seals `plaintext` under `key` (the platform's answer to `req`) with a fresh `nonce`.
pub fn seal(
    key: &[u8; 32],
    req: KeyRequest,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let h = header(req, nonce);
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::TooLarge {
        len: plaintext.len(),
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&h);
    out.extend_from_slice(plaintext);
    let n = aes_gcm::Nonce::from(*nonce);
    let tag = cipher
        .encrypt_inout_detached(&n, &h, (&mut out[HEADER_LEN..]).into())
        .map_err(|_| SealError::TooLarge {
            len: plaintext.len(),
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Unseals `blob` with `key` (the platform's answer to [`key_request`]`(blob)`).
pub fn unseal(key: &[u8; 32], blob: &[u8]) -> Result<Vec<u8>, SealError> {
    key_request(blob)?;
    let (h, rest) = blob.split_at(HEADER_LEN);
    let body_len = rest.len().checked_sub(TAG_LEN).ok_or(SealError::TooShort {
        len: blob.len(),
        min: HEADER_LEN + TAG_LEN,
    })?;
    let (ct, tag) = rest.split_at(body_len);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&h[20..32]);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::Authentication)?;
    let mut buf = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &aes_gcm::Nonce::from(nonce),
            h,
            buf.as_mut_slice().into(),
            &aes_gcm::Tag::from(t),
        )
        .map_err(|_| SealError::Authentication)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [7; 32];
    const K2: [u8; 32] = [8; 32];
    const N: [u8; 12] = [1; 12];

    #[test]
    fn round_trip_and_wrong_key_fails() {
        let blob = seal(&K1, KeyRequest::MEASUREMENT_BOUND, &N, b"secret state").unwrap();
        assert_eq!(blob.len(), HEADER_LEN + 12 + TAG_LEN);
        assert_eq!(key_request(&blob).unwrap(), KeyRequest::MEASUREMENT_BOUND);
        assert_eq!(unseal(&K1, &blob).unwrap(), b"secret state");
        assert_eq!(unseal(&K2, &blob), Err(SealError::Authentication));
    }

    #[test]
    fn every_header_and_body_byte_is_authenticated() {
        let blob = seal(&K1, KeyRequest::MEASUREMENT_BOUND, &N, b"abc").unwrap();
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x01;
            assert!(unseal(&K1, &b).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn malformed_blobs_name_the_field() {
        assert!(matches!(
            unseal(&K1, b"short"),
            Err(SealError::TooShort { len: 5, .. })
        ));
        let mut b = seal(&K1, KeyRequest::MEASUREMENT_BOUND, &N, b"").unwrap();
        b[6] = 9;
        assert!(matches!(
            key_request(&b),
            Err(SealError::BadHeader {
                field: "version",
                offset: 6,
                ..
            })
        ));
        let mut b = seal(&K1, KeyRequest::MEASUREMENT_BOUND, &N, b"").unwrap();
        b[12] = 0;
        assert!(matches!(
            key_request(&b),
            Err(SealError::BadHeader {
                field: "field_select",
                ..
            })
        ));
    }
}
