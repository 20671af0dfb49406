//! The enclave side of the KBS protocol (RCAR) as a sans-IO state machine.
//!
//! ```text
//! Start --auth_request--> AwaitChallenge --on_auth_response--> Challenged
//!   --attest_request(evidence)--> AwaitToken --on_attest_response--> Attested
//!   --on_resource_response (any number)--> Attested
//! ```
//!
//! The caller moves bytes: it POSTs [`KbsClient::auth_request`] to
//! `/kbs/v0/auth`, hands the reply (status, `Set-Cookie`, body) back, obtains
//! evidence for the returned report_data from the platform, POSTs
//! [`KbsClient::attest_request`] to `/kbs/v0/attest` with the session cookie, and
//! GETs [`resource_path`]. Every reply is untrusted (the host relays it) and is
//! parsed and checked here. The resource arrives JWE-encrypted to an ephemeral
//! key that is generated here and never leaves this value.

use alloc::{format, string::String, vec::Vec};

use kbs_types::{
    Attestation, Challenge, CompositeEvidence, ErrorInformation, RuntimeData, TeePubKey,
};
use rand_core::CryptoRng;
use serde_json::Value;

use crate::jwe::{EnclaveKey, JweError};
use crate::runtime_data::{report_data, REPORT_DATA_LEN};
use crate::tee::{AuthRequest, TeeKind};

/// The protocol version this client speaks (trustee's KBS accepts `>=0.4.0`... in its range).
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// Longest nonce accepted from a broker.
pub const MAX_NONCE_LEN: usize = 1024;
/// Longest resource path component.
pub const MAX_PATH_COMPONENT: usize = 128;

/// Why a protocol step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KbsClientError {
    /// A step was called out of order.
    #[error("KBS client: {step} called in state {state}")]
    OutOfOrder {
        /// The step called.
        step: &'static str,
        /// The current state.
        state: &'static str,
    },
    /// The broker refused the request.
    #[error("broker refused {step} with HTTP {status}: {error_type}: {detail}")]
    Refused {
        /// The step.
        step: &'static str,
        /// HTTP status.
        status: u16,
        /// `ErrorInformation.type` (empty if the body was not one).
        error_type: String,
        /// `ErrorInformation.detail`.
        detail: String,
    },
    /// A reply body could not be parsed.
    #[error("{step} reply: {reason}")]
    BadReply {
        /// The step.
        step: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The auth reply carried no `kbs-session-id` cookie.
    #[error("auth reply: no {SESSION_COOKIE} cookie")]
    NoSession,
    /// A resource path component is invalid.
    #[error("resource path: component `{component}` is invalid: {reason}")]
    BadPath {
        /// The offending component.
        component: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The resource JWE could not be decrypted.
    #[error("resource: {0}")]
    Jwe(#[from] JweError),
}

enum State {
    Start,
    AwaitChallenge,
    Challenged { nonce: String },
    AwaitToken,
    Attested { token: String },
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Start => "start",
            State::AwaitChallenge => "await-challenge",
            State::Challenged { .. } => "challenged",
            State::AwaitToken => "await-token",
            State::Attested { .. } => "attested",
            State::Failed => "failed",
        }
    }
}

/// One KBS session from the enclave's side.
pub struct KbsClient {
    tee: TeeKind,
    key: EnclaveKey,
    tee_pubkey: TeePubKey,
    cookie: Option<String>,
    state: State,
}

fn refused(step: &'static str, status: u16, body: &[u8]) -> KbsClientError {
    let (error_type, detail) = match serde_json::from_slice::<ErrorInformation>(body) {
        Ok(e) => (e.error_type, e.detail),
        Err(_) => (String::new(), format!("{} byte non-JSON body", body.len())),
    };
    KbsClientError::Refused {
        step,
        status,
        error_type,
        detail,
    }
}

/// The `primary_evidence` for IronClaw `kvm` evidence (a COSE_Sign1 from the host).
pub fn kvm_primary_evidence(cose_sign1: &[u8]) -> Value {
    use base64::Engine;
    let mut m = serde_json::Map::new();
    m.insert(
        "cose_sign1".into(),
        Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cose_sign1)),
    );
    Value::Object(m)
}

/// Extracts the `kbs-session-id` value from a `Set-Cookie` (or `Cookie`) header value.
pub fn session_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == SESSION_COOKIE
            && !v.is_empty()
            && v.len() <= 256
            && v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
        .then_some(v)
    })
}

/// The `Max-Age` attribute of a `Set-Cookie` header value, in seconds: how long the
/// broker says the session lives (RFC 6265 5.2.2). A zero or negative value means
/// "already expired" and is returned as 0; a value that is not `-?DIGIT+` is ignored
/// (`None`), as the RFC says; an absurdly large one saturates.
pub fn max_age_from_set_cookie(header: &str) -> Option<u64> {
    header.split(';').skip(1).map(str::trim).find_map(|av| {
        let (k, v) = av.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("Max-Age") {
            return None;
        }
        let v = v.trim();
        let (negative, digits) = match v.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, v),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if negative {
            return Some(0);
        }
        Some(digits.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        }))
    })
}

/// `ErrorInformation.type` names (the part after the last `:` or `/`) by which a
/// broker says a session is gone: this broker's `SessionExpired` and
/// `UnknownSession`, trustee's `ExpiredCookie` and `InvalidCookie`.
pub const SESSION_GONE_ERRORS: &[&str] = &[
    "SessionExpired",
    "UnknownSession",
    "ExpiredCookie",
    "InvalidCookie",
];

impl KbsClientError {
    /// True when the broker refused with HTTP 401 because it no longer knows the
    /// session (expired or unknown): a new auth → attest may succeed. Any other
    /// refusal (policy, evidence, missing resource) is final.
    pub fn is_session_gone(&self) -> bool {
        match self {
            KbsClientError::Refused {
                status: 401,
                error_type,
                ..
            } => {
                let name = error_type.rsplit([':', '/']).next().unwrap_or_default();
                SESSION_GONE_ERRORS.contains(&name)
            }
            _ => false,
        }
    }
}

/// `/kbs/v0/resource/<repository>/<type>/<tag>`, each component checked
/// (1..=128 bytes of `[A-Za-z0-9._-]`, not `.` or `..`).
pub fn resource_path(repository: &str, kind: &str, tag: &str) -> Result<String, KbsClientError> {
    for c in [repository, kind, tag] {
        check_component(c)?;
    }
    Ok(format!("/kbs/v0/resource/{repository}/{kind}/{tag}"))
}

/// Checks one resource path component (shared with the broker).
pub fn check_component(c: &str) -> Result<(), KbsClientError> {
    let bad = |reason| KbsClientError::BadPath {
        component: c.into(),
        reason,
    };
    if c.is_empty() || c.len() > MAX_PATH_COMPONENT {
        return Err(bad("must be 1 to 128 bytes"));
    }
    if c == "." || c == ".." {
        return Err(bad("must not be . or .."));
    }
    if !c
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(bad("only A-Z a-z 0-9 . _ - are allowed"));
    }
    Ok(())
}

impl KbsClient {
    /// A new session for `tee`, with a fresh ephemeral key from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(tee: TeeKind, rng: &mut R) -> Self {
        let key = EnclaveKey::generate(rng);
        let tee_pubkey = key.tee_pubkey();
        KbsClient {
            tee,
            key,
            tee_pubkey,
            cookie: None,
            state: State::Start,
        }
    }

    /// The ephemeral public key (as sent in runtime-data).
    pub fn tee_pubkey(&self) -> &TeePubKey {
        &self.tee_pubkey
    }

    /// The session cookie value, once the broker set one.
    pub fn session(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// `Cookie` header value for the attest and resource requests.
    pub fn cookie_header(&self) -> Option<String> {
        self.cookie
            .as_ref()
            .map(|c| format!("{SESSION_COOKIE}={c}"))
    }

    /// The attestation token, once attested.
    pub fn token(&self) -> Option<&str> {
        match &self.state {
            State::Attested { token } => Some(token),
            _ => None,
        }
    }

    fn expect(&self, step: &'static str, ok: bool) -> Result<(), KbsClientError> {
        if ok {
            Ok(())
        } else {
            Err(KbsClientError::OutOfOrder {
                step,
                state: self.state.name(),
            })
        }
    }

    /// Body of `POST /kbs/v0/auth`.
    pub fn auth_request(&mut self) -> Result<Vec<u8>, KbsClientError> {
        self.expect("auth_request", matches!(self.state, State::Start))?;
        let req = AuthRequest {
            version: PROTOCOL_VERSION.into(),
            tee: self.tee,
            extra_params: Value::Object(serde_json::Map::new()),
        };
        let body = serde_json::to_vec(&req).map_err(|e| KbsClientError::BadReply {
            step: "auth",
            reason: format!("{e}"),
        })?;
        self.state = State::AwaitChallenge;
        Ok(body)
    }

    /// Consumes the auth reply; returns the 64-byte report_data the evidence must carry.
    pub fn on_auth_response(
        &mut self,
        status: u16,
        set_cookie: Option<&str>,
        body: &[u8],
    ) -> Result<[u8; REPORT_DATA_LEN], KbsClientError> {
        self.expect(
            "on_auth_response",
            matches!(self.state, State::AwaitChallenge),
        )?;
        self.state = State::Failed;
        if status != 200 {
            return Err(refused("auth", status, body));
        }
        let cookie = set_cookie
            .and_then(session_from_cookie_header)
            .ok_or(KbsClientError::NoSession)?;
        let challenge: Challenge =
            serde_json::from_slice(body).map_err(|e| KbsClientError::BadReply {
                step: "auth",
                reason: format!("not a KBS Challenge: {e}"),
            })?;
        if challenge.nonce.is_empty() || challenge.nonce.len() > MAX_NONCE_LEN {
            return Err(KbsClientError::BadReply {
                step: "auth",
                reason: format!(
                    "nonce of {} bytes (1..={MAX_NONCE_LEN} accepted)",
                    challenge.nonce.len()
                ),
            });
        }
        let rd = report_data(&challenge.nonce, &self.tee_pubkey, "");
        self.cookie = Some(cookie.into());
        self.state = State::Challenged {
            nonce: challenge.nonce,
        };
        Ok(rd)
    }

    /// Body of `POST /kbs/v0/attest`, carrying `evidence` (the TEE-specific primary evidence).
    pub fn attest_request(&mut self, evidence: Value) -> Result<Vec<u8>, KbsClientError> {
        let nonce = match &self.state {
            State::Challenged { nonce } => nonce.clone(),
            other => {
                return Err(KbsClientError::OutOfOrder {
                    step: "attest_request",
                    state: other.name(),
                })
            }
        };
        let att = Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce,
                tee_pubkey: self.tee_pubkey.clone(),
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        };
        let body = serde_json::to_vec(&att).map_err(|e| KbsClientError::BadReply {
            step: "attest",
            reason: format!("{e}"),
        })?;
        self.state = State::AwaitToken;
        Ok(body)
    }

    /// Consumes the attest reply (`{"token": "<JWT>"}`).
    pub fn on_attest_response(&mut self, status: u16, body: &[u8]) -> Result<(), KbsClientError> {
        self.expect(
            "on_attest_response",
            matches!(self.state, State::AwaitToken),
        )?;
        self.state = State::Failed;
        if status != 200 {
            return Err(refused("attest", status, body));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| KbsClientError::BadReply {
            step: "attest",
            reason: format!("not JSON: {e}"),
        })?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or(KbsClientError::BadReply {
                step: "attest",
                reason: "no string member `token`".into(),
            })?;
        self.state = State::Attested {
            token: token.into(),
        };
        Ok(())
    }

    /// Consumes a resource reply and returns the decrypted resource.
    pub fn on_resource_response(
        &self,
        status: u16,
        body: &[u8],
    ) -> Result<Vec<u8>, KbsClientError> {
        self.expect(
            "on_resource_response",
            matches!(self.state, State::Attested { .. }),
        )?;
        if status != 200 {
            return Err(refused("resource", status, body));
        }
        // The AAD is the `protected` member as sent, so the body is decrypted as received.
        Ok(self.key.decrypt_wire(body)?)
    }
}
