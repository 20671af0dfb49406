//! The broker's state directory and its secret files.
//!
//! ```text
//! STATE/store.redb      secrets (AES-256-GCM, key below) and policy
//! STATE/store.key       32-byte store key                       (0600)
//! STATE/token.key       P-256 key signing attestation tokens    (0600, PKCS#8 PEM)
//! STATE/tls.crt, tls.key  self-signed certificate made on first start (key 0600)
//! STATE/audit.jsonl     audit log, one JSON object per line     (0600)
//! STATE/admin.sock      admin socket of a running broker        (0600)
//! ```
//! The directory itself is created 0700.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use rand_core::Rng;

/// Errors touching the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A key file has the wrong size or format.
    #[error("{path}: {reason}")]
    BadKeyFile {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A secret file is readable by others.
    #[error("{path}: mode {mode:o} lets other users read it (expected 0600)")]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The mode found.
        mode: u32,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating 0700 if needed) the state directory.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(root))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Reads `name`, or creates it with `make()` (mode 0600, written atomically
    /// with O_EXCL so two starting processes cannot both create it).
    pub fn load_or_create(
        &self,
        name: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, StateError> {
        let path = self.path(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let data = Zeroizing::new(make());
                f.write_all(&data)
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(&path))?;
                Ok(data)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                read_secret_file(&path).map(Zeroizing::new)
            }
            Err(e) => Err(StateError::Io { path, source: e }),
        }
    }

    /// A random 32-byte key file.
    pub fn key32(&self, name: &str) -> Result<Zeroizing<[u8; 32]>, StateError> {
        let data = self.load_or_create(name, || {
            let mut k = vec![0u8; 32];
            crate::rng().fill_bytes(&mut k);
            k
        })?;
        data.as_slice()
            .try_into()
            .map(Zeroizing::new)
            .map_err(|_| StateError::BadKeyFile {
                path: self.path(name),
                reason: format!("{} bytes, expected 32", data.len()),
            })
    }
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, StateError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mode = f.metadata().map_err(io_err(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StateError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(io_err(path))?;
    Ok(out)
}
