//! `ironclaw verify` end to end: exit codes, human and JSON output, refusal reasons,
//! on the real samples in ../shared/fixtures/attestation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures(test: &str) -> Option<PathBuf> {
    claw_testsupport::require_attestation_fixtures(test)
}

fn ironclaw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .output()
        .expect("run ironclaw")
}

fn p(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn snp_hex_report_verifies_with_json_and_exit_0() {
    let Some(d) = fixtures("snp_hex_report_verifies_with_json_and_exit_0") else {
        return;
    };
    let out = ironclaw(&[
        "verify",
        "--kind",
        "snp",
        "--json",
        "--at",
        "2025-06-01T00:00:00Z",
        "--cert",
        &p(&d, "sev-snp/virtee-sev/cert_chain_milan.pem"),
        "--cert",
        &p(&d, "sev-snp/virtee-sev/vcek_milan.der"),
        &p(&d, "sev-snp/virtee-sev/report_milan.hex"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["tee"], "snp");
    assert_eq!(v["debug"], false);
    assert_eq!(v["measurements"]["version"], 2);
    assert_eq!(v["verified_at"], "2025-06-01T00:00:00Z");
    assert_eq!(v["signer_chain"][0]["serial"], "00");
}

#[test]
fn nitro_debug_document_reports_debug_true() {
    let Some(d) = fixtures("nitro_debug_document_reports_debug_true") else {
        return;
    };
    for (file, at, debug) in [
        (
            "nitro/blocky-nitrite/nitro_attestation_debug.b64",
            "2024-09-07T14:38:06.508Z",
            true,
        ),
        (
            "nitro/dstack/nitro_attestation.bin",
            "2025-12-25T13:15:37.578Z",
            false,
        ),
    ] {
        let out = ironclaw(&[
            "verify",
            "--kind",
            "nitro",
            "--json",
            "--at",
            at,
            &p(&d, file),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out)["debug"], debug, "{file}");
    }
}

#[test]
fn dcap_with_collateral_reports_tcb_status() {
    let Some(d) = fixtures("dcap_with_collateral_reports_tcb_status") else {
        return;
    };
    let out = ironclaw(&[
        "verify",
        "--kind",
        "sgx",
        "--json",
        "--at",
        "2025-07-04T10:28:44Z",
        "--collateral",
        &p(&d, "sgx/dcap-qvl/sgx_quote_collateral.json"),
        &p(&d, "sgx/dcap-qvl/sgx_quote.bin"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["tcb"]["status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        v["tcb"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
}

#[test]
fn refusal_exits_1_and_names_the_cause() {
    let Some(d) = fixtures("refusal_exits_1_and_names_the_cause") else {
        return;
    };
    // Expired VLEK: the reason names the certificate.
    let out = ironclaw(&[
        "verify",
        "--kind",
        "snp",
        "--at",
        "2026-01-01T00:00:00Z",
        "--cert",
        &p(&d, "sev-snp/trustee/vlek.der"),
        &p(&d, "sev-snp/trustee/vlek-report.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SEV-VLEK") && err.contains("expired"), "{err}");
    // Another chip's VCEK, JSON refusal.
    let out = ironclaw(&[
        "verify",
        "--kind",
        "snp",
        "--json",
        "--at",
        "2025-06-01T00:00:00Z",
        "--cert",
        &p(&d, "sev-snp/trustee/vcek.der"),
        &p(&d, "sev-snp/go-sev-guest/attestation.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["kind"], "bad_signature");
    // Tampered VCEK.
    let out = ironclaw(&[
        "verify",
        "--kind",
        "snp",
        "--json",
        "--at",
        "2025-06-01T00:00:00Z",
        "--cert",
        &p(&d, "sev-snp/trustee/vcek-invalid-new.der"),
        &p(&d, "sev-snp/trustee/vcek-report.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["kind"], "cert_signature");
    // The outdated TDX quote: no matching TCB level.
    let out = ironclaw(&[
        "verify",
        "--kind",
        "tdx",
        "--at",
        "2026-03-05T10:50:03Z",
        "--collateral",
        &p(&d, "tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
        &p(&d, "tdx/dcap-qvl/tdx_quote_outdated.bin"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No matching TCB level found"));
}

#[test]
fn usage_errors_exit_2() {
    let Some(d) = fixtures("usage_errors_exit_2") else {
        return;
    };
    let report = p(&d, "sev-snp/go-sev-guest/attestation.bin");
    assert_eq!(
        ironclaw(&["verify", "--kind", "snp", "--at", "yesterday", &report])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        ironclaw(&["verify", "--kind", "sev", &report])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        ironclaw(&["verify", "--kind", "snp", "/nonexistent/report.bin"])
            .status
            .code(),
        Some(2)
    );
    let out = ironclaw(&[
        "verify",
        "--kind",
        "snp",
        "--cert",
        "/nonexistent/vcek.der",
        &report,
    ]);
    assert_eq!(out.status.code(), Some(2));
}
