//! Why evidence was refused. Every variant names what it is about: the
//! certificate (by subject), the field, the byte offset.

use thiserror::Error;

/// A verification failure.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The evidence or an input file could not be decoded at all (encoding layer).
    #[error("{what}: {reason}")]
    Input { what: String, reason: String },

    /// A structure is malformed: names the format, the field and its byte offset.
    #[error("{format}: field `{field}` at byte offset {offset:#x}: {reason}")]
    Malformed {
        format: &'static str,
        field: &'static str,
        offset: usize,
        reason: String,
    },

    /// The evidence has a version / type this verifier does not implement.
    #[error("{format}: unsupported {field} {found} (supported: {supported})")]
    Unsupported {
        format: &'static str,
        field: &'static str,
        found: u64,
        supported: &'static str,
    },

    /// The evidence's signature does not verify under the named key.
    #[error("{what}: signature does not verify with the key of certificate {cert:?}")]
    BadSignature { what: &'static str, cert: String },

    /// A certificate is not signed by the issuer it was chained to.
    #[error("certificate {cert:?}: signature does not verify with issuer {issuer:?}: {reason}")]
    CertSignature {
        cert: String,
        issuer: String,
        reason: String,
    },

    /// A certificate could not be parsed.
    #[error("certificate {which}: {reason}")]
    CertParse { which: String, reason: String },

    /// The certificate's validity ended before the verification instant.
    #[error("certificate {cert:?} expired at {not_after} (verification instant {at})")]
    CertExpired {
        cert: String,
        not_after: String,
        at: String,
    },

    /// The certificate's validity starts after the verification instant.
    #[error("certificate {cert:?} is not valid before {not_before} (verification instant {at})")]
    CertNotYetValid {
        cert: String,
        not_before: String,
        at: String,
    },

    /// The chain does not end in the pinned root.
    #[error("untrusted root: {reason}")]
    UntrustedRoot { reason: String },

    /// A required certificate was not supplied and is not built in.
    #[error("missing certificate: {what}")]
    MissingCert { what: String },

    /// A certificate has the wrong key type / algorithm / extension for its role.
    #[error("certificate {cert:?}: {reason}")]
    CertContent { cert: String, reason: String },

    /// The evidence claims something the certificate contradicts (TCB, chip id, ...).
    #[error("{field}: the evidence says {evidence} but certificate {cert:?} says {cert_value}")]
    Mismatch {
        field: &'static str,
        evidence: String,
        cert: String,
        cert_value: String,
    },

    /// DCAP collateral (TCB info, QE identity, CRL) is outside its validity window.
    #[error("collateral {what} is not valid at {at}: {reason}")]
    CollateralExpired {
        what: String,
        at: String,
        reason: String,
    },

    /// DCAP collateral is malformed or does not verify.
    #[error("collateral {what}: {reason}")]
    Collateral { what: String, reason: String },

    /// A certificate in the chain is revoked by a CRL.
    #[error("certificate {cert:?} is revoked")]
    Revoked { cert: String },

    /// DCAP quote verification failed (the reason is the DCAP verifier's).
    #[error("DCAP quote verification failed: {reason}")]
    Dcap { reason: String },

    /// The TCB of the platform matched no level in the TCB info.
    #[error("TCB evaluation: {reason}")]
    Tcb { reason: String },

    /// A verifier for this kind is not available in this build.
    #[error("{kind} evidence cannot be verified: {reason}")]
    KindUnavailable { kind: &'static str, reason: String },
}

impl VerifyError {
    pub(crate) fn malformed(
        format: &'static str,
        field: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> Self {
        VerifyError::Malformed {
            format,
            field,
            offset,
            reason: reason.into(),
        }
    }

    /// Short, stable category name (used by tests and the CLI's JSON error).
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Input { .. } => "input",
            VerifyError::Malformed { .. } => "malformed",
            VerifyError::Unsupported { .. } => "unsupported",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::CertSignature { .. } => "cert_signature",
            VerifyError::CertParse { .. } => "cert_parse",
            VerifyError::CertExpired { .. } => "cert_expired",
            VerifyError::CertNotYetValid { .. } => "cert_not_yet_valid",
            VerifyError::UntrustedRoot { .. } => "untrusted_root",
            VerifyError::MissingCert { .. } => "missing_cert",
            VerifyError::CertContent { .. } => "cert_content",
            VerifyError::Mismatch { .. } => "mismatch",
            VerifyError::CollateralExpired { .. } => "collateral_expired",
            VerifyError::Collateral { .. } => "collateral",
            VerifyError::Revoked { .. } => "revoked",
            VerifyError::Dcap { .. } => "dcap",
            VerifyError::Tcb { .. } => "tcb",
            VerifyError::KindUnavailable { .. } => "kind_unavailable",
        }
    }
}
