//! DCAP collateral: the `QuoteCollateralV3` JSON layout (byte fields hex, issuer
//! chains PEM, `tcb_info` / `qe_identity` the exact strings Intel signed).
//! Untrusted input. Besides decoding, this checks every validity window at the
//! verification instant so an expired piece is named precisely (dcap-qvl then does
//! the authoritative signature / CRL / TCB checks).

use dcap_qvl::QuoteCollateralV3;
use der::Decode;
use x509_cert::crl::CertificateList;

use crate::error::VerifyError;
use crate::time::{unix_to_rfc3339, VerifyTime};
use crate::x509::parse_bundle;

/// Decode the collateral JSON.
pub fn parse(bytes: &[u8]) -> Result<QuoteCollateralV3, VerifyError> {
    serde_json::from_slice(bytes).map_err(|e| VerifyError::Collateral {
        what: "JSON".to_string(),
        reason: format!("not QuoteCollateralV3 JSON: {e}"),
    })
}

fn rfc3339(s: &str, what: &str) -> Result<i64, VerifyError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp())
        .map_err(|e| VerifyError::Collateral {
            what: what.to_string(),
            reason: format!("date {s:?} is not RFC 3339: {e}"),
        })
}

fn window(what: &str, from: i64, until: i64, at: VerifyTime) -> Result<(), VerifyError> {
    if at.unix() < from {
        return Err(VerifyError::CollateralExpired {
            what: what.to_string(),
            at: at.to_rfc3339(),
            reason: format!("issued {} (not yet valid)", unix_to_rfc3339(from)),
        });
    }
    if at.unix() > until {
        return Err(VerifyError::CollateralExpired {
            what: what.to_string(),
            at: at.to_rfc3339(),
            reason: format!("expired: nextUpdate {}", unix_to_rfc3339(until)),
        });
    }
    Ok(())
}

fn signed_json_window(json: &str, what: &str, at: VerifyTime) -> Result<(), VerifyError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| VerifyError::Collateral {
        what: what.to_string(),
        reason: format!("not JSON: {e}"),
    })?;
    let field = |name: &str| -> Result<i64, VerifyError> {
        let s = v
            .get(name)
            .and_then(|x| x.as_str())
            .ok_or_else(|| VerifyError::Collateral {
                what: what.to_string(),
                reason: format!("missing {name}"),
            })?;
        rfc3339(s, what)
    };
    window(what, field("issueDate")?, field("nextUpdate")?, at)
}

fn crl_window(der: &[u8], what: &str, at: VerifyTime) -> Result<(), VerifyError> {
    let crl = CertificateList::<x509_cert::certificate::Raw>::from_der(der).map_err(|e| {
        VerifyError::Collateral {
            what: what.to_string(),
            reason: format!("not a DER CRL: {e}"),
        }
    })?;
    let this = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let next = crl
        .tbs_cert_list
        .next_update
        .map(|t| t.to_unix_duration().as_secs())
        .ok_or_else(|| VerifyError::Collateral {
            what: what.to_string(),
            reason: "CRL has no nextUpdate".to_string(),
        })?;
    window(
        what,
        i64::try_from(this).unwrap_or(i64::MAX),
        i64::try_from(next).unwrap_or(i64::MAX),
        at,
    )
}

/// Check every time window of the collateral at `at`: TCB info and QE identity
/// (issueDate..nextUpdate), both CRLs (thisUpdate..nextUpdate), and the validity of
/// every certificate of the issuer chains.
pub fn check_windows(c: &QuoteCollateralV3, at: VerifyTime) -> Result<(), VerifyError> {
    signed_json_window(&c.tcb_info, "TCB info", at)?;
    signed_json_window(&c.qe_identity, "QE identity", at)?;
    crl_window(&c.root_ca_crl, "root CA CRL", at)?;
    crl_window(&c.pck_crl, "PCK CRL", at)?;
    for (chain, what) in [
        (&c.tcb_info_issuer_chain, "TCB info issuer chain"),
        (&c.qe_identity_issuer_chain, "QE identity issuer chain"),
        (&c.pck_crl_issuer_chain, "PCK CRL issuer chain"),
    ] {
        for cert in parse_bundle(chain.as_bytes(), what)? {
            cert.check_validity(at)?;
        }
    }
    Ok(())
}
