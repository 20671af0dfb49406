//! IronClaw verifier: turns attestation evidence (kvm, SEV-SNP, TDX, SGX, Nitro)
//! into one normalized [`AttestationResult`].
//!
//! Everything handed to [`verify`] is untrusted: the evidence bytes, every
//! certificate, the collateral. Trust comes only from the roots pinned in this
//! crate (AMD ARKs for Milan/Genoa/Turin, the Intel SGX Root CA, the AWS Nitro
//! root) and from the verification instant, which is always an input.
//!
//! Module map (untrusted parsers are the `*report*`, `*quote*`, `*document*`,
//! `x509` and `input` modules):
//! - [`result`]: the normalized result type the broker's policy is written against.
//! - [`error`]: why evidence was refused.
//! - [`snp`]: AMD SEV-SNP report parsing, VCEK/VLEK chain, TCB extensions.
//! - [`dcap`]: Intel TDX/SGX DCAP quotes (through dcap-qvl).
//! - [`nitro`]: AWS Nitro attestation documents (COSE_Sign1).
//! - [`kvm`]: IronClaw's own KVM evidence, signed by a host platform key (root of
//!   trust: the host). Through [`verify`], the trusted platform keys are the
//!   `certs` files, each a public JWK (or a JWK Set / array of JWKs).
//! - [`x509`]: certificate parsing, chains, validity.

#![forbid(unsafe_code)]

pub mod dcap;
pub mod error;
pub mod input;
pub mod kvm;
pub mod nitro;
pub mod result;
pub mod snp;
pub mod time;
pub mod x509;

pub use error::VerifyError;
pub use result::{
    AttestationResult, Bytes, CertInfo, Measurements, PolicyBits, TcbInfo, TcbStatus, TeeKind,
};
pub use time::VerifyTime;

/// Everything besides the evidence that a verification needs.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The instant at which certificates and collateral must be valid.
    pub at: VerifyTime,
    /// Certificate files (PEM or DER, any order), each with a name for errors.
    pub certs: Vec<(String, Vec<u8>)>,
    /// DCAP collateral JSON (the `QuoteCollateralV3` layout), if any.
    pub collateral: Option<Vec<u8>>,
}

impl VerifyOptions {
    /// Options with no certificates and no collateral at instant `at`.
    pub fn at(at: VerifyTime) -> Self {
        VerifyOptions {
            at,
            certs: Vec::new(),
            collateral: None,
        }
    }

    /// Parse every certificate file.
    pub fn parsed_certs(&self) -> Result<Vec<x509::Cert>, VerifyError> {
        let mut out = Vec::new();
        for (name, bytes) in &self.certs {
            out.extend(x509::parse_bundle(bytes, name)?);
        }
        Ok(out)
    }
}

/// Verify `evidence` of the given kind. The evidence may be raw bytes, hex text
/// or base64 text. `opts.certs` are used by snp (VCEK/VLEK, ASK/ASVK, ARK), tdx/sgx
/// (PCK chain when the quote carries none) and kvm (trusted platform keys as JWK);
/// a Nitro document carries its own chain and ignores them.
pub fn verify(
    kind: TeeKind,
    evidence: &[u8],
    opts: &VerifyOptions,
) -> Result<AttestationResult, VerifyError> {
    let (bytes, _) = input::decode_evidence(evidence);
    if opts.collateral.is_some() && !matches!(kind, TeeKind::Tdx | TeeKind::Sgx) {
        return Err(VerifyError::Input {
            what: "collateral".to_string(),
            reason: format!("DCAP collateral applies to tdx and sgx evidence, not {kind}"),
        });
    }
    match kind {
        TeeKind::Snp => snp::verify(&bytes, opts),
        TeeKind::Tdx => dcap::verify(&bytes, opts, TeeKind::Tdx),
        TeeKind::Sgx => dcap::verify(&bytes, opts, TeeKind::Sgx),
        TeeKind::Nitro => nitro::verify(&bytes, opts),
        TeeKind::Kvm => kvm::verify(&bytes, &trusted_platform_keys(opts)?, opts.at),
    }
}

/// The platform keys trusted for `kvm` evidence: every `certs` file is a public
/// JWK, a JWK Set (`{"keys": [...]}`) or a JSON array of JWKs.
fn trusted_platform_keys(
    opts: &VerifyOptions,
) -> Result<Vec<p384::ecdsa::VerifyingKey>, VerifyError> {
    let mut keys = Vec::new();
    for (name, bytes) in &opts.certs {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| VerifyError::Input {
                what: format!("platform key file {name}"),
                reason: format!("not a JWK (JSON): {e}"),
            })?;
        let list = match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(ref o) if o.contains_key("keys") => o
                .get("keys")
                .and_then(|k| k.as_array())
                .cloned()
                .unwrap_or_default(),
            other => vec![other],
        };
        for jwk in &list {
            keys.push(kvm::parse_public_jwk(jwk)?);
        }
    }
    if keys.is_empty() {
        return Err(VerifyError::MissingCert {
            what: "a trusted platform key (public JWK, as `ironclaw platform-key` prints it) for kvm evidence"
                .to_string(),
        });
    }
    Ok(keys)
}
