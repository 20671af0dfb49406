//! The normalized attestation result every evidence kind verifies into.
//!
//! This is the type the broker's policy is written against. It is part of the
//! crate's stable API: fields are only ever added (with `#[serde(default)]`), never
//! renamed or removed. Byte strings serialize as lowercase hex.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which kind of trusted execution environment produced the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Intel TDX DCAP quote (v4/v5).
    Tdx,
    /// Intel SGX DCAP quote (v3).
    Sgx,
    /// AWS Nitro Enclaves attestation document.
    Nitro,
    /// IronClaw's own KVM evidence, signed by a host platform key (root of trust: the host).
    Kvm,
}

impl TeeKind {
    /// Lowercase name as used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
            TeeKind::Sgx => "sgx",
            TeeKind::Nitro => "nitro",
            TeeKind::Kvm => "kvm",
        }
    }

    /// True for kinds whose root of trust is CPU / platform hardware (not the host).
    pub fn is_hardware(self) -> bool {
        !matches!(self, TeeKind::Kvm)
    }
}

impl std::fmt::Display for TeeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TeeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snp" | "sev-snp" => Ok(TeeKind::Snp),
            "tdx" => Ok(TeeKind::Tdx),
            "sgx" => Ok(TeeKind::Sgx),
            "nitro" => Ok(TeeKind::Nitro),
            "kvm" => Ok(TeeKind::Kvm),
            other => Err(format!(
                "unknown TEE kind {other:?} (expected snp, tdx, sgx, nitro or kvm)"
            )),
        }
    }
}

/// A byte string that serializes as lowercase hex.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The raw bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
    /// True when every byte is zero (or the string is empty).
    pub fn is_all_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Bytes).map_err(serde::de::Error::custom)
    }
}

/// TCB status of the platform, with Intel's names (SNP and Nitro carry no
/// vendor-signed status: they report `NotEvaluated`, see `TcbInfo::note`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// No status could be derived (no collateral given, or the TEE kind has none).
    NotEvaluated,
}

impl TcbStatus {
    /// Parse Intel's TCB status name.
    pub fn from_intel(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            _ => return None,
        })
    }
}

/// TCB evaluation outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbInfo {
    pub status: TcbStatus,
    /// Intel security advisory ids (e.g. `INTEL-SA-00615`) that apply to this TCB level.
    #[serde(default)]
    pub advisory_ids: Vec<String>,
    /// Human-readable note on how the status was obtained.
    #[serde(default)]
    pub note: String,
}

/// SEV-SNP TCB version (the four/five SVN components of a TCB_VERSION).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin and later: FMC SVN (absent on Milan/Genoa).
    #[serde(default)]
    pub fmc: Option<u8>,
}

/// The measurements, per TEE kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Measurements {
    Snp {
        /// MEASUREMENT: the launch digest (48 bytes).
        measurement: Bytes,
        host_data: Bytes,
        id_key_digest: Bytes,
        author_key_digest: Bytes,
        family_id: Bytes,
        image_id: Bytes,
        report_id: Bytes,
        report_id_ma: Bytes,
        chip_id: Bytes,
        guest_svn: u32,
        vmpl: u32,
        /// Report format version (2, 3, 5...).
        version: u32,
        current_tcb: SnpTcb,
        reported_tcb: SnpTcb,
        committed_tcb: SnpTcb,
        launch_tcb: SnpTcb,
        /// CPUID family/model/stepping (version 3+ only).
        #[serde(default)]
        cpuid_fam_id: Option<u8>,
        #[serde(default)]
        cpuid_mod_id: Option<u8>,
        #[serde(default)]
        cpuid_step: Option<u8>,
    },
    Tdx {
        mr_td: Bytes,
        /// RTMR0..RTMR3.
        rtmr: [Bytes; 4],
        mr_config_id: Bytes,
        mr_owner: Bytes,
        mr_owner_config: Bytes,
        mr_seam: Bytes,
        mr_signer_seam: Bytes,
        tee_tcb_svn: Bytes,
        td_attributes: Bytes,
        seam_attributes: Bytes,
        xfam: Bytes,
        /// TDX 1.5 bodies only.
        #[serde(default)]
        tee_tcb_svn2: Option<Bytes>,
        #[serde(default)]
        mr_service_td: Option<Bytes>,
        /// Quote version (4 or 5) and body type (2 = TD 1.0, 3 = TD 1.5).
        quote_version: u16,
        body_type: u16,
        fmspc: Bytes,
    },
    Sgx {
        mr_enclave: Bytes,
        mr_signer: Bytes,
        isv_prod_id: u16,
        isv_svn: u16,
        attributes: Bytes,
        misc_select: u32,
        config_id: Bytes,
        config_svn: u16,
        isv_ext_prod_id: Bytes,
        isv_family_id: Bytes,
        cpu_svn: Bytes,
        quote_version: u16,
        fmspc: Bytes,
    },
    Nitro {
        module_id: String,
        /// Digest algorithm of the PCRs (always "SHA384" today).
        digest: String,
        /// PCRs by index.
        pcrs: BTreeMap<u16, Bytes>,
        /// Document timestamp, milliseconds since the Unix epoch.
        timestamp_ms: u64,
    },
    Kvm {
        /// IronClaw launch measurement (SHA-384).
        launch_measurement: Bytes,
        /// Anything else the kvm evidence carries (launch config etc.), verbatim.
        #[serde(default)]
        extra: BTreeMap<String, serde_json::Value>,
    },
}

impl Measurements {
    /// The one measurement a simple policy pins: SNP MEASUREMENT, TDX MRTD,
    /// SGX MRENCLAVE, Nitro PCR0, kvm launch measurement.
    pub fn primary(&self) -> Option<&Bytes> {
        match self {
            Measurements::Snp { measurement, .. } => Some(measurement),
            Measurements::Tdx { mr_td, .. } => Some(mr_td),
            Measurements::Sgx { mr_enclave, .. } => Some(mr_enclave),
            Measurements::Nitro { pcrs, .. } => pcrs.get(&0),
            Measurements::Kvm {
                launch_measurement, ..
            } => Some(launch_measurement),
        }
    }
}

/// Guest policy / attribute bits, decoded, per TEE kind. `raw` always carries the
/// undecoded value so a policy can test bits this version does not name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PolicyBits {
    Snp {
        /// The 64-bit guest POLICY field.
        raw: u64,
        abi_major: u8,
        abi_minor: u8,
        smt_allowed: bool,
        migrate_ma_allowed: bool,
        debug_allowed: bool,
        single_socket_required: bool,
        /// PLATFORM_INFO field.
        platform_info: u64,
        smt_enabled: bool,
        tsme_enabled: bool,
        /// 0 = VCEK, 1 = VLEK.
        signing_key: u8,
        mask_chip_id: bool,
    },
    Tdx {
        td_attributes: u64,
        debug: bool,
        sept_ve_disable: bool,
        pks: bool,
        kl: bool,
    },
    Sgx {
        attributes_flags: u64,
        debug: bool,
        mode64: bool,
        provision_key: bool,
        einittoken_key: bool,
    },
    /// Nitro documents carry no policy bits; debug is derived from PCRs being zero.
    Nitro {},
    Kvm {
        #[serde(default)]
        raw: BTreeMap<String, serde_json::Value>,
    },
}

/// One certificate of the signer chain (leaf first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex (may be "00": AMD VCEKs use serial 0).
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// SHA-256 of the DER encoding, hex.
    pub sha256: String,
}

/// The outcome of verifying one piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationResult {
    pub tee: TeeKind,
    pub measurements: Measurements,
    /// 64-byte REPORT_DATA (SNP, TDX, SGX, kvm); `None` for Nitro.
    #[serde(default)]
    pub report_data: Option<Bytes>,
    /// Nitro `user_data`.
    #[serde(default)]
    pub user_data: Option<Bytes>,
    /// Nitro `nonce`.
    #[serde(default)]
    pub nonce: Option<Bytes>,
    /// Nitro `public_key` (or the key the evidence binds, when it carries one).
    #[serde(default)]
    pub public_key: Option<Bytes>,
    /// True when the TEE runs in a debuggable mode (SNP policy DEBUG, TDX/SGX
    /// DEBUG attribute, Nitro debug-mode PCRs all zero). Policies should refuse it.
    pub debug: bool,
    pub policy: PolicyBits,
    pub tcb: TcbInfo,
    /// Signing key and its chain, leaf first, root last.
    pub signer_chain: Vec<CertInfo>,
    /// The instant the verification was evaluated at (RFC 3339).
    pub verified_at: String,
}
