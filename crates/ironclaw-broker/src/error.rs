//! Errors the KBS API answers with: every one a 4xx (or, for a genuine server
//! fault, 500) with a `kbs_types::ErrorInformation` JSON body.

use kbs_types::ErrorInformation;

use crate::evidence::EvidenceError;
use crate::tee_key::TeeKeyError;
use crate::token::TokenError;

/// Prefix of `ErrorInformation.type`.
pub const ERROR_TYPE_PREFIX: &str = "urn:ironclaw:kbs:error:";

/// A refused API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Body / header / path could not be parsed.
    #[error("{0}")]
    InvalidRequest(String),
    /// Unsupported protocol version.
    #[error("KBS protocol version {0:?} is not supported (supported: 0.x)")]
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
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::UnsupportedVersion(_)
            | ApiError::TeePubKey(_) => 400,
            ApiError::Evidence(EvidenceError::Malformed(_))
            | ApiError::Evidence(EvidenceError::UnsupportedTee(_)) => 400,
            ApiError::Evidence(EvidenceError::SampleDisabled) => 403,
            ApiError::Evidence(_) => 401,
            ApiError::MissingCookie
            | ApiError::UnknownSession
            | ApiError::SessionExpired
            | ApiError::NonceReused
            | ApiError::NonceMismatch
            | ApiError::NotAttested
            | ApiError::Token(_) => 401,
            ApiError::PolicyDeny(_) | ApiError::ResourceNotGranted(_) => 403,
            ApiError::ResourceNotFound(_) | ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::LengthRequired => 411,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::TooManySessions => 429,
            ApiError::HeadersTooLarge => 431,
            ApiError::Internal(_) => 500,
        }
    }

    /// Stable short name (the suffix of `ErrorInformation.type`).
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "InvalidRequest",
            ApiError::UnsupportedVersion(_) => "UnsupportedVersion",
            ApiError::MissingCookie => "MissingCookie",
            ApiError::UnknownSession => "UnknownSession",
            ApiError::SessionExpired => "SessionExpired",
            ApiError::NonceReused => "NonceReused",
            ApiError::NonceMismatch => "NonceMismatch",
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
