//! AWS Nitro Enclaves attestation documents.

use crate::error::VerifyError;
use crate::result::AttestationResult;
use crate::VerifyOptions;

/// Verify a Nitro attestation document.
pub fn verify(_bytes: &[u8], _opts: &VerifyOptions) -> Result<AttestationResult, VerifyError> {
    Err(VerifyError::KindUnavailable {
        kind: "nitro",
        reason: "Nitro verification is being implemented".to_string(),
    })
}
