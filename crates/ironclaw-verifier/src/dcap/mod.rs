//! Intel DCAP quotes (SGX v3, TDX v4/v5).

use crate::error::VerifyError;
use crate::result::{AttestationResult, TeeKind};
use crate::VerifyOptions;

/// Verify a DCAP quote.
pub fn verify(
    _bytes: &[u8],
    _opts: &VerifyOptions,
    kind: TeeKind,
) -> Result<AttestationResult, VerifyError> {
    Err(VerifyError::KindUnavailable {
        kind: kind.as_str(),
        reason: "DCAP verification is being implemented".to_string(),
    })
}
