//! The AMD-specific X.509 extensions of VCEK / VLEK certificates (AMD "Versioned
//! Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification"):
//! the TCB the key was derived for and, for VCEKs, the chip's HWID.
//! Untrusted input (the certificate is attacker-supplied until its chain verifies).

use const_oid::ObjectIdentifier;
use der::asn1::OctetStringRef;
use der::Decode;

use crate::error::VerifyError;

pub const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
pub const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
pub const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
pub const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
pub const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
pub const OID_HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// TCB and HWID claimed by a VCEK/VLEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    pub fmc: Option<u8>,
    /// HWID (VCEK only): 64 bytes on Milan/Genoa, 8 on Turin.
    pub hwid: Option<Vec<u8>>,
}

/// Decode one SPL extension value: a DER INTEGER in 0..=255.
pub fn decode_spl(value: &[u8], name: &'static str) -> Result<u8, VerifyError> {
    let v = u64::from_der(value).map_err(|e| VerifyError::CertContent {
        cert: "VCEK/VLEK".to_string(),
        reason: format!("extension {name}: not a DER INTEGER: {e}"),
    })?;
    u8::try_from(v).map_err(|_| VerifyError::CertContent {
        cert: "VCEK/VLEK".to_string(),
        reason: format!("extension {name}: value {v} does not fit an SPL (0..=255)"),
    })
}

/// Decode the HWID extension value: a DER OCTET STRING, or (older KDS encoding) the raw bytes.
pub fn decode_hwid(value: &[u8]) -> Result<Vec<u8>, VerifyError> {
    if let Ok(os) = <&OctetStringRef>::from_der(value) {
        let inner = os.as_bytes();
        if inner.len() == 64 || inner.len() == 8 {
            return Ok(inner.to_vec());
        }
    }
    if value.len() == 64 || value.len() == 8 {
        return Ok(value.to_vec());
    }
    Err(VerifyError::CertContent {
        cert: "VCEK".to_string(),
        reason: format!(
            "extension hwID: {} bytes is neither a 64/8-byte OCTET STRING nor raw 64/8 bytes",
            value.len()
        ),
    })
}

/// Read the TCB extensions through `ext`, a lookup of extension value by OID.
pub fn parse<'a>(
    ext: impl Fn(&ObjectIdentifier) -> Option<&'a [u8]>,
    cert: &str,
) -> Result<KeyTcb, VerifyError> {
    let need = |oid: &ObjectIdentifier, name: &'static str| -> Result<u8, VerifyError> {
        let v = ext(oid).ok_or_else(|| VerifyError::CertContent {
            cert: cert.to_string(),
            reason: format!("missing TCB extension {name} ({oid})"),
        })?;
        decode_spl(v, name).map_err(|e| match e {
            VerifyError::CertContent { reason, .. } => VerifyError::CertContent {
                cert: cert.to_string(),
                reason,
            },
            other => other,
        })
    };
    let fmc = match ext(&OID_FMC_SPL) {
        Some(v) => Some(decode_spl(v, "fmcSPL")?),
        None => None,
    };
    let hwid = match ext(&OID_HWID) {
        Some(v) => Some(decode_hwid(v).map_err(|e| match e {
            VerifyError::CertContent { reason, .. } => VerifyError::CertContent {
                cert: cert.to_string(),
                reason,
            },
            other => other,
        })?),
        None => None,
    };
    Ok(KeyTcb {
        bootloader: need(&OID_BL_SPL, "blSPL")?,
        tee: need(&OID_TEE_SPL, "teeSPL")?,
        snp: need(&OID_SNP_SPL, "snpSPL")?,
        microcode: need(&OID_UCODE_SPL, "ucodeSPL")?,
        fmc,
        hwid,
    })
}
