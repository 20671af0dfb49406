//! trustee's per-TEE evidence shapes, as the Confidential Containers
//! guest-components attesters send them as KBS `tee-evidence`. Untrusted input:
//! every error names the field it is about.
//!
//! | tee | shape (guest-components `attestation-agent/attester`, trustee `deps/verifier`) |
//! |---|---|
//! | `snp` | `{"attestation_report": {...}, "cert_chain": [{"cert_type": "VCEK", "data": [..]}, ...] \| null}` |
//! | `tdx` | `{"quote": "<base64 quote>", "cc_eventlog": "<base64 CCEL>" \| null}` |
//! | `sgx` | `{"quote": "<base64 quote>"}` |
//!
//! **SNP.** `attestation_report` is the `sev` crate's serde form of
//! `AttestationReport` (sev 6.x/7.x/8.x, the versions the attester and trustee's
//! verifier build with): integers as JSON numbers (`policy`, `plat_info` and
//! `key_info` are the raw bitfield words), byte arrays as JSON arrays of numbers
//! (hex strings are accepted too), TCB versions as `{"fmc", "bootloader", "tee",
//! "snp", "microcode"}`, firmware versions as `{"major", "minor", "build"}`, the
//! signature as `{"r": [72], "s": [72]}` (little-endian, as in the report). The
//! 1184-byte report is rebuilt from these fields exactly as `sev`'s
//! `AttestationReport::write_bytes` does (reserved bytes zero; TCB bytes in the
//! Turin layout when `fmc` is present, else the Milan/Genoa layout; CPUID bytes from
//! version 3, mitigation vectors from version 5) and then verified byte for byte
//! by `ironclaw-verifier`: a field that does not round-trip breaks the signature.
//! `cert_chain` is the extended report's certificate table (`sev`'s
//! `CertTableEntry`, `data` DER as an array of numbers). As in trustee, exactly one
//! VCEK or VLEK entry is used; ASK/ASVK and ARK are the verifier's built-in AMD
//! certificates, never the table's. trustee fetches a missing VCEK from AMD's KDS;
//! this broker reaches no network, so a report without its VCEK/VLEK in
//! `cert_chain` is refused naming the certificate it needs.
//!
//! **TDX / SGX.** The quote is standard base64. The CC event log, when present,
//! must be base64; it is not replayed (policy here binds MRTD, not RTMRs), so
//! nothing from it is trusted. Older attesters' `aa_eventlog` is accepted the same
//! way. As in trustee's verifier, fields this broker does not know are ignored
//! (nothing unknown reaches verification). The DCAP collateral is not in the
//! evidence: see [`crate::collateral`].

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{Map, Value};

/// Length of an SEV-SNP `ATTESTATION_REPORT`.
pub const SNP_REPORT_LEN: usize = 0x4A0;

/// A field of trustee evidence is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ShapeError {
    /// The JSON path of the field (`snp attestation_report.report_data`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ShapeError {
    ShapeError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Which key signed an SNP report (KEY_INFO bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpSigner {
    /// Versioned chip endorsement key.
    Vcek,
    /// Versioned loaded endorsement key.
    Vlek,
    /// Another value (none / reserved): the verifier refuses it.
    Other(u32),
}

impl SnpSigner {
    /// The certificate table type name.
    pub fn name(self) -> &'static str {
        match self {
            SnpSigner::Vcek => "VCEK",
            SnpSigner::Vlek => "VLEK",
            SnpSigner::Other(_) => "VCEK or VLEK",
        }
    }
}

/// trustee SNP evidence, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The rebuilt 1184-byte report.
    pub report: Vec<u8>,
    /// The report's SIGNING_KEY.
    pub signer: SnpSigner,
    /// The VCEK/VLEK certificate (DER) from `cert_chain`, with its entry's name.
    pub endorsement_key: Option<(String, Vec<u8>)>,
}

/// trustee TDX / SGX evidence, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcapEvidence {
    /// The quote bytes.
    pub quote: Vec<u8>,
}

/// Whether `v` is in trustee's SNP shape (rather than the broker's own wrapper).
pub fn is_snp_shape(v: &Value) -> bool {
    v.get("attestation_report").is_some()
}

/// Whether `v` is in trustee's TDX / SGX shape.
pub fn is_dcap_shape(v: &Value) -> bool {
    v.get("quote").is_some()
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ShapeError> {
    v.as_object().ok_or_else(|| {
        err(
            field,
            format!("expected a JSON object, found {}", type_name(v)),
        )
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get<'a>(o: &'a Map<String, Value>, parent: &str, name: &str) -> Result<&'a Value, ShapeError> {
    o.get(name)
        .ok_or_else(|| err(format!("{parent}.{name}"), "missing"))
}

fn uint(o: &Map<String, Value>, parent: &str, name: &str, max: u64) -> Result<u64, ShapeError> {
    let v = get(o, parent, name)?;
    let n = v.as_u64().ok_or_else(|| {
        err(
            format!("{parent}.{name}"),
            format!("expected an unsigned integer, found {}", type_name(v)),
        )
    })?;
    if n > max {
        return Err(err(
            format!("{parent}.{name}"),
            format!("{n} does not fit in {} bits", 64 - max.leading_zeros()),
        ));
    }
    Ok(n)
}

/// `null`/absent → `None`, else an integer ≤ `max`.
fn opt_uint(
    o: &Map<String, Value>,
    parent: &str,
    name: &str,
    max: u64,
) -> Result<Option<u64>, ShapeError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => uint(o, parent, name, max).map(Some),
    }
}

/// A byte array: a JSON array of numbers 0..=255 (sev's serde form) or a hex string.
fn bytes_value(v: &Value, field: &str, len: Option<usize>) -> Result<Vec<u8>, ShapeError> {
    let out = match v {
        Value::Array(items) => {
            if let Some(n) = len {
                if items.len() != n {
                    return Err(err(
                        field,
                        format!("expected {n} bytes, found an array of {}", items.len()),
                    ));
                }
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let b = item
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| err(format!("{field}[{i}]"), "expected a byte (0..=255)"))?;
                out.push(b);
            }
            out
        }
        Value::String(s) => {
            hex::decode(s).map_err(|e| err(field, format!("not a byte array nor hex: {e}")))?
        }
        other => {
            return Err(err(
                field,
                format!("expected an array of bytes, found {}", type_name(other)),
            ))
        }
    };
    if let Some(n) = len {
        if out.len() != n {
            return Err(err(
                field,
                format!("expected {n} bytes, found {}", out.len()),
            ));
        }
    }
    Ok(out)
}

/// A fixed-size little-endian report writer: every offset is a constant within
/// the buffer, checked once more here so a slip is an error, not a panic.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn put(&mut self, offset: usize, bytes: &[u8], field: &str) -> Result<(), ShapeError> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| err(field, "does not fit in the report"))?;
        if let Some(dst) = self.buf.get_mut(offset..end) {
            dst.copy_from_slice(bytes);
        }
        Ok(())
    }
}

const R: &str = "snp attestation_report";

fn tcb(o: &Map<String, Value>, name: &str) -> Result<[u8; 8], ShapeError> {
    let parent = format!("{R}.{name}");
    let t = object(get(o, R, name)?, &parent)?;
    let fmc = opt_uint(t, &parent, "fmc", 0xff)?;
    let bl = uint(t, &parent, "bootloader", 0xff)? as u8;
    let tee = uint(t, &parent, "tee", 0xff)? as u8;
    let snp = uint(t, &parent, "snp", 0xff)? as u8;
    let ucode = uint(t, &parent, "microcode", 0xff)? as u8;
    Ok(match fmc {
        // Turin: [fmc, bootloader, tee, snp, 0, 0, 0, microcode]
        Some(fmc) => [fmc as u8, bl, tee, snp, 0, 0, 0, ucode],
        // Milan / Genoa: [bootloader, tee, 0, 0, 0, 0, snp, microcode]
        None => [bl, tee, 0, 0, 0, 0, snp, ucode],
    })
}

fn fw_version(o: &Map<String, Value>, name: &str) -> Result<[u8; 3], ShapeError> {
    let parent = format!("{R}.{name}");
    let v = object(get(o, R, name)?, &parent)?;
    Ok([
        uint(v, &parent, "build", 0xff)? as u8,
        uint(v, &parent, "minor", 0xff)? as u8,
        uint(v, &parent, "major", 0xff)? as u8,
    ])
}

/// Rebuilds the 1184-byte report from the `sev` serde form.
pub fn snp_report_bytes(report: &Value) -> Result<Vec<u8>, ShapeError> {
    let o = object(report, R)?;
    let mut w = Writer {
        buf: vec![0u8; SNP_REPORT_LEN],
    };
    let version = uint(o, R, "version", u32::MAX.into())?;
    w.put(0x000, &(version as u32).to_le_bytes(), "version")?;
    let u32_fields = [("guest_svn", 0x004), ("vmpl", 0x030), ("sig_algo", 0x034)];
    for (name, off) in u32_fields {
        let n = uint(o, R, name, u32::MAX.into())? as u32;
        w.put(off, &n.to_le_bytes(), name)?;
    }
    for (name, off) in [("policy", 0x008), ("plat_info", 0x040)] {
        let n = uint(o, R, name, u64::MAX)?;
        w.put(off, &n.to_le_bytes(), name)?;
    }
    let key_info = uint(o, R, "key_info", u32::MAX.into())? as u32;
    w.put(0x048, &key_info.to_le_bytes(), "key_info")?;
    let arrays: [(&str, usize, usize); 10] = [
        ("family_id", 0x010, 16),
        ("image_id", 0x020, 16),
        ("report_data", 0x050, 64),
        ("measurement", 0x090, 48),
        ("host_data", 0x0C0, 32),
        ("id_key_digest", 0x0E0, 48),
        ("author_key_digest", 0x110, 48),
        ("report_id", 0x140, 32),
        ("report_id_ma", 0x160, 32),
        ("chip_id", 0x1A0, 64),
    ];
    for (name, off, len) in arrays {
        let b = bytes_value(get(o, R, name)?, &format!("{R}.{name}"), Some(len))?;
        w.put(off, &b, name)?;
    }
    for (name, off) in [
        ("current_tcb", 0x038),
        ("reported_tcb", 0x180),
        ("committed_tcb", 0x1E0),
        ("launch_tcb", 0x1F0),
    ] {
        w.put(off, &tcb(o, name)?, name)?;
    }
    // CPUID identification: report version 3 and later (as sev writes it).
    if version >= 3 {
        for (name, off) in [
            ("cpuid_fam_id", 0x188),
            ("cpuid_mod_id", 0x189),
            ("cpuid_step", 0x18A),
        ] {
            let b = opt_uint(o, R, name, 0xff)?.unwrap_or(0) as u8;
            w.put(off, &[b], name)?;
        }
    }
    w.put(0x1E8, &fw_version(o, "current")?, "current")?;
    w.put(0x1EC, &fw_version(o, "committed")?, "committed")?;
    // Mitigation vectors: report version 5 and later.
    if version >= 5 {
        for (name, off) in [("launch_mit_vector", 0x1F8), ("current_mit_vector", 0x200)] {
            let n = opt_uint(o, R, name, u64::MAX)?.unwrap_or(0);
            w.put(off, &n.to_le_bytes(), name)?;
        }
    }
    let sig_parent = format!("{R}.signature");
    let sig = object(get(o, R, "signature")?, &sig_parent)?;
    for (name, off) in [("r", 0x2A0), ("s", 0x2E8)] {
        let b = bytes_value(
            get(sig, &sig_parent, name)?,
            &format!("{sig_parent}.{name}"),
            Some(72),
        )?;
        w.put(off, &b, name)?;
    }
    Ok(w.buf)
}

/// The certificate-table type name of one `cert_chain` entry.
fn cert_type(v: &Value, field: &str) -> Result<String, ShapeError> {
    match v {
        // Unit variants: "VCEK", "VLEK", "ARK", "ASK", "CRL", "Empty".
        Value::String(s) => Ok(s.clone()),
        // OTHER(uuid): {"OTHER": "<uuid>"}.
        Value::Object(o) if o.len() == 1 && o.contains_key("OTHER") => Ok("OTHER".into()),
        other => Err(err(
            field,
            format!(
                "expected a certificate type name, found {}",
                type_name(other)
            ),
        )),
    }
}

/// Parses trustee's SNP evidence.
pub fn parse_snp(v: &Value) -> Result<SnpEvidence, ShapeError> {
    let top = object(v, "snp primary_evidence")?;
    let report = snp_report_bytes(get(top, "snp", "attestation_report")?)?;
    let key_info = report
        .get(0x048..0x04C)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0);
    let signer = match (key_info >> 2) & 0x7 {
        0 => SnpSigner::Vcek,
        1 => SnpSigner::Vlek,
        n => SnpSigner::Other(n),
    };
    let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
    match top.get("cert_chain") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (i, e) in entries.iter().enumerate() {
                let field = format!("snp cert_chain[{i}]");
                let o = object(e, &field)?;
                let t = cert_type(get(o, &field, "cert_type")?, &format!("{field}.cert_type"))?;
                if t == "VCEK" || t == "VLEK" {
                    let der = bytes_value(get(o, &field, "data")?, &format!("{field}.data"), None)?;
                    keys.push((format!("cert_chain[{i}] ({t})"), der));
                }
            }
        }
        Some(other) => {
            return Err(err(
                "snp cert_chain",
                format!("expected an array or null, found {}", type_name(other)),
            ))
        }
    }
    if keys.len() > 1 {
        return Err(err(
            "snp cert_chain",
            format!(
                "{} VCEK/VLEK entries; the extended report's table holds exactly one",
                keys.len()
            ),
        ));
    }
    Ok(SnpEvidence {
        report,
        signer,
        endorsement_key: keys.pop(),
    })
}

fn b64(o: &Map<String, Value>, tee: &str, name: &str) -> Result<Option<Vec<u8>>, ShapeError> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => STANDARD
            .decode(s)
            .map(Some)
            .map_err(|e| err(format!("{tee} {name}"), format!("not standard base64: {e}"))),
        Some(other) => Err(err(
            format!("{tee} {name}"),
            format!("expected a base64 string, found {}", type_name(other)),
        )),
    }
}

/// Parses trustee's TDX (`tee` = `"tdx"`) or SGX (`"sgx"`) evidence.
pub fn parse_dcap(v: &Value, tee: &str) -> Result<DcapEvidence, ShapeError> {
    let o = object(v, &format!("{tee} primary_evidence"))?;
    let quote = b64(o, tee, "quote")?.ok_or_else(|| err(format!("{tee} quote"), "missing"))?;
    if quote.is_empty() {
        return Err(err(format!("{tee} quote"), "empty"));
    }
    // Decoded only to refuse garbage; not replayed (see the module doc).
    b64(o, tee, "cc_eventlog")?;
    b64(o, tee, "aa_eventlog")?;
    Ok(DcapEvidence { quote })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report_json() -> Value {
        let tcb = json!({"fmc": null, "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115});
        json!({
            "version": 2, "guest_svn": 4, "policy": 0x30000u64,
            "family_id": vec![1u8; 16], "image_id": vec![2u8; 16],
            "vmpl": 0, "sig_algo": 1, "current_tcb": tcb, "plat_info": 3, "key_info": 0,
            "report_data": vec![0xAAu8; 64], "measurement": vec![0xBBu8; 48],
            "host_data": vec![0u8; 32], "id_key_digest": vec![0u8; 48],
            "author_key_digest": vec![0u8; 48], "report_id": vec![5u8; 32],
            "report_id_ma": vec![0xffu8; 32], "reported_tcb": tcb,
            "cpuid_fam_id": null, "cpuid_mod_id": null, "cpuid_step": null,
            "chip_id": vec![9u8; 64], "committed_tcb": tcb,
            "current": {"major": 1, "minor": 55, "build": 21},
            "committed": {"major": 1, "minor": 55, "build": 21},
            "launch_tcb": tcb, "launch_mit_vector": null, "current_mit_vector": null,
            "signature": {"r": vec![7u8; 72], "s": vec![8u8; 72]}
        })
    }

    #[test]
    fn report_fields_land_at_their_offsets() {
        let b = snp_report_bytes(&report_json()).unwrap();
        assert_eq!(b.len(), SNP_REPORT_LEN);
        assert_eq!(&b[0..4], &2u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x30000u64.to_le_bytes());
        assert_eq!(&b[0x50..0x90], &[0xAA; 64][..]);
        assert_eq!(&b[0x90..0xC0], &[0xBB; 48][..]);
        assert_eq!(&b[0x180..0x188], &[3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(&b[0x188..0x1A0], &[0; 24][..], "v2 has no CPUID bytes");
        assert_eq!(&b[0x1E8..0x1F0], &[21, 55, 1, 0, 21, 55, 1, 0]);
        assert_eq!(&b[0x2A0..0x2E8], &[7; 72][..]);
        assert_eq!(&b[0x2E8..0x330], &[8; 72][..]);
        assert!(b[0x330..].iter().all(|x| *x == 0));
    }

    #[test]
    fn turin_tcb_and_v5_fields() {
        let mut r = report_json();
        r["version"] = 5.into();
        r["reported_tcb"] = json!({"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5});
        r["cpuid_fam_id"] = 0x1A.into();
        r["cpuid_mod_id"] = 2.into();
        r["cpuid_step"] = 1.into();
        r["launch_mit_vector"] = 0x0102u64.into();
        let b = snp_report_bytes(&r).unwrap();
        assert_eq!(&b[0x180..0x188], &[1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(&b[0x188..0x18B], &[0x1A, 2, 1]);
        assert_eq!(&b[0x1F8..0x200], &0x0102u64.to_le_bytes());
        assert_eq!(&b[0x200..0x208], &[0; 8]);
    }

    #[test]
    fn errors_name_the_field() {
        let mut r = report_json();
        r["report_data"] = json!(vec![0u8; 63]);
        let e = snp_report_bytes(&r).unwrap_err();
        assert_eq!(e.field, "snp attestation_report.report_data");
        assert!(e.reason.contains("expected 64 bytes"), "{e}");

        let mut r = report_json();
        r["measurement"][3] = 256.into();
        assert_eq!(
            snp_report_bytes(&r).unwrap_err().field,
            "snp attestation_report.measurement[3]"
        );

        let mut r = report_json();
        r["vmpl"] = json!(u64::from(u32::MAX) + 1);
        assert_eq!(
            snp_report_bytes(&r).unwrap_err().field,
            "snp attestation_report.vmpl"
        );

        let mut r = report_json();
        r.as_object_mut().unwrap().remove("signature");
        let e = snp_report_bytes(&r).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("snp attestation_report.signature", "missing")
        );

        let mut r = report_json();
        r["current_tcb"]["snp"] = "8".into();
        assert_eq!(
            snp_report_bytes(&r).unwrap_err().field,
            "snp attestation_report.current_tcb.snp"
        );

        let e =
            parse_snp(&json!({"attestation_report": report_json(), "cert_chain": 5})).unwrap_err();
        assert_eq!(e.field, "snp cert_chain");
        let e = parse_snp(&json!({"attestation_report": report_json(),
            "cert_chain": [{"cert_type": "VCEK", "data": "zz"}]}))
        .unwrap_err();
        assert_eq!(e.field, "snp cert_chain[0].data");
    }

    #[test]
    fn cert_chain_yields_the_one_endorsement_key() {
        let chain = json!([
            {"cert_type": "ARK", "data": [1, 2]},
            {"cert_type": "ASK", "data": [3]},
            {"cert_type": {"OTHER": "c0b406a4-a803-4952-9743-3fb6014cd0ae"}, "data": []},
            {"cert_type": "VCEK", "data": [0x30, 0x82]},
        ]);
        let ev =
            parse_snp(&json!({"attestation_report": report_json(), "cert_chain": chain})).unwrap();
        assert_eq!(ev.signer, SnpSigner::Vcek);
        assert_eq!(
            ev.endorsement_key,
            Some(("cert_chain[3] (VCEK)".into(), vec![0x30, 0x82]))
        );

        let none =
            parse_snp(&json!({"attestation_report": report_json(), "cert_chain": null})).unwrap();
        assert_eq!(none.endorsement_key, None);

        let two = json!([{"cert_type": "VCEK", "data": [1]}, {"cert_type": "VLEK", "data": [2]}]);
        let e = parse_snp(&json!({"attestation_report": report_json(), "cert_chain": two}))
            .unwrap_err();
        assert!(e.reason.contains("2 VCEK/VLEK entries"), "{e}");

        let mut vlek = report_json();
        vlek["key_info"] = (1u32 << 2).into();
        assert_eq!(
            parse_snp(&json!({"attestation_report": vlek}))
                .unwrap()
                .signer,
            SnpSigner::Vlek
        );
    }

    #[test]
    fn dcap_shapes() {
        let q = STANDARD.encode([3u8, 0, 2, 0]);
        assert_eq!(
            parse_dcap(&json!({"quote": q}), "sgx").unwrap().quote,
            vec![3, 0, 2, 0]
        );
        let ok = json!({"quote": q, "cc_eventlog": STANDARD.encode(b"CCEL"), "aa_eventlog": null});
        assert!(parse_dcap(&ok, "tdx").is_ok());
        for (v, tee, field) in [
            (json!({"quote": "***"}), "tdx", "tdx quote"),
            (json!({"quote": ""}), "sgx", "sgx quote"),
            (
                json!({"quote": q, "cc_eventlog": 5}),
                "tdx",
                "tdx cc_eventlog",
            ),
            (json!({"cc_eventlog": null}), "tdx", "tdx quote"),
            (json!([q]), "tdx", "tdx primary_evidence"),
        ] {
            assert_eq!(parse_dcap(&v, tee).unwrap_err().field, field, "{v}");
        }
    }
}
