//! Sealing keys: the host side of IronClaw's `MSG_KEY_REQ`-shaped sealing.
//!
//! The platform sealing root is 32 random bytes in `STATE/sealing-root.key`
//! (mode 0600), made on first use. The key an enclave gets is
//!
//! ```text
//! HKDF-SHA384(salt = "ironclaw/seal/v1", ikm = root,
//!             info = "ironclaw seal key" || key_version (u32 LE) || field_select (u64 LE)
//!                    || launch measurement (48 bytes))  →  32 bytes
//! ```
//!
//! where the measurement is the one the host computed over what it loaded —
//! never a value the guest sends. The enclave does the AEAD itself
//! (`ironclaw_enclave::seal`): another module (another measurement) derives
//! another key and cannot unseal.

use std::path::Path;

use hkdf::Hkdf;
use ironclaw_enclave::seal::{KeyRequest, FIELD_MEASUREMENT};
use sha2::Sha384;
use zeroize::Zeroizing;

use crate::platform_key::{load_or_create_secret, KeyError};

/// File name of the sealing root.
pub const SEALING_ROOT_FILE: &str = "sealing-root.key";
/// The only key version so far.
pub const CURRENT_KEY_VERSION: u32 = 1;

/// Why a key request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealKeyError {
    #[error("sealing key request: key_version {0} is not supported (supported: 1)")]
    KeyVersion(u64),
    #[error("sealing key request: field_select {0:#x} is not supported (supported: 0x1, the launch measurement)")]
    FieldSelect(u64),
}

/// The platform sealing root.
pub struct SealingRoot {
    root: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SealingRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingRoot(..)")
    }
}

impl SealingRoot {
    /// Loads `dir/sealing-root.key`, generating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let bytes = load_or_create_secret(dir, SEALING_ROOT_FILE, || {
            let mut k = vec![0u8; 32];
            while getrandom::fill(&mut k).is_err() {}
            k
        })?;
        let root: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Format {
            path: dir.join(SEALING_ROOT_FILE),
            reason: format!("{} bytes, expected 32", bytes.len()),
        })?;
        Ok(SealingRoot {
            root: Zeroizing::new(root),
        })
    }

    /// A root from given bytes (tests).
    pub fn from_bytes(root: [u8; 32]) -> Self {
        SealingRoot {
            root: Zeroizing::new(root),
        }
    }

    /// The key for `(key_version, field_select)` bound to `measurement`.
    pub fn derive(
        &self,
        measurement: &[u8; 48],
        key_version: u64,
        field_select: u64,
    ) -> Result<Zeroizing<[u8; 32]>, SealKeyError> {
        let version = u32::try_from(key_version)
            .ok()
            .filter(|v| *v == CURRENT_KEY_VERSION)
            .ok_or(SealKeyError::KeyVersion(key_version))?;
        if field_select != FIELD_MEASUREMENT {
            return Err(SealKeyError::FieldSelect(field_select));
        }
        let req = KeyRequest {
            key_version: version,
            field_select,
        };
        let hk = Hkdf::<Sha384>::new(Some(b"ironclaw/seal/v1"), self.root.as_ref());
        let mut info = b"ironclaw seal key".to_vec();
        info.extend_from_slice(&req.key_version.to_le_bytes());
        info.extend_from_slice(&req.field_select.to_le_bytes());
        info.extend_from_slice(measurement);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA384's 255 * 48 output limit.
        let _ = hk.expand(&info, out.as_mut());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_bound_to_measurement_and_root() {
        let a = SealingRoot::from_bytes([1; 32]);
        let b = SealingRoot::from_bytes([2; 32]);
        let m1 = [0x10; 48];
        let mut m2 = m1;
        m2[47] ^= 1;
        let k = a.derive(&m1, 1, 1).unwrap();
        assert_eq!(*k, *a.derive(&m1, 1, 1).unwrap());
        assert_ne!(*k, *a.derive(&m2, 1, 1).unwrap());
        assert_ne!(*k, *b.derive(&m1, 1, 1).unwrap());
        assert_eq!(
            a.derive(&m1, 2, 1).unwrap_err(),
            SealKeyError::KeyVersion(2)
        );
        assert_eq!(
            a.derive(&m1, 1, 3).unwrap_err(),
            SealKeyError::FieldSelect(3)
        );
    }

    #[test]
    fn sealed_by_one_measurement_refused_to_another() {
        let root = SealingRoot::from_bytes([9; 32]);
        let (m1, m2) = ([1u8; 48], [2u8; 48]);
        let k1 = root.derive(&m1, 1, 1).unwrap();
        let blob =
            ironclaw_enclave::seal::seal(&k1, KeyRequest::MEASUREMENT_BOUND, &[3; 12], b"state")
                .unwrap();
        let k2 = root.derive(&m2, 1, 1).unwrap();
        assert!(ironclaw_enclave::seal::unseal(&k2, &blob).is_err());
        assert_eq!(
            ironclaw_enclave::seal::unseal(&k1, &blob).unwrap(),
            b"state"
        );
    }
}
