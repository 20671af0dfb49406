//! One attested KBS session kept for the lifetime of the enclave and reused by every
//! `get_secret`: the first call runs auth → attest → resource, later calls only the
//! resource request.
//!
//! ```text
//! get_resource ──(no session, or the announced Max-Age has passed)──> handshake
//!      │                                                              (auth → evidence → attest)
//!      └──> GET resource ──200──> decrypt with the session's key ──> secret
//!                  │
//!                  ├─401 SessionExpired / UnknownSession (or trustee's ExpiredCookie /
//!                  │  InvalidCookie), and no handshake yet in this call
//!                  │      ──> drop the session, handshake, GET once more
//!                  └─any other refusal ──> returned as is (the session is kept)
//! ```
//!
//! At most one handshake happens per [`KbsSession::get_resource`]: a session that the
//! broker calls gone right after it was attested is an error, not a loop.
//!
//! What is kept, in enclave memory only: the `kbs-session-id` cookie, the ephemeral
//! P-256 key the session attested (the resources are JWE-encrypted to it; a new
//! session gets a new key, and the old one is zeroized when dropped: p256's
//! `SecretKey` zeroizes itself on drop) and the expiry the broker announced with
//! `Max-Age` in its `Set-Cookie`, if any.
//!
//! Trust: the host relays every byte and provides the clock. It can fake a "session
//! gone" refusal or move the clock to force a new handshake (costing one extra
//! round trip per call, no more), or hide the expiry (then the broker's refusal
//! triggers the handshake). Neither gives it the secret: the resource is decrypted
//! only with the key generated here, and a session is only ever used with the key it
//! attested.

use alloc::{string::String, vec::Vec};

use rand_core::CryptoRng;
/// The JSON value evidence is handed over as (serde_json's), for implementors of [`KbsIo`].
pub use serde_json::Value;

use crate::kbs_client::{self, KbsClient, KbsClientError};
use crate::runtime_data::REPORT_DATA_LEN;
use crate::tee::TeeKind;

/// `POST` path of the auth step.
pub const AUTH_PATH: &str = "/kbs/v0/auth";
/// `POST` path of the attest step.
pub const ATTEST_PATH: &str = "/kbs/v0/attest";

/// HTTP method of a relayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (resource).
    Get,
    /// `POST` (auth, attest).
    Post,
}

/// A broker reply as the relay hands it back (untrusted).
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Set-Cookie` value, if the reply had one.
    pub set_cookie: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

/// What a session needs from outside: inside the shim, the host relay (a hypercall
/// per request), the platform's evidence (a hypercall) and the guest clock (TSC).
pub trait KbsIo {
    /// Why the relay or the platform failed (inside the shim: a module error code).
    type Error;

    /// Sends one request to the broker; `cookie` is the `Cookie` header value.
    fn request(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, Self::Error>;

    /// TEE evidence binding `report_data`, as the attest request's `primary_evidence`.
    fn evidence(&mut self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<Value, Self::Error>;

    /// A monotonic clock in milliseconds, if there is one (used only to skip a
    /// session the broker said has expired).
    fn now_ms(&self) -> Option<u64>;
}

/// Why [`KbsSession::get_resource`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError<E> {
    /// The protocol failed: a refusal, a bad reply, a bad path.
    #[error(transparent)]
    Kbs(#[from] KbsClientError),
    /// The relay or the platform failed.
    #[error("KBS relay or evidence failed")]
    Io(E),
}

/// Counters of the requests a session made (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// auth → attest handshakes started.
    pub handshakes: u64,
    /// Resource requests sent.
    pub resource_requests: u64,
}

// The ephemeral key a session keeps (inside `KbsClient`'s `EnclaveKey`) wipes itself
// when the session is dropped or replaced: checked here at compile time.
const _: fn() = || {
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroized_on_drop::<p256::SecretKey>();
};

struct Established {
    client: KbsClient,
    cookie: String,
    /// Monotonic ms after which the broker said the session is gone.
    expires_ms: Option<u64>,
}

/// The enclave's KBS session, kept across calls.
pub struct KbsSession {
    tee: TeeKind,
    current: Option<Established>,
    stats: SessionStats,
}

impl KbsSession {
    /// No session yet; the first [`KbsSession::get_resource`] makes one.
    pub fn new(tee: TeeKind) -> Self {
        KbsSession {
            tee,
            current: None,
            stats: SessionStats::default(),
        }
    }

    /// What this session has sent so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The current session's cookie value, if one is attested.
    pub fn session_id(&self) -> Option<&str> {
        self.current.as_ref().and_then(|e| e.client.session())
    }

    /// Forgets the session (the next call starts with a handshake).
    pub fn reset(&mut self) {
        self.current = None;
    }

    fn live<E>(&self, io: &impl KbsIo<Error = E>) -> bool {
        match &self.current {
            None => false,
            Some(e) => match (e.expires_ms, io.now_ms()) {
                (Some(expires), Some(now)) => now < expires,
                _ => true,
            },
        }
    }

    /// The resource `repository/kind/tag`, decrypted. Reuses the attested session;
    /// makes a new one when there is none, when the announced expiry has passed, or
    /// (once) when the broker says the session is gone.
    pub fn get_resource<I: KbsIo, R: CryptoRng + ?Sized>(
        &mut self,
        io: &mut I,
        rng: &mut R,
        repository: &str,
        kind: &str,
        tag: &str,
    ) -> Result<Vec<u8>, SessionError<I::Error>> {
        let path = kbs_client::resource_path(repository, kind, tag)?;
        let mut handshook = false;
        if !self.live(io) {
            self.handshake(io, rng)?;
            handshook = true;
        }
        loop {
            let Some(session) = &self.current else {
                // `handshake` either set a session or returned an error.
                return Err(KbsClientError::OutOfOrder {
                    step: "get_resource",
                    state: "no session",
                }
                .into());
            };
            self.stats.resource_requests = self.stats.resource_requests.saturating_add(1);
            let reply = io
                .request(Method::Get, &path, Some(&session.cookie), &[])
                .map_err(SessionError::Io)?;
            match session
                .client
                .on_resource_response(reply.status, &reply.body)
            {
                Ok(secret) => return Ok(secret),
                Err(e) if e.is_session_gone() => {
                    self.current = None;
                    if handshook {
                        return Err(e.into());
                    }
                    self.handshake(io, rng)?;
                    handshook = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// auth → evidence → attest on a new session with a new ephemeral key. The
    /// previous session (and its key) is dropped first, whatever the outcome.
    fn handshake<I: KbsIo, R: CryptoRng + ?Sized>(
        &mut self,
        io: &mut I,
        rng: &mut R,
    ) -> Result<(), SessionError<I::Error>> {
        self.current = None;
        self.stats.handshakes = self.stats.handshakes.saturating_add(1);
        // Read before the request: the expiry is counted from no later than the
        // broker's, so a session is never used past what the broker announced.
        let started = io.now_ms();
        let mut client = KbsClient::new(self.tee, rng);

        let body = client.auth_request()?;
        let reply = io
            .request(Method::Post, AUTH_PATH, None, &body)
            .map_err(SessionError::Io)?;
        let report_data =
            client.on_auth_response(reply.status, reply.set_cookie.as_deref(), &reply.body)?;
        let max_age = reply
            .set_cookie
            .as_deref()
            .and_then(kbs_client::max_age_from_set_cookie);
        let cookie = client.cookie_header().ok_or(KbsClientError::NoSession)?;

        let evidence = io.evidence(&report_data).map_err(SessionError::Io)?;
        let body = client.attest_request(evidence)?;
        let reply = io
            .request(Method::Post, ATTEST_PATH, Some(&cookie), &body)
            .map_err(SessionError::Io)?;
        client.on_attest_response(reply.status, &reply.body)?;

        let expires_ms = match (started, max_age) {
            (Some(t), Some(s)) => Some(t.saturating_add(s.saturating_mul(1000))),
            _ => None,
        };
        self.current = Some(Established {
            client,
            cookie,
            expires_ms,
        });
        Ok(())
    }
}
