//! X.509 certificates of attestation chains (AMD KDS, Intel PCS, AWS Nitro).
//!
//! Parsing uses x509-cert's `Raw` profile: AMD issues VCEKs with serialNumber 0,
//! which RFC 5280 forbids for CAs to issue but tells users to handle. Nothing is
//! trusted because it parsed: every certificate is checked by signature up to a
//! pinned root and for validity at the verification instant.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use p384::ecdsa::signature::Verifier;
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::certificate::{CertificateInner, Raw};

use crate::error::VerifyError;
use crate::result::CertInfo;
use crate::time::{unix_to_rfc3339, VerifyTime};

type RawCertificate = CertificateInner<Raw>;

/// ecdsa-with-SHA384 (RFC 5758).
pub const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// ecdsa-with-SHA256 (RFC 5758).
pub const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// RSASSA-PSS (RFC 4055).
pub const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-ecPublicKey.
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 (P-256).
pub const OID_PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// SHA-384.
pub const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// MGF1.
pub const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// A parsed certificate with its DER and display names.
#[derive(Clone, Debug)]
pub struct Cert {
    der: Vec<u8>,
    cert: RawCertificate,
    subject: String,
    issuer: String,
}

impl PartialEq for Cert {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Cert {
    /// Parse one DER certificate. `which` names it in errors (file name, position).
    pub fn from_der(der: &[u8], which: &str) -> Result<Cert, VerifyError> {
        let cert = RawCertificate::from_der(der).map_err(|e| VerifyError::CertParse {
            which: which.to_string(),
            reason: format!("not a DER X.509 certificate: {e}"),
        })?;
        let subject = cert.tbs_certificate().subject().to_string();
        let issuer = cert.tbs_certificate().issuer().to_string();
        Ok(Cert {
            der: der.to_vec(),
            cert,
            subject,
            issuer,
        })
    }

    /// The DER encoding exactly as given.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Subject distinguished name (RFC 4514 string).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Issuer distinguished name (RFC 4514 string).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// True when the subject's common name contains `needle` (case-sensitive).
    pub fn subject_contains(&self, needle: &str) -> bool {
        self.subject.contains(needle)
    }

    fn not_before(&self) -> i64 {
        duration_secs(
            self.cert
                .tbs_certificate()
                .validity()
                .not_before
                .to_unix_duration(),
        )
    }

    fn not_after(&self) -> i64 {
        duration_secs(
            self.cert
                .tbs_certificate()
                .validity()
                .not_after
                .to_unix_duration(),
        )
    }

    /// Summary for the result's signer chain.
    pub fn info(&self) -> CertInfo {
        CertInfo {
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            serial: hex::encode(self.cert.tbs_certificate().serial_number().as_bytes()),
            not_before: unix_to_rfc3339(self.not_before()),
            not_after: unix_to_rfc3339(self.not_after()),
            sha256: hex::encode(Sha256::digest(&self.der)),
        }
    }

    /// Fail unless `at` lies within [notBefore, notAfter].
    pub fn check_validity(&self, at: VerifyTime) -> Result<(), VerifyError> {
        if at.unix() < self.not_before() {
            return Err(VerifyError::CertNotYetValid {
                cert: self.subject.clone(),
                not_before: unix_to_rfc3339(self.not_before()),
                at: at.to_rfc3339(),
            });
        }
        if at.unix() > self.not_after() {
            return Err(VerifyError::CertExpired {
                cert: self.subject.clone(),
                not_after: unix_to_rfc3339(self.not_after()),
                at: at.to_rfc3339(),
            });
        }
        Ok(())
    }

    /// The raw subjectPublicKey bits.
    fn public_key_bits(&self) -> &[u8] {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    /// The subject key as a P-384 ECDSA verifying key (VCEK, VLEK, Nitro certs).
    pub fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey, VerifyError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(VerifyError::CertContent {
                cert: self.subject.clone(),
                reason: format!(
                    "public key algorithm {} is not id-ecPublicKey",
                    spki.algorithm.oid
                ),
            });
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(OID_SECP384R1) {
            return Err(VerifyError::CertContent {
                cert: self.subject.clone(),
                reason: "public key is not on curve secp384r1".to_string(),
            });
        }
        p384::ecdsa::VerifyingKey::from_sec1_bytes(self.public_key_bits()).map_err(|_| {
            VerifyError::CertContent {
                cert: self.subject.clone(),
                reason: "public key is not a valid P-384 point".to_string(),
            }
        })
    }

    /// The subject key as a P-256 ECDSA verifying key (Intel PCK chain).
    pub fn p256_key(&self) -> Result<p256::ecdsa::VerifyingKey, VerifyError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_PRIME256V1) {
            return Err(VerifyError::CertContent {
                cert: self.subject.clone(),
                reason: "public key is not an ECDSA P-256 key".to_string(),
            });
        }
        p256::ecdsa::VerifyingKey::from_sec1_bytes(self.public_key_bits()).map_err(|_| {
            VerifyError::CertContent {
                cert: self.subject.clone(),
                reason: "public key is not a valid P-256 point".to_string(),
            }
        })
    }

    /// Verify that this certificate is signed by `issuer`'s key and names it as issuer.
    /// Supports RSASSA-PSS with SHA-384 (AMD) and ECDSA with SHA-384/SHA-256.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), VerifyError> {
        let fail = |reason: String| VerifyError::CertSignature {
            cert: self.subject.clone(),
            issuer: issuer.subject.clone(),
            reason,
        };
        if self.cert.tbs_certificate().issuer() != issuer.cert.tbs_certificate().subject() {
            return Err(fail(format!(
                "its issuer name is {:?}, not the subject of that certificate",
                self.issuer
            )));
        }
        let alg = self.cert.signature_algorithm();
        let inner_alg = self.cert.tbs_certificate().signature();
        if alg != inner_alg {
            return Err(fail(
                "signatureAlgorithm differs from the TBSCertificate's signature field".to_string(),
            ));
        }
        // Verify over the TBSCertificate bytes exactly as received (not re-encoded).
        let tbs = tbs_bytes(&self.der)
            .ok_or_else(|| fail("cannot locate the TBSCertificate in the DER".to_string()))?;
        let sig = self
            .cert
            .signature()
            .as_bytes()
            .ok_or_else(|| fail("signature BIT STRING has unused bits".to_string()))?;
        if alg.oid == OID_RSASSA_PSS {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| fail("RSASSA-PSS without parameters".to_string()))?;
            let params_der = params
                .to_der()
                .map_err(|e| fail(format!("RSASSA-PSS parameters: {e}")))?;
            let pss = rsa::pkcs1::RsaPssParams::<der::Any>::from_der(&params_der)
                .map_err(|e| fail(format!("RSASSA-PSS parameters: {e}")))?;
            let mgf_hash = pss.mask_gen.parameters.as_ref().map(|p| p.oid);
            if pss.hash.oid != OID_SHA384
                || pss.mask_gen.oid != OID_MGF1
                || mgf_hash != Some(OID_SHA384)
            {
                return Err(fail(
                    "RSASSA-PSS parameters are not SHA-384 with MGF1-SHA-384".to_string(),
                ));
            }
            let key = rsa::PublicKey::from_pkcs1_der(issuer.public_key_bits())
                .map_err(|e| fail(format!("issuer key is not an RSA public key: {e}")))?;
            let vk =
                rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key, usize::from(pss.salt_len));
            let s = rsa::pss::Signature::try_from(sig)
                .map_err(|e| fail(format!("malformed RSA signature: {e}")))?;
            vk.verify(tbs, &s)
                .map_err(|_| fail("RSASSA-PSS signature is invalid".to_string()))
        } else if alg.oid == OID_ECDSA_SHA384 || alg.oid == OID_ECDSA_SHA256 {
            let ikey_spki = issuer.cert.tbs_certificate().subject_public_key_info();
            let curve = ikey_spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if curve == Some(OID_SECP384R1) {
                let key = issuer.p384_key().map_err(|e| fail(e.to_string()))?;
                let s = p384::ecdsa::DerSignature::try_from(sig)
                    .map_err(|e| fail(format!("malformed ECDSA signature: {e}")))?;
                let ok = if alg.oid == OID_ECDSA_SHA384 {
                    key.verify(tbs, &s).is_ok()
                } else {
                    use p384::ecdsa::signature::hazmat::PrehashVerifier;
                    let digest = sha2::Sha256::digest(tbs);
                    let s = p384::ecdsa::Signature::from_der(sig)
                        .map_err(|e| fail(format!("malformed ECDSA signature: {e}")))?;
                    key.verify_prehash(&digest, &s).is_ok()
                };
                if ok {
                    Ok(())
                } else {
                    Err(fail("ECDSA signature is invalid".to_string()))
                }
            } else if curve == Some(OID_PRIME256V1) {
                let key = issuer.p256_key().map_err(|e| fail(e.to_string()))?;
                let s = p256::ecdsa::Signature::from_der(sig)
                    .map_err(|e| fail(format!("malformed ECDSA signature: {e}")))?;
                let ok = if alg.oid == OID_ECDSA_SHA256 {
                    key.verify(tbs, &s).is_ok()
                } else {
                    use p256::ecdsa::signature::hazmat::PrehashVerifier;
                    key.verify_prehash(&Sha384::digest(tbs), &s).is_ok()
                };
                if ok {
                    Ok(())
                } else {
                    Err(fail("ECDSA signature is invalid".to_string()))
                }
            } else {
                Err(fail(
                    "issuer key curve is not supported (P-256 and P-384)".to_string(),
                ))
            }
        } else {
            Err(fail(format!(
                "signature algorithm {} is not supported",
                alg.oid
            )))
        }
    }

    /// The value (inner OCTET STRING contents) of the extension with `oid`, if present.
    pub fn extension(&self, oid: &ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// SHA-384 of the DER (used for pin comparisons).
    pub fn sha384(&self) -> Vec<u8> {
        Sha384::digest(&self.der).to_vec()
    }
}

fn duration_secs(d: core::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Parse every certificate in a PEM file or a DER file (one certificate, or several
/// concatenated). `name` is used in error messages.
pub fn parse_bundle(bytes: &[u8], name: &str) -> Result<Vec<Cert>, VerifyError> {
    let text_start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let rest = bytes.get(text_start..).unwrap_or_default();
    if rest.starts_with(b"-----BEGIN") || contains(bytes, b"-----BEGIN CERTIFICATE-----") {
        return parse_pem_bundle(bytes, name);
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let remaining = bytes.get(pos..).unwrap_or_default();
        if remaining.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            break;
        }
        let len = der_element_len(remaining).ok_or_else(|| VerifyError::CertParse {
            which: format!("{name} at byte offset {pos:#x}"),
            reason: "neither PEM nor a DER SEQUENCE".to_string(),
        })?;
        let der = remaining.get(..len).ok_or_else(|| VerifyError::CertParse {
            which: format!("{name} at byte offset {pos:#x}"),
            reason: format!("DER element of {len} bytes runs past the end of the file"),
        })?;
        out.push(Cert::from_der(
            der,
            &format!("{name} at byte offset {pos:#x}"),
        )?);
        pos = pos.checked_add(len).ok_or_else(|| VerifyError::CertParse {
            which: name.to_string(),
            reason: "length overflow".to_string(),
        })?;
    }
    if out.is_empty() {
        return Err(VerifyError::CertParse {
            which: name.to_string(),
            reason: "no certificate in the file".to_string(),
        });
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// (header length, total length) of the DER SEQUENCE at the start of `b`.
fn der_sequence_header(b: &[u8]) -> Option<(usize, usize)> {
    if *b.first()? != 0x30 {
        return None;
    }
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, 2usize.checked_add(usize::from(first))?));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = len
            .checked_mul(256)?
            .checked_add(usize::from(*b.get(2 + i)?))?;
    }
    let hdr = 2usize.checked_add(n)?;
    Some((hdr, len.checked_add(hdr)?))
}

/// Total length (header + content) of the DER SEQUENCE at the start of `b`.
fn der_element_len(b: &[u8]) -> Option<usize> {
    der_sequence_header(b).map(|(_, total)| total)
}

/// The TBSCertificate element (first element of the Certificate SEQUENCE), as received.
fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let (hdr, _) = der_sequence_header(cert_der)?;
    let inner = cert_der.get(hdr..)?;
    let len = der_element_len(inner)?;
    inner.get(..len)
}

fn parse_pem_bundle(bytes: &[u8], name: &str) -> Result<Vec<Cert>, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| VerifyError::CertParse {
        which: name.to_string(),
        reason: format!("PEM file is not UTF-8: {e}"),
    })?;
    let mut out = Vec::new();
    let mut rest = text;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let mut index = 0usize;
    while let Some(start) = rest.find(begin) {
        let after = rest.get(start..).unwrap_or_default();
        let stop = after.find(end).ok_or_else(|| VerifyError::CertParse {
            which: format!("{name} PEM block #{index}"),
            reason: "BEGIN CERTIFICATE without END CERTIFICATE".to_string(),
        })?;
        let block_len = stop + end.len();
        let block = after.get(..block_len).unwrap_or_default();
        let (label, der) =
            der::pem::decode_vec(block.as_bytes()).map_err(|e| VerifyError::CertParse {
                which: format!("{name} PEM block #{index}"),
                reason: format!("bad PEM: {e}"),
            })?;
        if label != "CERTIFICATE" {
            return Err(VerifyError::CertParse {
                which: format!("{name} PEM block #{index}"),
                reason: format!("label {label:?} is not CERTIFICATE"),
            });
        }
        out.push(Cert::from_der(&der, &format!("{name} PEM block #{index}"))?);
        index += 1;
        rest = after.get(block_len..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(VerifyError::CertParse {
            which: name.to_string(),
            reason: "no CERTIFICATE block in the PEM file".to_string(),
        });
    }
    Ok(out)
}
