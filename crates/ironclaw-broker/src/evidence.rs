//! Evidence of every TEE kind → [`Claims`] the policy is evaluated against.
//!
//! This is where untrusted `tee-evidence` from the network is parsed. The shapes
//! of `primary_evidence` (a JSON value inside the KBS `Attestation`):
//!
//! | tee | primary_evidence |
//! |---|---|
//! | `kvm` | `{"cose_sign1": "<base64url COSE_Sign1>"}` (see `ironclaw_verifier::kvm`) |
//! | `snp` | trustee's: `{"attestation_report": {<sev serde fields>}, "cert_chain": [{"cert_type": "VCEK", "data": [..]}, ..] \| null}` (see [`crate::trustee_evidence`]); the VCEK/VLEK must be in `cert_chain` (no KDS fetch) |
//! | `tdx` | trustee's: `{"quote": "<base64>", "cc_eventlog": "<base64>" \| null}` |
//! | `sgx` | trustee's: `{"quote": "<base64>"}` |
//! | `snp`, `tdx`, `sgx`, `nitro` | the broker's own wrapper: `{"evidence": "<base64 report/quote/document>", "certs": ["<base64 PEM or DER>", ...], "collateral": "<base64 DCAP collateral JSON>"}` (trustee has no Nitro shape) |
//! | `sample` | trustee's sample evidence `{"svn": "...", "report_data": "<base64>"}` |
//!
//! The shape is recognised by its fields (`attestation_report` / `quote` versus
//! `evidence`). DCAP collateral comes from the wrapper's `collateral` or, for
//! either shape, from the operator's files in `<state>/dcap-collateral/`
//! ([`crate::collateral`]); without one the TCB status is `NotEvaluated`.
//!
//! Evidence is verified at the instant the broker's [`crate::clock::Clock`] gives
//! (the wall clock unless the embedding code set another), and only then is its
//! report_data compared: each kind's report_data must equal the digest of the KBS
//! runtime-data (`ironclaw_enclave::runtime_data`), zero-padded to the field's
//! length. This is what makes evidence fresh (it binds the session's nonce) and
//! what binds the enclave's ephemeral key.

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

use crate::collateral::{CollateralStore, Lookup, MISSING_PREFIX as COLLATERAL_MISSING};
use crate::policy::Policy;
use crate::trustee_evidence::{self, SnpSigner};

/// What verification needs besides the evidence and the policy.
#[derive(Debug, Clone, Copy)]
pub struct VerifyEnv<'a> {
    /// The verification instant (certificate validity, collateral windows).
    pub at: VerifyTime,
    /// Operator-configured DCAP collateral.
    pub collateral: &'a CollateralStore,
}

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
    /// report_data does not bind this session's nonce and tee-pubkey. The detail
    /// says what was verified before the comparison and what differed.
    #[error("report_data does not match the runtime-data of this session (stale or replayed evidence, or another key): {0}")]
    ReportDataMismatch(String),
    /// `sample` evidence while the policy does not enable it.
    #[error("the sample TEE kind is disabled by policy")]
    SampleDisabled,
    /// A TEE kind this broker cannot verify.
    #[error("TEE kind {0} is not supported by this broker")]
    UnsupportedTee(String),
}

fn from_verify(e: VerifyError, tee: &str) -> EvidenceError {
    match e.kind() {
        "input" | "malformed" | "unsupported" | "cert_parse" => {
            EvidenceError::Malformed(format!("{tee}: {e}"))
        }
        // Only kvm has operator-trusted keys; for hardware kinds an untrusted root
        // is evidence that does not verify.
        "untrusted_root" if tee == "kvm" => EvidenceError::UntrustedPlatformKey(e.to_string()),
        _ => EvidenceError::Rejected(format!("{tee}: {e}")),
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

/// Verifies `evidence` of kind `tee` at `env.at`, then checks its report_data
/// against `digest`.
pub fn verify(
    tee: TeeKind,
    evidence: &Value,
    digest: &[u8; DIGEST_LEN],
    policy: &Policy,
    env: &VerifyEnv<'_>,
) -> Result<Claims, EvidenceError> {
    match tee {
        TeeKind::Extra(ExtraTee::Kvm) => {
            let ev: KvmEvidence = parse(evidence, "kvm")?;
            let bytes = URL_SAFE_NO_PAD.decode(&ev.cose_sign1).map_err(|e| {
                EvidenceError::Malformed(format!("kvm cose_sign1: not base64url: {e}"))
            })?;
            let keys = policy.platform_keys();
            let r = ironclaw_verifier::kvm::verify(&bytes, &keys, env.at)
                .map_err(|e| from_verify(e, "kvm"))?;
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
                return Err(EvidenceError::ReportDataMismatch(format!(
                    "sample report_data is {}, this session needs {} zero-padded",
                    hex::encode(&rd),
                    hex::encode(digest)
                )));
            }
            Ok(Claims {
                tee: "sample",
                measurement: None,
                debug: false,
                tcb: None,
                result: None,
            })
        }
        TeeKind::Kbs(Tee::Snp) if trustee_evidence::is_snp_shape(evidence) => {
            verify_trustee_snp(evidence, digest, env)
        }
        TeeKind::Kbs(t @ (Tee::Tdx | Tee::Sgx)) if trustee_evidence::is_dcap_shape(evidence) => {
            let (kind, name) = if t == Tee::Tdx {
                (ironclaw_verifier::TeeKind::Tdx, "tdx")
            } else {
                (ironclaw_verifier::TeeKind::Sgx, "sgx")
            };
            let ev = trustee_evidence::parse_dcap(evidence, name)
                .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
            let mut opts = VerifyOptions::at(env.at);
            let missing;
            (opts.collateral, missing) = store_collateral(env, kind, &ev.quote);
            let r = ironclaw_verifier::dcap::verify(&ev.quote, &opts, kind)
                .map_err(|e| from_verify(e, name))?;
            finish(name, with_collateral_note(r, missing), digest)
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
            let mut opts = VerifyOptions::at(env.at);
            let mut missing = None;
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
            } else if matches!(
                kind,
                ironclaw_verifier::TeeKind::Tdx | ironclaw_verifier::TeeKind::Sgx
            ) {
                let (raw, _) = ironclaw_verifier::input::decode_evidence(&bytes);
                (opts.collateral, missing) = store_collateral(env, kind, &raw);
            }
            let r =
                ironclaw_verifier::verify(kind, &bytes, &opts).map_err(|e| from_verify(e, name))?;
            finish(name, with_collateral_note(r, missing), digest)
        }
    }
}

/// The operator's collateral for this quote's platform, or why there is none.
/// Without one the verifier checks quote, QE report and PCK chain and reports
/// `NotEvaluated`.
fn store_collateral(
    env: &VerifyEnv<'_>,
    kind: ironclaw_verifier::TeeKind,
    quote: &[u8],
) -> (Option<Vec<u8>>, Option<String>) {
    // A quote whose FMSPC cannot be read gets no collateral: the verifier then
    // names what is wrong with it.
    let Ok(fmspc) = ironclaw_verifier::dcap::quote_fmspc(quote) else {
        return (None, None);
    };
    match env.collateral.lookup(kind, &fmspc, env.at) {
        Lookup::Found(c) => (Some(c.bytes), None),
        Lookup::Missing(why) => (None, Some(why)),
    }
}

/// Puts why no collateral was used into the TCB note of the result (the claims
/// then say which file the operator is missing).
fn with_collateral_note(mut r: AttestationResult, missing: Option<String>) -> AttestationResult {
    if let (Some(why), TcbStatus::NotEvaluated) = (missing, r.tcb.status) {
        r.tcb.note = format!("{why}; {}", r.tcb.note);
    }
    r
}

fn verify_trustee_snp(
    evidence: &Value,
    digest: &[u8; DIGEST_LEN],
    env: &VerifyEnv<'_>,
) -> Result<Claims, EvidenceError> {
    let ev = trustee_evidence::parse_snp(evidence)
        .map_err(|e| EvidenceError::Malformed(e.to_string()))?;
    let Some((name, der)) = ev.endorsement_key else {
        let which = ev.signer.name();
        let why = match ev.signer {
            SnpSigner::Other(n) => format!(" (KEY_INFO.SIGNING_KEY is {n}, not a VCEK or VLEK)"),
            _ => String::new(),
        };
        return Err(EvidenceError::Malformed(format!(
            "snp cert_chain: the report is signed by a {which}{why} and cert_chain holds no \
             {which} certificate; this broker does not fetch it from AMD's KDS (it reaches no \
             network), so the attester must send it in cert_chain"
        )));
    };
    let mut opts = VerifyOptions::at(env.at);
    opts.certs.push((name, der));
    let r = ironclaw_verifier::snp::verify(&ev.report, &opts).map_err(|e| from_verify(e, "snp"))?;
    finish("snp", r, digest)
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
        let shown = |b: &Option<ironclaw_verifier::Bytes>| {
            b.as_ref()
                .map(|b| hex::encode(&b.0))
                .unwrap_or_else(|| "absent".into())
        };
        let found = if r.tee == ironclaw_verifier::TeeKind::Nitro {
            format!(
                "user_data {} and nonce {}",
                shown(&r.user_data),
                shown(&r.nonce)
            )
        } else {
            format!("report_data {}", shown(&r.report_data))
        };
        let signer = r
            .signer_chain
            .first()
            .map(|c| c.subject.as_str())
            .unwrap_or("(none)");
        return Err(EvidenceError::ReportDataMismatch(format!(
            "the {tee} evidence verified (signed by {signer:?}, measurement {}, TCB {:?}{}, at {}) \
             but its {found} does not equal this session's digest {} zero-padded",
            r.measurements
                .primary()
                .map(|m| hex::encode(&m.0))
                .unwrap_or_else(|| "(none)".into()),
            r.tcb.status,
            // Say which collateral the operator lacks (see `with_collateral_note`).
            r.tcb
                .note
                .split_once("; ")
                .filter(|(why, _)| why.starts_with(COLLATERAL_MISSING))
                .map(|(why, _)| format!(": {why}"))
                .unwrap_or_default(),
            r.verified_at,
            hex::encode(digest)
        )));
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
