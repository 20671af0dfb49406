//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP ABI specification,
//! "ATTESTATION_REPORT Structure"): 1184 bytes, little-endian, the signature over
//! bytes `0x000..0x2A0`. Untrusted input: every read is bounds-checked and every
//! error names the field and its byte offset.

use crate::error::VerifyError;

const FORMAT: &str = "SEV-SNP report";

/// Size of the report structure.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes `0..SIGNED_LEN` are covered by the signature.
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions this parser understands: 2 (firmware 1.51+), 3 (adds CPUID
/// family/model/stepping, 1.55+), 4 and 5 (same layout; 5 adds the mitigation
/// vectors in formerly reserved bytes). Anything else is refused.
pub const SUPPORTED_VERSIONS: &str = "2, 3, 4, 5";
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Which key signed the report (the SIGNING_KEY field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    Vcek,
    Vlek,
}

/// A raw 64-bit TCB_VERSION; its byte layout depends on the product (see `decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTcb(pub u64);

/// Parsed report. Byte arrays are copied out; `signed` is the signed region.
#[derive(Clone, Debug)]
pub struct Report {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: RawTcb,
    pub platform_info: u64,
    pub author_key_en: bool,
    pub mask_chip_id: bool,
    pub signing_key: SigningKey,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: RawTcb,
    /// CPUID family / model / stepping (version 3+; `None` for version 2).
    pub cpuid: Option<(u8, u8, u8)>,
    pub chip_id: [u8; 64],
    pub committed_tcb: RawTcb,
    pub launch_tcb: RawTcb,
    /// ECDSA signature r and s, big-endian, 48 bytes each.
    pub sig_r: [u8; 48],
    pub sig_s: [u8; 48],
}

fn bytes<const N: usize>(
    b: &[u8],
    off: usize,
    field: &'static str,
) -> Result<[u8; N], VerifyError> {
    let end = off
        .checked_add(N)
        .ok_or_else(|| VerifyError::malformed(FORMAT, field, off, "offset overflow"))?;
    b.get(off..end)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| {
            VerifyError::malformed(
                FORMAT,
                field,
                off,
                format!("needs {N} bytes, report is {} bytes", b.len()),
            )
        })
}

fn u32_at(b: &[u8], off: usize, field: &'static str) -> Result<u32, VerifyError> {
    Ok(u32::from_le_bytes(bytes::<4>(b, off, field)?))
}

fn u64_at(b: &[u8], off: usize, field: &'static str) -> Result<u64, VerifyError> {
    Ok(u64::from_le_bytes(bytes::<8>(b, off, field)?))
}

/// The 72-byte little-endian signature component at `off`, as a 48-byte
/// big-endian P-384 scalar. The 24 high bytes must be zero.
fn sig_component(b: &[u8], off: usize, field: &'static str) -> Result<[u8; 48], VerifyError> {
    let le = bytes::<72>(b, off, field)?;
    if le.iter().skip(48).any(|x| *x != 0) {
        return Err(VerifyError::malformed(
            FORMAT,
            field,
            off,
            "P-384 scalar has non-zero bytes above byte 48",
        ));
    }
    let mut be = [0u8; 48];
    for (i, v) in be.iter_mut().enumerate() {
        *v = le[47 - i];
    }
    Ok(be)
}

impl Report {
    /// Parse exactly one report. Trailing bytes are refused (the report is a
    /// fixed-size structure; anything after it is not covered by anything).
    pub fn parse(b: &[u8]) -> Result<Report, VerifyError> {
        if b.len() != REPORT_LEN {
            return Err(VerifyError::malformed(
                FORMAT,
                "report",
                0,
                format!(
                    "is {} bytes, an ATTESTATION_REPORT is {REPORT_LEN} bytes",
                    b.len()
                ),
            ));
        }
        let version = u32_at(b, 0x00, "VERSION")?;
        if !(2..=5).contains(&version) {
            return Err(VerifyError::Unsupported {
                format: FORMAT,
                field: "VERSION",
                found: u64::from(version),
                supported: SUPPORTED_VERSIONS,
            });
        }
        let signature_algo = u32_at(b, 0x34, "SIGNATURE_ALGO")?;
        if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(VerifyError::Unsupported {
                format: FORMAT,
                field: "SIGNATURE_ALGO",
                found: u64::from(signature_algo),
                supported: "1 (ECDSA P-384 with SHA-384)",
            });
        }
        let flags = u32_at(b, 0x48, "KEY_INFO")?;
        let signing_key = match (flags >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            other => {
                return Err(VerifyError::Unsupported {
                    format: FORMAT,
                    field: "SIGNING_KEY",
                    found: u64::from(other),
                    supported: "0 (VCEK), 1 (VLEK)",
                })
            }
        };
        let cpuid = if version >= 3 {
            let c = bytes::<3>(b, 0x188, "CPUID_FAM_ID")?;
            Some((c[0], c[1], c[2]))
        } else {
            None
        };
        Ok(Report {
            version,
            guest_svn: u32_at(b, 0x04, "GUEST_SVN")?,
            policy: u64_at(b, 0x08, "POLICY")?,
            family_id: bytes(b, 0x10, "FAMILY_ID")?,
            image_id: bytes(b, 0x20, "IMAGE_ID")?,
            vmpl: u32_at(b, 0x30, "VMPL")?,
            signature_algo,
            current_tcb: RawTcb(u64_at(b, 0x38, "CURRENT_TCB")?),
            platform_info: u64_at(b, 0x40, "PLATFORM_INFO")?,
            author_key_en: flags & 1 != 0,
            mask_chip_id: flags & 2 != 0,
            signing_key,
            report_data: bytes(b, 0x50, "REPORT_DATA")?,
            measurement: bytes(b, 0x90, "MEASUREMENT")?,
            host_data: bytes(b, 0xC0, "HOST_DATA")?,
            id_key_digest: bytes(b, 0xE0, "ID_KEY_DIGEST")?,
            author_key_digest: bytes(b, 0x110, "AUTHOR_KEY_DIGEST")?,
            report_id: bytes(b, 0x140, "REPORT_ID")?,
            report_id_ma: bytes(b, 0x160, "REPORT_ID_MA")?,
            reported_tcb: RawTcb(u64_at(b, 0x180, "REPORTED_TCB")?),
            cpuid,
            chip_id: bytes(b, 0x1A0, "CHIP_ID")?,
            committed_tcb: RawTcb(u64_at(b, 0x1E0, "COMMITTED_TCB")?),
            launch_tcb: RawTcb(u64_at(b, 0x1F0, "LAUNCH_TCB")?),
            sig_r: sig_component(b, 0x2A0, "SIGNATURE.R")?,
            sig_s: sig_component(b, 0x2E8, "SIGNATURE.S")?,
        })
    }

    /// DEBUG bit of the guest policy (bit 19).
    pub fn debug_allowed(&self) -> bool {
        self.policy & (1 << 19) != 0
    }
}

/// Product generation: decides the TCB_VERSION byte layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

impl RawTcb {
    /// Decode per product. Milan/Genoa: byte 0 BOOT_LOADER, 1 TEE, 6 SNP,
    /// 7 MICROCODE. Turin: 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 7 MICROCODE.
    pub fn decode(self, product: Product) -> crate::result::SnpTcb {
        let b = self.0.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => crate::result::SnpTcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            },
            Product::Turin => crate::result::SnpTcb {
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                fmc: Some(b[0]),
            },
        }
    }
}
