//! Intel DCAP: SGX quote v3, TDX quote v4 and v5 (TD 1.0, TD 1.5, TD 1.5 ex bodies).
//!
//! Always checked here, with or without collateral: header and structure
//! ([`quote`]), the PCK certificate chain up to the pinned Intel SGX Root CA with
//! every certificate valid at the instant, the QE report signature by the PCK key,
//! QE REPORT_DATA = SHA-256(attestation key || QE auth data) || 32 zero bytes, and
//! the attestation key's signature over header + body.
//!
//! With `--collateral`: every collateral validity window ([`collateral`]), then
//! dcap-qvl's full verification against the same pinned root (TCB info and QE
//! identity signatures and chains, CRLs, QE identity policy, TCB level matching)
//! gives the TCB status and advisory ids. dcap-qvl is told to allow debug enclaves
//! and service-TD-bound TDs: the result reports them (`debug`, `mr_service_td`) and
//! the broker's policy decides.

pub mod collateral;
pub mod quote;

use dcap_qvl::quote::{EnclaveReport, Report};
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::result::{
    AttestationResult, Bytes, Measurements, PolicyBits, TcbInfo, TcbStatus, TeeKind,
};
use crate::x509::{parse_bundle, Cert};
use crate::VerifyOptions;

/// DER of the Intel SGX Root CA (SHA-256 44a0196b…74d3), the only DCAP trust anchor.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// Certification data type 5: PCK certificate chain (PEM) in the quote.
const CERT_TYPE_PCK_CHAIN: u16 = 5;

fn root() -> Result<Cert, VerifyError> {
    Cert::from_der(INTEL_SGX_ROOT_CA_DER, "built-in Intel SGX Root CA")
}

/// Verify a DCAP quote of the expected kind (`Tdx` or `Sgx`).
pub fn verify(
    bytes: &[u8],
    opts: &VerifyOptions,
    kind: TeeKind,
) -> Result<AttestationResult, VerifyError> {
    let (info, q, used) = quote::parse(bytes)?;
    let is_sgx = info.tee_type == quote::TEE_TYPE_SGX;
    if is_sgx != (kind == TeeKind::Sgx) {
        return Err(VerifyError::Input {
            what: "DCAP quote".to_string(),
            reason: format!(
                "header.tee_type says {} but the evidence was given as {kind}",
                if is_sgx { "SGX" } else { "TDX" }
            ),
        });
    }
    let raw = bytes.get(..used).unwrap_or(bytes);
    let auth = q.auth_data.clone().into_v3();
    let coll = match &opts.collateral {
        Some(c) => Some(collateral::parse(c)?),
        None => None,
    };

    // PCK chain: from the collateral if it carries one, else from the quote (type 5),
    // plus anything given with --cert.
    let mut pool: Vec<Cert> = Vec::new();
    if let Some(pem) = coll.as_ref().and_then(|c| c.pck_certificate_chain.as_ref()) {
        pool.extend(parse_bundle(
            pem.as_bytes(),
            "collateral pck_certificate_chain",
        )?);
    } else if auth.certification_data.cert_type == CERT_TYPE_PCK_CHAIN {
        pool.extend(parse_bundle(
            &auth.certification_data.body.data,
            "quote PCK certificate chain",
        )?);
    }
    pool.extend(opts.parsed_certs()?);
    let pck = pool
        .iter()
        .find(|c| c.subject_contains("Intel SGX PCK Certificate"))
        .cloned()
        .ok_or_else(|| VerifyError::MissingCert {
            what: format!(
                "PCK certificate (the quote's certification data is type {}; pass the PCK chain with --cert or in the collateral)",
                auth.certification_data.cert_type
            ),
        })?;
    let chain = chain_to_root(&pck, &pool, opts)?;

    // QE report signed by the PCK key.
    let pck_key = pck.p256_key()?;
    let qe_sig = p256::ecdsa::Signature::from_slice(&auth.qe_report_signature).map_err(|_| {
        VerifyError::malformed(
            "DCAP quote",
            "QE report signature",
            0,
            "not a valid P-256 r||s",
        )
    })?;
    pck_key
        .verify(&auth.qe_report, &qe_sig)
        .map_err(|_| VerifyError::BadSignature {
            what: "DCAP QE report",
            cert: pck.subject().to_string(),
        })?;
    let mut qe_slice = &auth.qe_report[..];
    let qe_report = <EnclaveReport as parity_scale_codec::Decode>::decode(&mut qe_slice)
        .map_err(|e| VerifyError::malformed("DCAP quote", "QE report", 0, e.to_string()))?;
    let mut h = Sha256::new();
    h.update(auth.ecdsa_attestation_key);
    h.update(&auth.qe_auth_data.data);
    let expect = h.finalize();
    if qe_report.report_data[..32] != expect[..]
        || qe_report.report_data[32..].iter().any(|b| *b != 0)
    {
        return Err(VerifyError::Mismatch {
            field: "QE report REPORT_DATA",
            evidence: hex::encode(qe_report.report_data),
            cert: pck.subject().to_string(),
            cert_value: format!(
                "SHA-256(attestation key || QE auth data) = {} || 32 zero bytes",
                hex::encode(expect)
            ),
        });
    }

    // Attestation key signature over header + body.
    let mut sec1 = [0x04u8; 65];
    sec1[1..].copy_from_slice(&auth.ecdsa_attestation_key);
    let ak = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| {
        VerifyError::malformed(
            "DCAP quote",
            "attestation key",
            0,
            "not a valid P-256 point",
        )
    })?;
    let sig = p256::ecdsa::Signature::from_slice(&auth.ecdsa_signature).map_err(|_| {
        VerifyError::malformed("DCAP quote", "quote signature", 0, "not a valid P-256 r||s")
    })?;
    let signed = raw.get(..q.signed_length()).ok_or_else(|| {
        VerifyError::malformed("DCAP quote", "body", quote::HEADER_LEN, "truncated")
    })?;
    ak.verify(signed, &sig)
        .map_err(|_| VerifyError::BadSignature {
            what: "DCAP quote (attestation key over header and body)",
            cert: "attestation key certified by the QE report".to_string(),
        })?;

    // TCB: only with collateral.
    let tcb = match &coll {
        None => TcbInfo {
            status: TcbStatus::NotEvaluated,
            advisory_ids: Vec::new(),
            note: "no collateral given: quote signature, QE report and PCK chain verified; TCB, QE identity and CRLs not evaluated".to_string(),
        },
        Some(c) => {
            collateral::check_windows(c, opts.at)?;
            let now = u64::try_from(opts.at.unix()).map_err(|_| VerifyError::Input {
                what: "verification instant".to_string(),
                reason: "before 1970".to_string(),
            })?;
            let verifier = dcap_qvl::verify::QuoteVerifier::new(INTEL_SGX_ROOT_CA_DER.to_vec())
                .allow_debug(true)
                .allow_service_td(true);
            let report = verifier.verify(raw, c, now).map_err(map_qvl_error)?;
            let status = TcbStatus::from_intel(&report.status).ok_or_else(|| VerifyError::Tcb {
                reason: format!("unknown TCB status {:?}", report.status),
            })?;
            TcbInfo {
                status,
                advisory_ids: report.advisory_ids,
                note: "TCB info, QE identity and CRLs verified with dcap-qvl".to_string(),
            }
        }
    };

    let fmspc = dcap_qvl::intel::parse_pck_extension(pck.der())
        .map(|e| Bytes::from(&e.fmspc[..]))
        .map_err(|e| VerifyError::CertContent {
            cert: pck.subject().to_string(),
            reason: format!("Intel SGX extension: {e:#}"),
        })?;
    let (measurements, policy, debug, report_data) = claims(&q.report, info, fmspc)?;
    Ok(AttestationResult {
        tee: kind,
        measurements,
        report_data: Some(report_data),
        user_data: None,
        nonce: None,
        public_key: None,
        debug,
        policy,
        tcb,
        signer_chain: chain.iter().map(Cert::info).collect(),
        verified_at: opts.at.to_rfc3339(),
    })
}

/// The FMSPC (platform family) of the quote's PCK certificate, read from the PCK
/// chain the quote carries (certification data type 5). Nothing is verified here:
/// this only tells a caller which TCB info / collateral applies; [`verify`] then
/// checks the quote, the chain and that collateral.
pub fn quote_fmspc(bytes: &[u8]) -> Result<[u8; 6], VerifyError> {
    let (_, q, _) = quote::parse(bytes)?;
    let auth = q.auth_data.into_v3();
    if auth.certification_data.cert_type != CERT_TYPE_PCK_CHAIN {
        return Err(VerifyError::MissingCert {
            what: format!(
                "PCK certificate (the quote's certification data is type {}, not the PCK chain)",
                auth.certification_data.cert_type
            ),
        });
    }
    let certs = parse_bundle(
        &auth.certification_data.body.data,
        "quote PCK certificate chain",
    )?;
    let pck = certs
        .iter()
        .find(|c| c.subject_contains("Intel SGX PCK Certificate"))
        .ok_or_else(|| VerifyError::MissingCert {
            what: "PCK certificate in the quote's PCK chain".to_string(),
        })?;
    let ext =
        dcap_qvl::intel::parse_pck_extension(pck.der()).map_err(|e| VerifyError::CertContent {
            cert: pck.subject().to_string(),
            reason: format!("Intel SGX extension: {e:#}"),
        })?;
    Ok(ext.fmspc)
}

fn map_qvl_error(e: anyhow::Error) -> VerifyError {
    let reason = format!("{e:#}");
    if reason.contains("No matching TCB level") {
        VerifyError::Tcb { reason }
    } else if reason.to_ascii_lowercase().contains("revoked") {
        VerifyError::Revoked { cert: reason }
    } else {
        VerifyError::Dcap { reason }
    }
}

/// PCK → intermediate(s) → pinned root, each valid at the instant. Returns leaf..root.
fn chain_to_root(
    pck: &Cert,
    pool: &[Cert],
    opts: &VerifyOptions,
) -> Result<Vec<Cert>, VerifyError> {
    let root = root()?;
    // A certificate named like the root must be the pinned one.
    for c in pool {
        if c.subject() == root.subject() && c.der() != root.der() {
            return Err(VerifyError::UntrustedRoot {
                reason: format!(
                    "certificate {:?} is not the pinned Intel SGX Root CA",
                    c.subject()
                ),
            });
        }
    }
    let mut chain = vec![pck.clone()];
    let mut current = pck.clone();
    for _ in 0..4 {
        current.check_validity(opts.at)?;
        if current.issuer() == root.subject() {
            current.verify_signed_by(&root)?;
            root.check_validity(opts.at)?;
            chain.push(root);
            return Ok(chain);
        }
        let issuer = pool
            .iter()
            .find(|c| c.subject() == current.issuer() && c.subject() != c.issuer())
            .cloned()
            .ok_or_else(|| VerifyError::MissingCert {
                what: format!("issuer {:?} of {:?}", current.issuer(), current.subject()),
            })?;
        current.verify_signed_by(&issuer)?;
        chain.push(issuer.clone());
        current = issuer;
    }
    Err(VerifyError::UntrustedRoot {
        reason: "PCK chain is longer than 4 certificates without reaching the Intel SGX Root CA"
            .to_string(),
    })
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from_le_bytes(a)
}

type Claims = (Measurements, PolicyBits, bool, Bytes);

fn claims(report: &Report, info: quote::HeaderInfo, fmspc: Bytes) -> Result<Claims, VerifyError> {
    if let Some(r) = report.as_sgx() {
        let flags = le_u64(&r.attributes[..8]);
        let debug = flags & 0x2 != 0;
        let m = Measurements::Sgx {
            mr_enclave: Bytes::from(&r.mr_enclave[..]),
            mr_signer: Bytes::from(&r.mr_signer[..]),
            isv_prod_id: r.isv_prod_id,
            isv_svn: r.isv_svn,
            attributes: Bytes::from(&r.attributes[..]),
            misc_select: r.misc_select,
            config_id: Bytes::from(&r.reserved3[32..96]),
            config_svn: u16::from_le_bytes([r.reserved4[0], r.reserved4[1]]),
            isv_ext_prod_id: Bytes::from(&r.reserved1[12..28]),
            isv_family_id: Bytes::from(&r.reserved4[44..60]),
            cpu_svn: Bytes::from(&r.cpu_svn[..]),
            quote_version: info.version,
            fmspc,
        };
        let p = PolicyBits::Sgx {
            attributes_flags: flags,
            debug,
            mode64: flags & 0x4 != 0,
            provision_key: flags & 0x10 != 0,
            einittoken_key: flags & 0x20 != 0,
        };
        return Ok((m, p, debug, Bytes::from(&r.report_data[..])));
    }
    let td = report.as_td10().ok_or_else(|| {
        VerifyError::malformed("DCAP quote", "body", 48, "neither SGX nor TD report")
    })?;
    let td15 = report.as_td15();
    let attrs = le_u64(&td.td_attributes);
    let debug = attrs & 0x1 != 0;
    let body_type = if info.version == 5 {
        info.body_type
    } else {
        quote::BODY_TD10
    };
    let m = Measurements::Tdx {
        mr_td: Bytes::from(&td.mr_td[..]),
        rtmr: [
            Bytes::from(&td.rt_mr0[..]),
            Bytes::from(&td.rt_mr1[..]),
            Bytes::from(&td.rt_mr2[..]),
            Bytes::from(&td.rt_mr3[..]),
        ],
        mr_config_id: Bytes::from(&td.mr_config_id[..]),
        mr_owner: Bytes::from(&td.mr_owner[..]),
        mr_owner_config: Bytes::from(&td.mr_owner_config[..]),
        mr_seam: Bytes::from(&td.mr_seam[..]),
        mr_signer_seam: Bytes::from(&td.mr_signer_seam[..]),
        tee_tcb_svn: Bytes::from(&td.tee_tcb_svn[..]),
        td_attributes: Bytes::from(&td.td_attributes[..]),
        seam_attributes: Bytes::from(&td.seam_attributes[..]),
        xfam: Bytes::from(&td.xfam[..]),
        tee_tcb_svn2: td15.map(|t| Bytes::from(&t.tee_tcb_svn2[..])),
        mr_service_td: td15.map(|t| Bytes::from(&t.mr_service_td[..])),
        quote_version: info.version,
        body_type,
        fmspc,
    };
    let p = PolicyBits::Tdx {
        td_attributes: attrs,
        debug,
        sept_ve_disable: attrs & (1 << 28) != 0,
        pks: attrs & (1 << 30) != 0,
        kl: attrs & (1 << 31) != 0,
    };
    Ok((m, p, debug, Bytes::from(&td.report_data[..])))
}
