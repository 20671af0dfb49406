//! AWS Nitro Enclaves: attestation document → leaf certificate → cabundle → the
//! pinned AWS Nitro root (CN=aws.nitro-enclaves, DER SHA-256 641a0321…bb5b).
//!
//! Checks: COSE_Sign1 structure and ES384 ([`document`]); `cabundle[0]` is
//! byte-identical to the pinned root; each certificate signs the next down to the
//! leaf `certificate`, all valid at the instant; the document timestamp is not
//! after the instant and lies in the leaf's validity; the ES384 signature over the
//! COSE Sig_structure verifies with the leaf key (checked first: it is the
//! cheapest way to refuse a forged document). Debug-mode enclaves (PCR0 all
//! zeros, as AWS documents) are reported with `debug: true`.

pub mod document;

use p384::ecdsa::signature::Verifier;

use crate::error::VerifyError;
use crate::result::{
    AttestationResult, Bytes, Measurements, PolicyBits, TcbInfo, TcbStatus, TeeKind,
};
use crate::x509::{parse_bundle, Cert};
use crate::VerifyOptions;
use document::Document;

/// PEM of the AWS Nitro Enclaves root G1.
pub const AWS_NITRO_ROOT_PEM: &[u8] = include_bytes!("AWS_NitroEnclaves_Root-G1.pem");

/// The pinned root.
pub fn root() -> Result<Cert, VerifyError> {
    parse_bundle(AWS_NITRO_ROOT_PEM, "built-in AWS Nitro root")?
        .into_iter()
        .next()
        .ok_or_else(|| VerifyError::UntrustedRoot {
            reason: "built-in AWS Nitro root missing".to_string(),
        })
}

/// Verify a Nitro attestation document.
pub fn verify(bytes: &[u8], opts: &VerifyOptions) -> Result<AttestationResult, VerifyError> {
    let doc = Document::parse(bytes)?;
    let root = root()?;
    let first = doc
        .cabundle
        .first()
        .ok_or_else(|| VerifyError::MissingCert {
            what: "cabundle is empty".to_string(),
        })?;
    if first.as_slice() != root.der() {
        return Err(VerifyError::UntrustedRoot {
            reason: "cabundle[0] is not the pinned AWS Nitro Enclaves root".to_string(),
        });
    }
    let leaf = Cert::from_der(&doc.certificate, "certificate")?;
    // The document signature first: it is one ECDSA verification, and a forged or
    // corrupted document is refused before any chain work.
    let key = leaf.p384_key()?;
    doc.sign1
        .verify_signature(b"", |sig, tbs| {
            let s = p384::ecdsa::Signature::from_slice(sig).map_err(|_| ())?;
            key.verify(tbs, &s).map_err(|_| ())
        })
        .map_err(|()| VerifyError::BadSignature {
            what: "Nitro attestation document (COSE_Sign1 ES384)",
            cert: leaf.subject().to_string(),
        })?;
    let mut chain = vec![root];
    for (i, der) in doc.cabundle.iter().enumerate().skip(1) {
        let c = Cert::from_der(der, &format!("cabundle[{i}]"))?;
        let issuer = chain.last().ok_or_else(|| VerifyError::MissingCert {
            what: "issuer".to_string(),
        })?;
        c.verify_signed_by(issuer)?;
        chain.push(c);
    }
    let issuer = chain.last().ok_or_else(|| VerifyError::MissingCert {
        what: "issuer".to_string(),
    })?;
    leaf.verify_signed_by(issuer)?;
    chain.push(leaf.clone());
    for c in &chain {
        c.check_validity(opts.at)?;
    }
    let ts_secs = i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX);
    if ts_secs > opts.at.unix() {
        return Err(VerifyError::malformed(
            "Nitro attestation document",
            "timestamp",
            doc.offset,
            format!(
                "{} is after the verification instant {}",
                crate::time::unix_to_rfc3339(ts_secs),
                opts.at.to_rfc3339()
            ),
        ));
    }
    leaf.check_validity(crate::VerifyTime::from_unix(ts_secs))
        .map_err(|e| {
            VerifyError::malformed(
                "Nitro attestation document",
                "timestamp",
                doc.offset,
                format!("outside the signing certificate's validity: {e}"),
            )
        })?;

    let debug = doc.pcrs.get(&0).is_some_and(|p| p.iter().all(|b| *b == 0));
    let mut signer_chain: Vec<_> = chain.iter().map(Cert::info).collect();
    signer_chain.reverse();
    Ok(AttestationResult {
        tee: TeeKind::Nitro,
        measurements: Measurements::Nitro {
            module_id: doc.module_id,
            digest: doc.digest,
            pcrs: doc.pcrs.into_iter().map(|(k, v)| (k, Bytes(v))).collect(),
            timestamp_ms: doc.timestamp_ms,
        },
        report_data: None,
        user_data: doc.user_data.map(Bytes),
        nonce: doc.nonce.map(Bytes),
        public_key: doc.public_key.map(Bytes),
        debug,
        policy: PolicyBits::Nitro {},
        tcb: TcbInfo {
            status: TcbStatus::NotEvaluated,
            advisory_ids: Vec::new(),
            note: "AWS Nitro publishes no TCB status".to_string(),
        },
        signer_chain,
        verified_at: opts.at.to_rfc3339(),
    })
}
