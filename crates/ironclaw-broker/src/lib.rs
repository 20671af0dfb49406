//! IronClaw key broker: the Confidential Containers KBS protocol, policy,
//! encrypted store, audit log.
//!
//! The untrusted boundary is the network: [`http`] parses bytes from any TCP
//! peer, [`kbs`] interprets KBS payloads, [`evidence`] parses and verifies TEE
//! evidence. The admin socket ([`admin`]) is trusted (0600 in a 0700 directory).
//!
//! | module | role |
//! |---|---|
//! | [`http`] | HTTPS server (rustls, synchronous, bounded threads), request parsing |
//! | [`kbs`] | `/kbs/v0/auth`, `/attest`, `/resource/...` |
//! | [`session`] | sessions, single-use nonces, expiry |
//! | [`evidence`] | evidence of every kind → [`evidence::Claims`] |
//! | [`trustee_evidence`] | trustee's SNP / TDX / SGX evidence shapes → report / quote bytes (untrusted) |
//! | [`collateral`] | operator DCAP collateral files (`STATE/dcap-collateral/`), chosen by TEE and FMSPC |
//! | [`clock`] | the verification instant (wall clock; a fixed one only via [`Broker::with_evidence_clock`]) |
//! | [`policy`] | default-deny release rules |
//! | [`store`] | redb store, secrets AES-256-GCM at rest |
//! | [`token`] | the attestation token (JWT ES256), also accepted as a Bearer credential |
//! | [`tee_key`] | tee-pubkey JWKs (EC P-256, RSA) and the resource JWE |
//! | [`audit`] | JSON-lines audit log |
//! | [`admin`] | admin socket and the `secret` / `policy` commands |
//! | [`admin_http`] | trustee's admin API over HTTPS (Ed25519-signed admin tokens) |
//! | [`client`] | re-export of `ironclaw-kbs-client`, the small HTTPS client for the KBS API (tests, benchmark, the host's forwarder) |
//! | [`tls`] | certificate loading / first-start self-signed certificate |
//! | [`secmem`] | non-dumpable process, key material in `MADV_DONTDUMP` mappings |

pub mod admin;
pub mod admin_http;
pub mod audit;
pub mod clock;
pub mod collateral;
pub mod error;
pub mod evidence;
pub mod http;
pub mod kbs;
pub mod policy;
pub mod secmem;
pub mod session;
pub mod statedir;
pub mod store;
pub mod tee_key;
pub mod tls;
pub mod token;
pub mod trustee_evidence;

/// The KBS HTTPS client (its own crate, so the VMM links it without this server).
pub use ironclaw_kbs_client as client;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use getrandom::SysRng;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::UnwrapErr;

use crate::audit::{AuditLimits, AuditLog, AuditRotation};
use crate::policy::Policy;
use crate::session::Sessions;
use crate::statedir::{StateDir, StateError};
use crate::store::{Store, StoreError};

/// The OS CSPRNG (panics only if the kernel cannot give randomness, where no
/// key can be made anyway).
pub fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Most sessions held at once.
    pub max_sessions: usize,
    /// Most sessions held at once for one peer (IPv4 address or IPv6 /64);
    /// see [`session`] for how the table stays fair.
    pub max_sessions_per_peer: usize,
    /// Rotation of `STATE/audit.jsonl`.
    pub audit: AuditRotation,
    /// Rate limits on audit records of unauthenticated requests.
    pub audit_limits: AuditLimits,
    /// Keys allowed to use the HTTP admin API (none: disabled).
    pub admin_keys: admin_http::AdminKeys,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            session_ttl: Duration::from_secs(300),
            max_sessions: 10_000,
            max_sessions_per_peer: 1024,
            audit: AuditRotation::default(),
            audit_limits: AuditLimits::default(),
            admin_keys: admin_http::AdminKeys::none(),
        }
    }
}

/// Errors opening a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// State directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key file content.
    #[error("{path}: {reason}")]
    Key {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The admin socket of a running broker.
    #[error("admin socket {path}: {reason}")]
    Admin {
        /// Socket path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Audit log.
    #[error("{path}: {source}")]
    Audit {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
}

/// A broker: state, sessions, policy.
pub struct Broker {
    state: StateDir,
    store: Store,
    policy: RwLock<Policy>,
    sessions: Mutex<Sessions>,
    /// The token signing key, in a mapping excluded from core dumps.
    token_key: secmem::NoDump<p256::ecdsa::SigningKey>,
    audit: AuditLog,
    admin_keys: admin_http::AdminKeys,
    /// The instant evidence is verified at (the wall clock unless set otherwise).
    evidence_clock: std::sync::Arc<dyn clock::Clock>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("state", &self.state.root())
            .finish()
    }
}

/// Opens the store of `state` (used by the broker and by admin commands run
/// while no broker is running).
pub fn open_store(state: &StateDir) -> Result<Store, BrokerError> {
    let key = state.key32("store.key")?;
    Ok(Store::open(&state.path("store.redb"), &key)?)
}

impl Broker {
    /// Opens the broker state at `dir`, creating keys on first use.
    pub fn open(dir: &Path, config: BrokerConfig) -> Result<Self, BrokerError> {
        let state = StateDir::open(dir)?;
        let store = open_store(&state)?;
        let policy = store.policy()?;
        let pem = state.load_or_create("token.key", || {
            let k = p256::SecretKey::generate_from_rng(&mut rng());
            k.to_pkcs8_pem(Default::default())
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_default()
        })?;
        let key_err = |reason: String| BrokerError::Key {
            path: state.path("token.key").display().to_string(),
            reason,
        };
        let pem = std::str::from_utf8(&pem).map_err(|e| key_err(e.to_string()))?;
        let token_key =
            p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|e| key_err(e.to_string()))?;
        let token_key = secmem::NoDump::new(token_key).map_err(|e| key_err(e.to_string()))?;
        secmem::scrub_stack();
        let audit_path = state.path("audit.jsonl");
        let audit = AuditLog::open_limited(&audit_path, config.audit, config.audit_limits)
            .map_err(|source| BrokerError::Audit {
                path: audit_path.display().to_string(),
                source,
            })?;
        Ok(Broker {
            state,
            store,
            policy: RwLock::new(policy),
            sessions: Mutex::new(Sessions::new(
                config.session_ttl,
                config.max_sessions,
                config.max_sessions_per_peer,
            )),
            token_key,
            audit,
            admin_keys: config.admin_keys,
            evidence_clock: std::sync::Arc::new(clock::WallClock),
        })
    }

    /// Verifies evidence at the instant `clock` gives instead of the wall clock.
    /// For tests with archived evidence and for operators re-checking evidence
    /// presented at a known time; nothing reachable from the network or the CLI
    /// calls it. Sessions and tokens keep using the system clock.
    pub fn with_evidence_clock(mut self, clock: std::sync::Arc<dyn clock::Clock>) -> Self {
        self.evidence_clock = clock;
        self
    }

    /// Operator-configured DCAP collateral (`<state>/dcap-collateral/`).
    pub fn collateral_store(&self) -> collateral::CollateralStore {
        collateral::CollateralStore::new(&self.state.path(collateral::DIR_NAME))
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The token-verifying key (to check tokens this broker issued).
    pub fn token_verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.token_key.verifying_key()
    }

    /// The current policy.
    pub fn policy(&self) -> Policy {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the policy (stored first, then applied).
    pub fn set_policy(&self, policy: Policy) -> Result<(), StoreError> {
        self.store.set_policy(&policy)?;
        match self.policy.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
        Ok(())
    }

    /// Writes the pending `suppressed` summaries of the audit log now (they are
    /// otherwise written every `summary_interval` and when the broker is dropped).
    pub fn flush_audit(&self) {
        self.audit.flush_summaries();
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        match self.sessions.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn session_ttl(&self) -> Duration {
        self.sessions().ttl()
    }
}

use p256::elliptic_curve::Generate as _;
