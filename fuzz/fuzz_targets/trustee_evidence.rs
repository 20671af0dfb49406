//! trustee's per-TEE evidence shapes (SNP `attestation_report` + `cert_chain`,
//! TDX / SGX `quote`), the broker's untrusted JSON → report / quote bytes step.
//! First byte selects the shape, the rest is JSON.
#![no_main]
use ironclaw_broker::trustee_evidence::{parse_dcap, parse_snp, snp_report_bytes, SNP_REPORT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(ev) = parse_snp(&value) {
                assert_eq!(ev.report.len(), SNP_REPORT_LEN);
            }
        }
        1 => {
            if let Ok(ev) = parse_dcap(&value, "tdx") {
                assert!(!ev.quote.is_empty());
            }
        }
        2 => {
            let _ = parse_dcap(&value, "sgx");
        }
        _ => {
            if let Ok(b) = snp_report_bytes(&value) {
                assert_eq!(b.len(), SNP_REPORT_LEN);
            }
        }
    }
});
