//! Evidence of every TEE kind → [`Claims`] the policy is evaluated against.
//!
//! This is where untrusted `tee-evidence` from the network is parsed. The shapes
//! of `primary_evidence` (a JSON value inside the KBS `Attestation`):
//!
//! | tee | primary_evidence |
//! |---|---|
//! | `kvm` | `{"cose_sign1": "<base64url COSE_Sign1>"}` (see `ironclaw_verifier::kvm`) |
//! | `snp`, `tdx`, `sgx`, `nitro` | `{"evidence": "<base64 report/quote/document>", "certs": ["<base64 PEM or DER>", ...], "collateral": "<base64 DCAP collateral JSON>"}` |
//! | `sample` | trustee's sample evidence `{"svn": "...", "report_data": "<base64>"}` |
//!
//! Each kind's report_data must equal the digest of the KBS runtime-data
//! (`ironclaw_enclave::runtime_data`), zero-padded to the field's length: this is
//! what makes evidence fresh (it binds the session's nonce) and what binds the
//! enclave's ephemeral key.

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use ironclaw_enclave::runtime_data::DIGEST_LEN;
use ironclaw_enclave::tee::{ExtraTee, TeeKind};
use ironclaw_verifier::{AttestationResult, TcbStatus, VerifyError, VerifyOptions, VerifyTime};
use kbs_types::Tee;
use serde::Deserialize;
use serde_json::Value;

use crate::policy::Policy;

/// What the policy sees of verified evidence.
#[derive(Debug, Clone)]
pub struct Claims {
    /// TEE kind name.
    pub tee: &'static str,
    /// The primary measurement (kvm launch measurement, SNP MEASUREMENT, TDX MRTD, ...).
    pub measurement: Option<Vec<u8>>,
    /// Debuggable enclave.
    pub debug: bool,
    /// TCB status (hardware kinds).
    pub tcb: Option<TcbStatus>,
    /// The verifier's full result (not for `sample`).
    pub result: Option<AttestationResult>,
}

/// Why evidence was refused.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The evidence JSON / encoding is malformed.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// `kvm` evidence from a platform key the policy does not trust.
    #[error("untrusted platform key: {0}")]
    UntrustedPlatformKey(String),
    /// The evidence does not verify (signature, chain, TCB).
    #[error("evidence rejected: {0}")]
    Rejected(String),
    /// report_data does not bind this session's nonce and tee-pubkey.
    #[error("report_data does not match the runtime-data of this session (stale or replayed evidence, or another key)")]
    ReportDataMismatch,
    /// `sample` evidence while the policy does not enable it.
    #[error("the sample TEE kind is disabled by policy")]
    SampleDisabled,
    /// A TEE kind this broker cannot verify.
    #[error("TEE kind {0} is not supported by this broker")]
    UnsupportedTee(String),
}

fn from_verify(e: VerifyError) -> EvidenceError {
    match e.kind() {
        "input" | "malformed" | "unsupported" | "cert_parse" => {
            EvidenceError::Malformed(e.to_string())
        }
        "untrusted_root" => EvidenceError::UntrustedPlatformKey(e.to_string()),
        _ => EvidenceError::Rejected(e.to_string()),
    }
}

fn report_data_matches(found: &[u8], digest: &[u8; DIGEST_LEN]) -> bool {
    found.len() >= DIGEST_LEN
        && found.get(..DIGEST_LEN) == Some(digest.as_slice())
        && found
            .get(DIGEST_LEN..)
            .is_some_and(|rest| rest.iter().all(|b| *b == 0))
}

fn b64_any(s: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(s)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvmEvidence {
    cose_sign1: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareEvidence {
    evidence: String,
    #[serde(default)]
    certs: Vec<String>,
    #[serde(default)]
    collateral: Option<String>,
}

#[derive(Deserialize)]
struct SampleEvidence {
    #[allow(dead_code)]
    svn: String,
    report_data: String,
}

fn parse<T: for<'de> Deserialize<'de>>(v: &Value, kind: &str) -> Result<T, EvidenceError> {
    T::deserialize(v).map_err(|e| EvidenceError::Malformed(format!("{kind} primary_evidence: {e}")))
}

/// Verifies `evidence` of kind `tee`, checks its report_data against `digest`.
pub fn verify(
    tee: TeeKind,
    evidence: &Value,
    digest: &[u8; DIGEST_LEN],
    policy: &Policy,
) -> Result<Claims, EvidenceError> {
    let now = VerifyTime::now();
    match tee {
        TeeKind::Extra(ExtraTee::Kvm) => {
            let ev: KvmEvidence = parse(evidence, "kvm")?;
            let bytes = URL_SAFE_NO_PAD.decode(&ev.cose_sign1).map_err(|e| {
                EvidenceError::Malformed(format!("kvm cose_sign1: not base64url: {e}"))
            })?;
            let keys = policy.platform_keys();
            let r = ironclaw_verifier::kvm::verify(&bytes, &keys, now).map_err(from_verify)?;
            finish("kvm", r, digest)
        }
        TeeKind::Kbs(Tee::Sample) => {
            if !policy.allow_sample {
                return Err(EvidenceError::SampleDisabled);
            }
            let ev: SampleEvidence = parse(evidence, "sample")?;
            let rd = b64_any(&ev.report_data)
                .ok_or_else(|| EvidenceError::Malformed("sample report_data: not base64".into()))?;
            if !report_data_matches(&rd, digest) {
                return Err(EvidenceError::ReportDataMismatch);
            }
            Ok(Claims {
                tee: "sample",
                measurement: None,
                debug: false,
                tcb: None,
                result: None,
            })
        }
        other => {
            let (kind, name) = match other {
                TeeKind::Kbs(Tee::Snp) => (ironclaw_verifier::TeeKind::Snp, "snp"),
                TeeKind::Kbs(Tee::Tdx) => (ironclaw_verifier::TeeKind::Tdx, "tdx"),
                TeeKind::Kbs(Tee::Sgx) => (ironclaw_verifier::TeeKind::Sgx, "sgx"),
                TeeKind::Extra(ExtraTee::Nitro) => (ironclaw_verifier::TeeKind::Nitro, "nitro"),
                unsupported => {
                    return Err(EvidenceError::UnsupportedTee(unsupported.name().into()))
                }
            };
            let ev: HardwareEvidence = parse(evidence, name)?;
            let bytes = b64_any(&ev.evidence)
                .ok_or_else(|| EvidenceError::Malformed(format!("{name} evidence: not base64")))?;
            let mut opts = VerifyOptions::at(now);
            for (i, c) in ev.certs.iter().enumerate() {
                let der = b64_any(c).ok_or_else(|| {
                    EvidenceError::Malformed(format!("{name} certs[{i}]: not base64"))
                })?;
                opts.certs.push((format!("certs[{i}]"), der));
            }
            if let Some(c) = &ev.collateral {
                opts.collateral = Some(b64_any(c).ok_or_else(|| {
                    EvidenceError::Malformed(format!("{name} collateral: not base64"))
                })?);
            }
            let r = ironclaw_verifier::verify(kind, &bytes, &opts).map_err(from_verify)?;
            finish(name, r, digest)
        }
    }
}

fn finish(
    tee: &'static str,
    r: AttestationResult,
    digest: &[u8; DIGEST_LEN],
) -> Result<Claims, EvidenceError> {
    // Nitro binds caller data in user_data (or nonce); the others in report_data.
    let bound = [
        r.report_data.as_ref(),
        r.user_data.as_ref(),
        r.nonce.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|b| report_data_matches(b.as_slice(), digest));
    if !bound {
        return Err(EvidenceError::ReportDataMismatch);
    }
    let tcb = if r.tee.is_hardware() {
        Some(r.tcb.status)
    } else {
        None
    };
    Ok(Claims {
        tee,
        measurement: r.measurements.primary().map(|b| b.0.clone()),
        debug: r.debug,
        tcb,
        result: Some(r),
    })
}
