//! The host's platform key: signs `kvm` evidence (ES384, see
//! `ironclaw_kvm_evidence`, verified by `ironclaw_verifier::kvm`). Generated on first use as
//! `STATE/platform-key.pem` (PKCS#8, mode 0600); its public half is what
//! `ironclaw platform-key` prints for a broker to trust.
//!
//! The state directory is `$IRONCLAW_STATE_DIR`, else `/var/lib/ironclaw`
//! (created 0700).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p384::ecdsa::{SigningKey, VerifyingKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// File name of the platform key.
pub const PLATFORM_KEY_FILE: &str = "platform-key.pem";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ironclaw";

/// Errors loading or creating host keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: mode {mode:o} lets other users read it (expected 0600)")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// `$IRONCLAW_STATE_DIR` or [`DEFAULT_STATE_DIR`].
pub fn state_dir() -> PathBuf {
    std::env::var_os("IRONCLAW_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Reads the secret file `name` in `dir`, or creates it (0600, O_EXCL) from `make()`.
pub fn load_or_create_secret(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let path = dir.join(name);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let data = make();
            f.write_all(&data).and_then(|()| f.sync_all()).map_err(io)?;
            Ok(data)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mut f = fs::File::open(&path).map_err(io)?;
            let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path, mode });
            }
            let mut out = Vec::new();
            f.read_to_end(&mut out).map_err(io)?;
            Ok(out)
        }
        Err(e) => Err(io(e)),
    }
}

/// The platform signing key.
pub struct PlatformKey {
    key: SigningKey,
}

impl std::fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PlatformKey({})",
            ironclaw_kvm_evidence::key_id(self.key.verifying_key())
        )
    }
}

impl PlatformKey {
    /// Loads `dir/platform-key.pem`, generating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let pem = load_or_create_secret(dir, PLATFORM_KEY_FILE, || {
            let mut seed = [0u8; 48];
            loop {
                if getrandom::fill(&mut seed).is_err() {
                    continue;
                }
                if let Ok(k) = SigningKey::from_slice(&seed) {
                    break k
                        .to_pkcs8_pem(LineEnding::LF)
                        .map(|p| p.as_bytes().to_vec())
                        .unwrap_or_default();
                }
            }
        })?;
        let path = dir.join(PLATFORM_KEY_FILE);
        let text = std::str::from_utf8(&pem).map_err(|e| KeyError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_pkcs8_pem(text).map_err(|e| KeyError::Format {
            path,
            reason: e.to_string(),
        })?;
        Ok(PlatformKey { key })
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// Public JWK (with `kid` = RFC 7638 thumbprint).
    pub fn public_jwk(&self) -> serde_json::Value {
        ironclaw_kvm_evidence::public_jwk(self.verifying_key())
    }

    /// Public key as SPKI PEM.
    pub fn public_pem(&self) -> String {
        self.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }
}
