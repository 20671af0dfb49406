//! KBS sessions: one per `/auth`, named by the `kbs-session-id` cookie.
//!
//! A session starts `Challenged` with a fresh nonce. The first `/attest` on it
//! consumes the nonce (state `Verifying`, then `Attested` or `Failed`): a nonce is
//! never accepted twice. Sessions expire `ttl` after `/auth`; expired ones are
//! refused and purged. The table is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ironclaw_enclave::tee::TeeKind;
use rand_core::Rng;

use crate::error::ApiError;
use crate::evidence::Claims;

/// Session state.
#[derive(Debug)]
pub enum SessionState {
    /// Challenged, nonce unused.
    Challenged,
    /// Nonce consumed, evidence being verified.
    Verifying,
    /// Attestation failed; the session is dead.
    Failed,
    /// Attested: resources may be requested.
    Attested {
        /// What was verified.
        claims: Box<Claims>,
        /// The enclave's ephemeral key (resources are encrypted to it).
        tee_pubkey: crate::tee_key::TeeKey,
    },
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The TEE kind from `/auth`.
    pub tee: TeeKind,
    /// The challenge nonce.
    pub nonce: String,
    /// Expiry.
    pub expires: Instant,
    /// State.
    pub state: SessionState,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    map: HashMap<String, Session>,
    ttl: Duration,
    max: usize,
}

impl Sessions {
    /// An empty table.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Sessions {
            map: HashMap::new(),
            ttl,
            max,
        }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Creates a session; returns (id, nonce).
    pub fn create(&mut self, tee: TeeKind) -> Result<(String, String), ApiError> {
        let now = Instant::now();
        self.map.retain(|_, s| s.expires > now);
        if self.map.len() >= self.max {
            return Err(ApiError::TooManySessions);
        }
        let mut rng = crate::rng();
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let id = URL_SAFE_NO_PAD.encode(id);
        let nonce = STANDARD.encode(nonce);
        self.map.insert(
            id.clone(),
            Session {
                tee,
                nonce: nonce.clone(),
                expires: now + self.ttl,
                state: SessionState::Challenged,
            },
        );
        Ok((id, nonce))
    }

    /// The live session `id`; an expired one is removed and refused.
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Session, ApiError> {
        let expired = match self.map.get(id) {
            None => return Err(ApiError::UnknownSession),
            Some(s) => s.expires <= Instant::now(),
        };
        if expired {
            self.map.remove(id);
            return Err(ApiError::SessionExpired);
        }
        self.map.get_mut(id).ok_or(ApiError::UnknownSession)
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
