//! The broker's embedded store (redb): secrets encrypted at rest, and the policy.
//!
//! Each secret value is stored as `version(1) || nonce(12) || AES-256-GCM(ct || tag)`
//! with associated data `"ironclaw-broker secret v1\0" || path`, so a value moved
//! to another path (or an altered byte) fails to decrypt instead of being served.
//! The key is `STATE/store.key` (32 random bytes, mode 0600). The policy is not
//! secret and is stored as JSON.
//!
//! redb holds an exclusive lock on the file: while a broker runs, admin commands
//! go through its admin socket (see `admin`).

use std::path::Path;

use aes_gcm::{aead::Aead, Aes256Gcm, KeyInit};
use rand_core::Rng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use zeroize::Zeroizing;

use crate::policy::Policy;

const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const POLICY_KEY: &str = "policy";
const VALUE_VERSION: u8 = 1;
const AAD_PREFIX: &[u8] = b"ironclaw-broker secret v1\0";
/// Largest secret accepted.
pub const MAX_SECRET_LEN: usize = 1024 * 1024;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (a running broker) holds the database.
    #[error(
        "{path}: the store is open in another process (is a broker running? use its admin socket)"
    )]
    Locked {
        /// Database path.
        path: String,
    },
    /// A database error.
    #[error("store: {0}")]
    Db(String),
    /// A stored value does not decrypt.
    #[error("secret {path:?}: stored value fails authentication (store key changed, or the database was altered)")]
    Corrupt {
        /// Resource path.
        path: String,
    },
    /// The stored policy is not valid JSON.
    #[error("stored policy: {0}")]
    BadPolicy(String),
    /// A secret too large to store.
    #[error("secret {path:?}: {len} bytes (at most {MAX_SECRET_LEN})")]
    TooLarge {
        /// Resource path.
        path: String,
        /// Length.
        len: usize,
    },
}

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The open store.
pub struct Store {
    db: Database,
    /// The AES key schedule, in a mapping excluded from core dumps.
    cipher: crate::secmem::NoDump<Aes256Gcm>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn aad(path: &str) -> Vec<u8> {
    let mut a = AAD_PREFIX.to_vec();
    a.extend_from_slice(path.as_bytes());
    a
}

impl Store {
    /// Opens (creating) the database at `path` with the 32-byte `key`.
    pub fn open(path: &Path, key: &[u8; 32]) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.display().to_string(),
            },
            other => dberr(other),
        })?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(SECRETS).map_err(dberr)?;
        tx.open_table(META).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        let cipher = Aes256Gcm::new_from_slice(key).map_err(dberr)?;
        let cipher = crate::secmem::NoDump::new(cipher).map_err(dberr)?;
        Ok(Store { db, cipher })
    }

    /// Stores (replacing) the secret at `path`.
    pub fn put_secret(&self, path: &str, value: &[u8]) -> Result<(), StoreError> {
        if value.len() > MAX_SECRET_LEN {
            return Err(StoreError::TooLarge {
                path: path.into(),
                len: value.len(),
            });
        }
        let mut nonce = [0u8; 12];
        crate::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &aes_gcm::Nonce::from(nonce),
                aes_gcm::aead::Payload {
                    msg: value,
                    aad: &aad(path),
                },
            )
            .map_err(dberr)?;
        let mut stored = Vec::with_capacity(1 + 12 + ct.len());
        stored.push(VALUE_VERSION);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&ct);
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(SECRETS).map_err(dberr)?;
            t.insert(path, stored.as_slice()).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)
    }

    /// The decrypted secret at `path`, if any.
    pub fn get_secret(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(SECRETS).map_err(dberr)?;
        let Some(v) = t.get(path).map_err(dberr)? else {
            return Ok(None);
        };
        let v = v.value();
        let corrupt = || StoreError::Corrupt { path: path.into() };
        if v.first() != Some(&VALUE_VERSION) || v.len() < 1 + 12 + 16 {
            return Err(corrupt());
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&v[1..13]);
        let pt = self
            .cipher
            .decrypt(
                &aes_gcm::Nonce::from(nonce),
                aes_gcm::aead::Payload {
                    msg: &v[13..],
                    aad: &aad(path),
                },
            )
            .map_err(|_| corrupt())?;
        Ok(Some(Zeroizing::new(pt)))
    }

    /// Removes the secret at `path`; true when it existed.
    pub fn delete_secret(&self, path: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let existed = {
            let mut t = tx.open_table(SECRETS).map_err(dberr)?;
            let removed = t.remove(path).map_err(dberr)?;
            removed.is_some()
        };
        tx.commit().map_err(dberr)?;
        Ok(existed)
    }

    /// Paths of all secrets, sorted.
    pub fn list_secrets(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(SECRETS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, _) = item.map_err(dberr)?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// The stored policy (the default-deny policy if none was set).
    pub fn policy(&self) -> Result<Policy, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        match t.get(POLICY_KEY).map_err(dberr)? {
            None => Ok(Policy::default()),
            Some(v) => {
                serde_json::from_slice(v.value()).map_err(|e| StoreError::BadPolicy(e.to_string()))
            }
        }
    }

    /// Replaces the policy.
    pub fn set_policy(&self, policy: &Policy) -> Result<(), StoreError> {
        let json = serde_json::to_vec(policy).map_err(dberr)?;
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(META).map_err(dberr)?;
            t.insert(POLICY_KEY, json.as_slice()).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)
    }
}
