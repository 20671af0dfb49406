//! Intel DCAP quote structure (Intel "SGX ECDSA Quote Library API" / "TDX DCAP
//! Quoting Library API": quote v3 for SGX, v4 and v5 for TDX). Untrusted input.
//!
//! The header and v5 body descriptor are checked here first so that an error names
//! the field and byte offset; the full structure is then decoded with dcap-qvl's
//! `Quote` (the same decoder its verifier uses), and the number of bytes it consumed
//! is checked against the input (only zero padding may follow a quote).

use dcap_qvl::quote::{AuthData, Quote};
use parity_scale_codec::Decode;

use crate::error::VerifyError;

const FORMAT: &str = "DCAP quote";

/// Header length (all versions).
pub const HEADER_LEN: usize = 48;
/// TEE_TYPE values.
pub const TEE_TYPE_SGX: u32 = 0x0000_0000;
pub const TEE_TYPE_TDX: u32 = 0x0000_0081;
/// Intel's QE vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// v5 body types.
pub const BODY_SGX: u16 = 1;
pub const BODY_TD10: u16 = 2;
pub const BODY_TD15: u16 = 3;
pub const BODY_TD15_EX: u16 = 4;

/// Certification data type 6: QE report certification data (v4/v5 outer type).
pub const CERT_TYPE_QE_REPORT: u16 = 6;

fn q_signed_len(q: &Quote) -> usize {
    q.signed_length()
}

/// What the header says, before the body is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub version: u16,
    pub tee_type: u32,
    /// 0 for v3/v4 (no body descriptor).
    pub body_type: u16,
}

fn le16(b: &[u8], off: usize, field: &'static str) -> Result<u16, VerifyError> {
    b.get(off..off + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| {
            VerifyError::malformed(
                FORMAT,
                field,
                off,
                format!("quote is only {} bytes", b.len()),
            )
        })
}

fn le32(b: &[u8], off: usize, field: &'static str) -> Result<u32, VerifyError> {
    b.get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| {
            VerifyError::malformed(
                FORMAT,
                field,
                off,
                format!("quote is only {} bytes", b.len()),
            )
        })
}

/// Check the header fields a verifier must understand before trusting anything else.
pub fn check_header(b: &[u8]) -> Result<HeaderInfo, VerifyError> {
    let version = le16(b, 0, "header.version")?;
    if !(3..=5).contains(&version) {
        return Err(VerifyError::Unsupported {
            format: FORMAT,
            field: "header.version",
            found: u64::from(version),
            supported: "3 (SGX), 4 and 5 (TDX, SGX)",
        });
    }
    let ak = le16(b, 2, "header.att_key_type")?;
    if ak != 2 {
        return Err(VerifyError::Unsupported {
            format: FORMAT,
            field: "header.att_key_type",
            found: u64::from(ak),
            supported: "2 (ECDSA-256 with P-256)",
        });
    }
    let tee_type = le32(b, 4, "header.tee_type")?;
    if tee_type != TEE_TYPE_SGX && tee_type != TEE_TYPE_TDX {
        return Err(VerifyError::Unsupported {
            format: FORMAT,
            field: "header.tee_type",
            found: u64::from(tee_type),
            supported: "0x00 (SGX), 0x81 (TDX)",
        });
    }
    if version == 3 && tee_type != TEE_TYPE_SGX {
        return Err(VerifyError::malformed(
            FORMAT,
            "header.tee_type",
            4,
            "a version 3 quote is always SGX",
        ));
    }
    let vendor = b
        .get(12..28)
        .ok_or_else(|| VerifyError::malformed(FORMAT, "header.qe_vendor_id", 12, "truncated"))?;
    if vendor != INTEL_QE_VENDOR_ID {
        return Err(VerifyError::malformed(
            FORMAT,
            "header.qe_vendor_id",
            12,
            format!("{} is not Intel's QE vendor id", hex::encode(vendor)),
        ));
    }
    let body_type = if version == 5 {
        let t = le16(b, HEADER_LEN, "body.type")?;
        let expected_size: u32 = match t {
            BODY_SGX => 384,
            BODY_TD10 => 584,
            BODY_TD15 => 648,
            BODY_TD15_EX => 885,
            other => {
                return Err(VerifyError::Unsupported {
                    format: FORMAT,
                    field: "body.type",
                    found: u64::from(other),
                    supported: "1 (SGX), 2 (TD 1.0), 3 (TD 1.5), 4 (TD 1.5 ex)",
                })
            }
        };
        if (t == BODY_SGX) != (tee_type == TEE_TYPE_SGX) {
            return Err(VerifyError::malformed(
                FORMAT,
                "body.type",
                HEADER_LEN,
                "body type does not match header.tee_type",
            ));
        }
        let size = le32(b, HEADER_LEN + 2, "body.size")?;
        if size != expected_size {
            return Err(VerifyError::malformed(
                FORMAT,
                "body.size",
                HEADER_LEN + 2,
                format!("{size}, body type {t} is {expected_size} bytes"),
            ));
        }
        t
    } else {
        0
    };
    Ok(HeaderInfo {
        version,
        tee_type,
        body_type,
    })
}

/// Parse a whole quote. Returns the quote and its length (bytes consumed).
pub fn parse(b: &[u8]) -> Result<(HeaderInfo, Quote, usize), VerifyError> {
    let info = check_header(b)?;
    let mut rest = b;
    let quote = Quote::decode(&mut rest).map_err(|e| {
        VerifyError::malformed(
            FORMAT,
            "quote",
            HEADER_LEN,
            format!("cannot decode body / signature data: {e}"),
        )
    })?;
    let used = b.len() - rest.len();
    // Certification data types (Intel quote library spec): the v4/v5 outer one must
    // be 6 (QE report certification data); the one naming the PCK must be 1..=5.
    let auth_start = q_signed_len(&quote) + 4;
    let inner_type = match &quote.auth_data {
        AuthData::V4(a) => {
            if a.certification_data.cert_type != CERT_TYPE_QE_REPORT {
                return Err(VerifyError::malformed(
                    FORMAT,
                    "auth_data.certification_data.type",
                    auth_start + 128,
                    format!(
                        "{} (a version 4/5 quote carries type 6, QE report certification data)",
                        a.certification_data.cert_type
                    ),
                ));
            }
            a.qe_report_data.certification_data.cert_type
        }
        AuthData::V3(a) => a.certification_data.cert_type,
    };
    if !(1..=5).contains(&inner_type) {
        return Err(VerifyError::Unsupported {
            format: FORMAT,
            field: "QE certification data type",
            found: u64::from(inner_type),
            supported: "1-5 (PPID variants, PCK certificate, PCK certificate chain)",
        });
    }
    if let Some(pos) = rest.iter().position(|x| *x != 0) {
        return Err(VerifyError::malformed(
            FORMAT,
            "trailing data",
            used + pos,
            "non-zero bytes after the end of the quote",
        ));
    }
    Ok((info, quote, used))
}
