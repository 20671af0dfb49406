//! Errors the KBS API answers with: every one a 4xx (or, for a genuine server
//! fault, 500) with a `kbs_types::ErrorInformation` JSON body.

use kbs_types::ErrorInformation;

use crate::evidence::EvidenceError;
use crate::tee_key::TeeKeyError;
use crate::token::TokenError;

/// The KBS protocol version this broker speaks; `/auth` requires exactly this
/// (trustee requires `=0.4.0`).
pub const SUPPORTED_VERSION: &str = ironclaw_enclave::kbs_client::PROTOCOL_VERSION;

/// Prefix of `ErrorInformation.type`.
pub const ERROR_TYPE_PREFIX: &str = "urn:ironclaw:kbs:error:";

/// A refused API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A KBS body or path could not be parsed.
    #[error("{0}")]
    InvalidRequest(String),
    /// The HTTP request itself is malformed (head, Content-Length, framing).
    #[error("{0}")]
    BadHttp(String),
    /// Unsupported protocol version.
    #[error(
        "KBS protocol version {0:?} is not supported (supported: exactly {SUPPORTED_VERSION:?})"
    )]
    UnsupportedVersion(String),
    /// No session cookie.
    #[error("no kbs-session-id cookie")]
    MissingCookie,
    /// Unknown session.
    #[error("unknown session")]
    UnknownSession,
    /// The session expired.
    #[error("session expired")]
    SessionExpired,
    /// The challenge nonce was already used.
    #[error("the challenge of this session was already used (nonces are single-use): start again at /kbs/v0/auth")]
    NonceReused,
    /// The attestation carries device evidence (`additional_evidence`), which
    /// this broker does not verify.
    #[error("tee-evidence: additional_evidence (device evidence, {0} bytes) is not verified by this broker, and a release never rests on unverified evidence: attest without device evidence")]
    UnsupportedAdditionalEvidence(usize),
    /// The attestation carries `init-data`, which this broker cannot bind to the
    /// evidence (it never ignores it silently).
    #[error("init-data (format {format:?}, {len} bytes) is not bound to the evidence by this broker, and is never ignored silently: attest without init-data")]
    UnsupportedInitData {
        /// The init-data `format`.
        format: String,
        /// Length of its body.
        len: usize,
    },
    /// An HTTP admin request without a valid admin token.
    #[error(transparent)]
    AdminDenied(#[from] crate::admin_http::AdminAuthError),
    /// An authenticated admin request that could not be carried out.
    #[error("{0}")]
    AdminFailed(String),
    /// runtime-data nonce is not the session's nonce.
    #[error("runtime-data nonce is not the nonce this session was challenged with")]
    NonceMismatch,
    /// The tee-pubkey JWK is malformed, too weak or unsupported.
    #[error(transparent)]
    TeePubKey(#[from] TeeKeyError),
    /// The Bearer attestation token is refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Evidence refused.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// Verified evidence that policy does not admit.
    #[error("policy denies: {0}")]
    PolicyDeny(String),
    /// Resource request on a session that is not attested.
    #[error("session is not attested")]
    NotAttested,
    /// The policy does not grant this resource.
    #[error("resource not granted: {0}")]
    ResourceNotGranted(String),
    /// Granted but not stored.
    #[error("resource {0} not found")]
    ResourceNotFound(String),
    /// Unknown endpoint.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// A resource path that is not `<repository>/<type>/<tag>` of valid components.
    #[error("{0}")]
    InvalidPath(String),
    /// Wrong method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// Body too large.
    #[error("request body of {0} bytes is too large")]
    PayloadTooLarge(usize),
    /// Header section too large.
    #[error("request header section too large")]
    HeadersTooLarge,
    /// No Content-Length (chunked bodies are not accepted).
    #[error("a Content-Length is required (chunked bodies are not accepted)")]
    LengthRequired,
    /// Session table full.
    #[error("too many open sessions, retry later")]
    TooManySessions,
    /// A server-side fault (store I/O).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status, as trustee's KBS answers (its `error.rs`): every refusal
    /// of a KBS request is 401, except a resource the policy does not grant
    /// (403, trustee's `PolicyDeny`) and unknown paths (404). KBS clients
    /// (guest-components' kbs_protocol) parse the `ErrorInformation` body only on
    /// 401 and 404, and on a 401 from `/resource` run a new handshake and retry:
    /// any other status ends their request as "KBS Server Internal Failed". The
    /// precise reason stays in the body's `type` and in the audit log.
    ///
    /// Two deliberate differences: a granted resource that is not stored is 404
    /// (trustee answers 401, which makes the client re-attest three times for
    /// nothing; kbs_protocol reports a 404 as "resource not found"), and a
    /// genuine server fault is 500. Errors of the HTTP layer itself (a head
    /// httparse refuses, no Content-Length, too large) keep their HTTP statuses:
    /// they are not KBS requests.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::ResourceNotGranted(_) => 403,
            ApiError::ResourceNotFound(_) | ApiError::NotFound(_) | ApiError::InvalidPath(_) => 404,
            ApiError::BadHttp(_) => 400,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::LengthRequired => 411,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::TooManySessions => 429,
            ApiError::HeadersTooLarge => 431,
            ApiError::Internal(_) => 500,
            ApiError::InvalidRequest(_)
            | ApiError::UnsupportedVersion(_)
            | ApiError::TeePubKey(_)
            | ApiError::Evidence(_)
            | ApiError::MissingCookie
            | ApiError::UnknownSession
            | ApiError::SessionExpired
            | ApiError::NonceReused
            | ApiError::NonceMismatch
            | ApiError::UnsupportedAdditionalEvidence(_)
            | ApiError::UnsupportedInitData { .. }
            | ApiError::AdminDenied(_)
            | ApiError::AdminFailed(_)
            | ApiError::NotAttested
            | ApiError::Token(_)
            | ApiError::PolicyDeny(_) => 401,
        }
    }

    /// True for refusals of a request whose credential (session or token) was
    /// valid: the requester is an attested enclave, accountable, and these are
    /// always audited. Every other refusal is of an unauthenticated request,
    /// which anyone can send at line rate: its audit record is rate-limited.
    pub fn after_authentication(&self) -> bool {
        matches!(
            self,
            ApiError::ResourceNotGranted(_)
                | ApiError::ResourceNotFound(_)
                | ApiError::Internal(_)
                | ApiError::AdminFailed(_)
        )
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for the
    /// refusals that are about load rather than the request.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManySessions => Some(1),
            _ => None,
        }
    }

    /// Stable short name (the suffix of `ErrorInformation.type`).
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "InvalidRequest",
            ApiError::BadHttp(_) => "BadHttpRequest",
            ApiError::UnsupportedVersion(_) => "UnsupportedVersion",
            ApiError::MissingCookie => "MissingCookie",
            ApiError::UnknownSession => "UnknownSession",
            ApiError::SessionExpired => "SessionExpired",
            ApiError::NonceReused => "NonceReused",
            ApiError::NonceMismatch => "NonceMismatch",
            ApiError::UnsupportedAdditionalEvidence(_) => "UnsupportedAdditionalEvidence",
            ApiError::UnsupportedInitData { .. } => "UnsupportedInitData",
            ApiError::AdminDenied(_) => "AdminAccessDenied",
            ApiError::AdminFailed(_) => "AdminRequestFailed",
            ApiError::TeePubKey(e) if e.is_weak() => "WeakTeePubKey",
            ApiError::TeePubKey(e) if e.is_unsupported() => "UnsupportedTeePubKey",
            ApiError::TeePubKey(_) => "MalformedTeePubKey",
            ApiError::Token(TokenError::Expired { .. }) => "TokenExpired",
            ApiError::Token(TokenError::NotYetValid { .. }) => "TokenNotYetValid",
            ApiError::Token(TokenError::BadSignature) => "TokenSignatureInvalid",
            ApiError::Token(TokenError::UnknownKey { .. }) => "UnknownTokenKey",
            ApiError::Token(TokenError::UnsupportedAlg(_)) => "UnsupportedTokenAlg",
            ApiError::Token(TokenError::WrongIssuer(_)) => "WrongTokenIssuer",
            ApiError::Token(TokenError::Malformed(_)) => "MalformedToken",
            ApiError::Evidence(EvidenceError::Malformed(_)) => "MalformedEvidence",
            ApiError::Evidence(EvidenceError::UntrustedPlatformKey(_)) => "UntrustedPlatformKey",
            ApiError::Evidence(EvidenceError::Rejected(_)) => "EvidenceRejected",
            ApiError::Evidence(EvidenceError::ReportDataMismatch(_)) => "ReportDataMismatch",
            ApiError::Evidence(EvidenceError::SampleDisabled) => "SampleDisabled",
            ApiError::Evidence(EvidenceError::UnsupportedTee(_)) => "UnsupportedTee",
            ApiError::PolicyDeny(_) => "PolicyDeny",
            ApiError::NotAttested => "NotAttested",
            ApiError::ResourceNotGranted(_) => "ResourceNotGranted",
            ApiError::ResourceNotFound(_) => "ResourceNotFound",
            ApiError::NotFound(_) => "NotFound",
            ApiError::InvalidPath(_) => "InvalidRequestPath",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::PayloadTooLarge(_) => "PayloadTooLarge",
            ApiError::HeadersTooLarge => "HeadersTooLarge",
            ApiError::LengthRequired => "LengthRequired",
            ApiError::TooManySessions => "TooManySessions",
            ApiError::Internal(_) => "Internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let info = ErrorInformation {
            error_type: format!("{ERROR_TYPE_PREFIX}{}", self.name()),
            detail: self.to_string(),
        };
        serde_json::to_vec(&info).unwrap_or_default()
    }
}
