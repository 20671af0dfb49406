//! AMD SEV-SNP: report → VCEK/VLEK → ASK/ASVK → pinned ARK (Milan, Genoa, Turin).
//!
//! Order of checks: parse the report (structure, version, algorithm), build the
//! VCEK/VLEK's chain to a built-in ARK (RSA-PSS SHA-384 signatures; a certificate
//! not issued by AMD is named as such before anything it claims is used), check
//! every certificate's validity at the instant, verify the report's ECDSA P-384
//! signature, then compare the reported TCB with the
//! key's TCB extensions and, for VCEKs, the HWID with CHIP_ID.

pub mod report;
mod roots;
pub mod vcek_ext;

use p384::ecdsa::signature::Verifier;

use crate::error::VerifyError;
use crate::result::{
    AttestationResult, Bytes, Measurements, PolicyBits, TcbInfo, TcbStatus, TeeKind,
};
use crate::x509::Cert;
use crate::VerifyOptions;
use report::{Product, Report, SigningKey, REPORT_LEN, SIGNED_LEN};

/// The built-in ARKs (for tests and tools).
pub fn builtin_arks() -> Result<Vec<(Product, Cert)>, VerifyError> {
    roots::arks()
}

/// The built-in ASKs and ASVKs (for tests and tools).
pub fn builtin_intermediates() -> Result<Vec<Cert>, VerifyError> {
    roots::intermediates()
}

/// Length of the MSG_REPORT_RSP header (status, report_size, reserved) before the report.
const RSP_HEADER_LEN: usize = 0x20;

/// The report inside the containers it is commonly saved in: the bare 1184-byte
/// `ATTESTATION_REPORT`; the guest driver's `MSG_REPORT_RSP` (status 0, report_size
/// 0x4A0, 24 reserved bytes, then the report); an Azure vTPM "HCLA" report, whose
/// SNP report sits at offset 0x20 (only the SNP report is verified, not the HCL
/// wrapper or its runtime claims).
pub fn unwrap_container(b: &[u8]) -> Result<&[u8], VerifyError> {
    let inner = || {
        b.get(RSP_HEADER_LEN..RSP_HEADER_LEN + REPORT_LEN)
            .ok_or_else(|| {
                VerifyError::malformed("SEV-SNP report", "report", RSP_HEADER_LEN, "truncated")
            })
    };
    if b.len() == REPORT_LEN {
        return Ok(b);
    }
    if b.starts_with(b"HCLA") {
        return inner();
    }
    if b.len() == RSP_HEADER_LEN + REPORT_LEN
        && b.get(4..8) == Some(&(REPORT_LEN as u32).to_le_bytes()[..])
    {
        let status = b
            .get(0..4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_le_bytes)
            .unwrap_or(u32::MAX);
        if status != 0 {
            return Err(VerifyError::malformed(
                "SEV-SNP MSG_REPORT_RSP",
                "status",
                0,
                format!("{status:#x}: the firmware reported an error, there is no report"),
            ));
        }
        return inner();
    }
    Ok(b)
}

/// Verify a SEV-SNP report (bare, or in a container [`unwrap_container`] knows).
pub fn verify(bytes: &[u8], opts: &VerifyOptions) -> Result<AttestationResult, VerifyError> {
    let bytes = unwrap_container(bytes)?;
    let report = Report::parse(bytes)?;
    // Bytes after the two signature components are reserved and must be zero:
    // they are not covered by the signature, so they may carry nothing.
    if let Some(pos) = bytes
        .get(0x330..REPORT_LEN)
        .and_then(|r| r.iter().position(|b| *b != 0))
    {
        return Err(VerifyError::malformed(
            "SEV-SNP report",
            "SIGNATURE (reserved)",
            0x330 + pos,
            "reserved signature bytes must be zero",
        ));
    }
    let supplied = opts.parsed_certs()?;
    let role = match report.signing_key {
        SigningKey::Vcek => "SEV-VCEK",
        SigningKey::Vlek => "SEV-VLEK",
    };
    // Candidate signing keys: every supplied P-384 certificate, those named for the
    // report's SIGNING_KEY first (so their error is the one reported if all fail).
    let role_cn = format!("CN={role}");
    let mut leaves: Vec<&Cert> = supplied.iter().filter(|c| c.p384_key().is_ok()).collect();
    leaves.sort_by_key(|c| !c.subject().contains(&role_cn));
    if leaves.is_empty() {
        return Err(VerifyError::MissingCert {
            what: format!(
                "the report is signed by a {} (SIGNING_KEY): pass its certificate with --cert",
                &role[4..]
            ),
        });
    }
    let mut first_err = None;
    for leaf in leaves {
        match verify_with_leaf(&report, bytes, leaf, role, &supplied, opts) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(VerifyError::MissingCert {
        what: role.to_string(),
    }))
}

fn verify_with_leaf(
    report: &Report,
    bytes: &[u8],
    leaf: &Cert,
    role: &str,
    supplied: &[Cert],
    opts: &VerifyOptions,
) -> Result<AttestationResult, VerifyError> {
    if !leaf.subject().contains(&format!("CN={role}")) {
        return Err(VerifyError::CertContent {
            cert: leaf.subject().to_string(),
            reason: format!(
                "the report's SIGNING_KEY field says it is signed by a {role} certificate"
            ),
        });
    }

    let (intermediate, ark, product) = build_chain(leaf, supplied)?;
    for c in [leaf, &intermediate, &ark] {
        c.check_validity(opts.at)?;
    }

    // The report signature over bytes 0..0x2A0.
    let key = leaf.p384_key()?;
    let sig = p384::ecdsa::Signature::from_scalars(report.sig_r, report.sig_s).map_err(|_| {
        VerifyError::malformed(
            "SEV-SNP report",
            "SIGNATURE",
            0x2A0,
            "r or s is not a valid P-384 scalar",
        )
    })?;
    let signed = bytes
        .get(..SIGNED_LEN)
        .ok_or_else(|| VerifyError::malformed("SEV-SNP report", "report", 0, "too short"))?;
    key.verify(signed, &sig)
        .map_err(|_| VerifyError::BadSignature {
            what: "SEV-SNP report",
            cert: leaf.subject().to_string(),
        })?;

    // CPUID family (v3+) must agree with the product of the chain.
    if let Some((fam, _, _)) = report.cpuid {
        let fam_product = match fam {
            0x19 => Some("Milan or Genoa"),
            0x1A => Some("Turin"),
            _ => None,
        };
        let agrees = match fam {
            0x19 => matches!(product, Product::Milan | Product::Genoa),
            0x1A => product == Product::Turin,
            _ => true,
        };
        if !agrees {
            return Err(VerifyError::Mismatch {
                field: "CPUID_FAM_ID",
                evidence: format!("{fam:#x} ({})", fam_product.unwrap_or("?")),
                cert: ark.subject().to_string(),
                cert_value: product.name().to_string(),
            });
        }
    }

    // Reported TCB against the key's TCB extensions.
    let key_tcb = vcek_ext::parse(|oid| leaf.extension(oid), leaf.subject())?;
    let reported = report.reported_tcb.decode(product);
    let pairs = [
        (
            "REPORTED_TCB.BOOT_LOADER",
            reported.bootloader,
            key_tcb.bootloader,
        ),
        ("REPORTED_TCB.TEE", reported.tee, key_tcb.tee),
        ("REPORTED_TCB.SNP", reported.snp, key_tcb.snp),
        (
            "REPORTED_TCB.MICROCODE",
            reported.microcode,
            key_tcb.microcode,
        ),
    ];
    for (field, ev, cv) in pairs {
        if ev != cv {
            return Err(VerifyError::Mismatch {
                field,
                evidence: ev.to_string(),
                cert: leaf.subject().to_string(),
                cert_value: cv.to_string(),
            });
        }
    }
    if product == Product::Turin {
        if let (Some(ev), Some(cv)) = (reported.fmc, key_tcb.fmc) {
            if ev != cv {
                return Err(VerifyError::Mismatch {
                    field: "REPORTED_TCB.FMC",
                    evidence: ev.to_string(),
                    cert: leaf.subject().to_string(),
                    cert_value: cv.to_string(),
                });
            }
        }
    }
    if report.signing_key == SigningKey::Vcek && !report.mask_chip_id {
        let hwid = key_tcb
            .hwid
            .as_ref()
            .ok_or_else(|| VerifyError::CertContent {
                cert: leaf.subject().to_string(),
                reason: "VCEK has no hwID extension".to_string(),
            })?;
        let chip = report.chip_id.get(..hwid.len()).unwrap_or_default();
        if chip != hwid.as_slice() {
            return Err(VerifyError::Mismatch {
                field: "CHIP_ID",
                evidence: hex::encode(report.chip_id),
                cert: leaf.subject().to_string(),
                cert_value: hex::encode(hwid),
            });
        }
    }

    let p = report.policy;
    let pi = report.platform_info;
    let cpuid = report.cpuid;
    Ok(AttestationResult {
        tee: TeeKind::Snp,
        measurements: Measurements::Snp {
            measurement: Bytes::from(&report.measurement[..]),
            host_data: Bytes::from(&report.host_data[..]),
            id_key_digest: Bytes::from(&report.id_key_digest[..]),
            author_key_digest: Bytes::from(&report.author_key_digest[..]),
            family_id: Bytes::from(&report.family_id[..]),
            image_id: Bytes::from(&report.image_id[..]),
            report_id: Bytes::from(&report.report_id[..]),
            report_id_ma: Bytes::from(&report.report_id_ma[..]),
            chip_id: Bytes::from(&report.chip_id[..]),
            guest_svn: report.guest_svn,
            vmpl: report.vmpl,
            version: report.version,
            current_tcb: report.current_tcb.decode(product),
            reported_tcb: reported,
            committed_tcb: report.committed_tcb.decode(product),
            launch_tcb: report.launch_tcb.decode(product),
            cpuid_fam_id: cpuid.map(|c| c.0),
            cpuid_mod_id: cpuid.map(|c| c.1),
            cpuid_step: cpuid.map(|c| c.2),
        },
        report_data: Some(Bytes::from(&report.report_data[..])),
        user_data: None,
        nonce: None,
        public_key: None,
        debug: report.debug_allowed(),
        policy: PolicyBits::Snp {
            raw: p,
            abi_minor: (p & 0xff) as u8,
            abi_major: ((p >> 8) & 0xff) as u8,
            smt_allowed: p & (1 << 16) != 0,
            migrate_ma_allowed: p & (1 << 18) != 0,
            debug_allowed: p & (1 << 19) != 0,
            single_socket_required: p & (1 << 20) != 0,
            platform_info: pi,
            smt_enabled: pi & 1 != 0,
            tsme_enabled: pi & 2 != 0,
            signing_key: match report.signing_key {
                SigningKey::Vcek => 0,
                SigningKey::Vlek => 1,
            },
            mask_chip_id: report.mask_chip_id,
        },
        tcb: TcbInfo {
            status: TcbStatus::NotEvaluated,
            advisory_ids: Vec::new(),
            note: format!(
                "{} {}: REPORTED_TCB matches the key's TCB extensions (bl={} tee={} snp={} ucode={}); AMD signs no TCB status",
                product.name(),
                &role[4..],
                reported.bootloader,
                reported.tee,
                reported.snp,
                reported.microcode
            ),
        },
        signer_chain: vec![leaf.info(), intermediate.info(), ark.info()],
        verified_at: opts.at.to_rfc3339(),
    })
}

/// Chain `leaf` to a built-in ARK through an ASK/ASVK (supplied or built in).
fn build_chain(leaf: &Cert, supplied: &[Cert]) -> Result<(Cert, Cert, Product), VerifyError> {
    let arks = roots::arks()?;
    // A supplied certificate claiming to be an ARK must be byte-identical to the pinned one.
    for s in supplied {
        if let Some((_, pinned)) = arks.iter().find(|(_, a)| a.subject() == s.subject()) {
            if pinned.der() != s.der() {
                return Err(VerifyError::UntrustedRoot {
                    reason: format!(
                        "supplied certificate {:?} is not the built-in AMD root of that name",
                        s.subject()
                    ),
                });
            }
        }
    }
    let mut pool: Vec<Cert> = Vec::new();
    for c in supplied.iter().cloned().chain(roots::intermediates()?) {
        if c.subject() == leaf.issuer() && c.issuer() != c.subject() && !pool.contains(&c) {
            pool.push(c);
        }
    }
    if pool.is_empty() {
        return Err(VerifyError::MissingCert {
            what: format!(
                "issuer {:?} of {:?}: pass the ASK/ASVK with --cert",
                leaf.issuer(),
                leaf.subject()
            ),
        });
    }
    let mut first_err = None;
    for inter in pool {
        let res = leaf.verify_signed_by(&inter).and_then(|()| {
            let (product, ark) = arks
                .iter()
                .find(|(_, a)| a.subject() == inter.issuer())
                .ok_or_else(|| VerifyError::UntrustedRoot {
                    reason: format!(
                        "{:?} is issued by {:?}, which is not a built-in AMD ARK",
                        inter.subject(),
                        inter.issuer()
                    ),
                })?;
            inter.verify_signed_by(ark)?;
            Ok((ark.clone(), *product))
        });
        match res {
            Ok((ark, product)) => return Ok((inter, ark, product)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(VerifyError::UntrustedRoot {
        reason: "no chain to an AMD root".to_string(),
    }))
}
