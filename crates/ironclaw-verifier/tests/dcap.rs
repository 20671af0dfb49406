//! Intel DCAP (TDX v4/v5, SGX v3) against the real quotes in shared/fixtures/attestation.

mod common;

use std::path::Path;

use ironclaw_verifier::{
    verify, Measurements, TcbStatus, TeeKind, VerifyError, VerifyOptions, VerifyTime,
};
use sha2::Digest;

struct Sample {
    name: String,
    quote: Vec<u8>,
    kind: TeeKind,
    opts: VerifyOptions,
    expect: serde_json::Value,
    window: Option<(VerifyTime, VerifyTime)>,
}

fn kind_of(path: &str) -> TeeKind {
    if path.starts_with("tdx/") {
        TeeKind::Tdx
    } else {
        TeeKind::Sgx
    }
}

fn samples(dir: &Path) -> Vec<Sample> {
    let idx = common::index(dir);
    let mut out = Vec::new();
    for s in idx["dcap"].as_array().expect("dcap list") {
        let q = s["quote"].as_str().expect("quote");
        let collateral = s["collateral"].as_str().map(|c| common::read(dir, c));
        // Quotes without collateral: the PCK chain is valid 2023..2030; pick a time inside.
        let at = match s["eval_unix"].as_i64() {
            Some(t) => VerifyTime::from_unix(t),
            None => common::at("2025-06-01T00:00:00Z"),
        };
        out.push(Sample {
            name: q.to_string(),
            quote: common::read(dir, q),
            kind: kind_of(q),
            opts: common::opts(at, Vec::new(), collateral),
            expect: s["expect"].clone(),
            window: s["window"].as_array().map(|w| {
                (
                    common::at(w[0].as_str().expect("w0")),
                    common::at(w[1].as_str().expect("w1")),
                )
            }),
        });
    }
    assert_eq!(out.len(), 6, "index.json lists six DCAP samples");
    out
}

#[test]
fn pinned_intel_root_matches_provenance() {
    let d = sha2::Sha256::digest(ironclaw_verifier::dcap::INTEL_SGX_ROOT_CA_DER);
    assert_eq!(
        hex::encode(d),
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    );
}

#[test]
fn every_dcap_sample_has_its_expected_outcome() {
    let Some(dir) = common::fixtures("every_dcap_sample_has_its_expected_outcome") else {
        return;
    };
    for s in samples(&dir) {
        let res = verify(s.kind, &s.quote, &s.opts);
        if let Some(err) = s.expect.get("error").and_then(|e| e.as_str()) {
            let e = res.expect_err(&format!("{} must be refused", s.name));
            assert!(matches!(e, VerifyError::Tcb { .. }), "{}: {e:?}", s.name);
            assert!(e.to_string().contains(err), "{}: {e}", s.name);
            continue;
        }
        let r = res.unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(r.tee, s.kind);
        if let Some(status) = s.expect.get("status").and_then(|v| v.as_str()) {
            assert_eq!(
                r.tcb.status,
                TcbStatus::from_intel(status).expect("status"),
                "{}",
                s.name
            );
            let adv: Vec<String> = s.expect["advisory_ids"]
                .as_array()
                .expect("advisories")
                .iter()
                .map(|a| a.as_str().expect("id").to_string())
                .collect();
            assert_eq!(r.tcb.advisory_ids, adv, "{}", s.name);
        } else {
            assert_eq!(r.tcb.status, TcbStatus::NotEvaluated, "{}", s.name);
        }
        assert!(r
            .signer_chain
            .last()
            .expect("root")
            .subject
            .contains("Intel SGX Root CA"));
        assert!(r.signer_chain[0]
            .subject
            .contains("Intel SGX PCK Certificate"));
        match (&r.measurements, s.kind) {
            (
                Measurements::Tdx {
                    mr_td,
                    rtmr,
                    quote_version,
                    body_type,
                    ..
                },
                TeeKind::Tdx,
            ) => {
                // MRTD sits at header(48) [+ body descriptor(6) for v5] + 136 in the TD report.
                let base = if *quote_version == 5 { 54 } else { 48 };
                assert_eq!(
                    mr_td.as_slice(),
                    &s.quote[base + 136..base + 184],
                    "{}",
                    s.name
                );
                assert_eq!(
                    rtmr[3].as_slice(),
                    &s.quote[base + 472..base + 520],
                    "{}",
                    s.name
                );
                assert!(matches!(*body_type, 2 | 3), "{}", s.name);
            }
            (
                Measurements::Sgx {
                    mr_enclave,
                    mr_signer,
                    quote_version,
                    ..
                },
                TeeKind::Sgx,
            ) => {
                assert_eq!(*quote_version, 3);
                assert_eq!(
                    mr_enclave.as_slice(),
                    &s.quote[48 + 64..48 + 96],
                    "{}",
                    s.name
                );
                assert_eq!(
                    mr_signer.as_slice(),
                    &s.quote[48 + 128..48 + 160],
                    "{}",
                    s.name
                );
            }
            other => panic!("{}: wrong measurements {other:?}", s.name),
        }
        let rd = r.report_data.expect("report data");
        assert_eq!(rd.as_slice().len(), 64);
    }
}

#[test]
fn quote_versions_and_body_types_are_reported() {
    let Some(dir) = common::fixtures("quote_versions_and_body_types_are_reported") else {
        return;
    };
    let mut seen = Vec::new();
    for s in samples(&dir) {
        let mut o = s.opts.clone();
        o.collateral = None;
        let r = verify(s.kind, &s.quote, &o).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        match r.measurements {
            Measurements::Tdx {
                quote_version,
                body_type,
                mr_service_td,
                ..
            } => {
                assert_eq!(mr_service_td.is_some(), body_type == 3);
                seen.push((quote_version, body_type));
            }
            Measurements::Sgx { quote_version, .. } => seen.push((quote_version, 0)),
            _ => unreachable!(),
        }
    }
    for want in [(4, 2), (5, 3), (3, 0)] {
        assert!(
            seen.contains(&want),
            "no sample with (version, body type) {want:?}: {seen:?}"
        );
    }
}

#[test]
fn flipping_signed_bytes_fails() {
    let Some(dir) = common::fixtures("flipping_signed_bytes_fails") else {
        return;
    };
    for s in samples(&dir) {
        let mut o = s.opts.clone();
        o.collateral = None;
        let good = verify(s.kind, &s.quote, &o).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let body_end = match &good.measurements {
            Measurements::Tdx {
                quote_version: 5,
                body_type: 3,
                ..
            } => 48 + 6 + 648,
            Measurements::Tdx {
                quote_version: 5, ..
            } => 48 + 6 + 584,
            Measurements::Tdx { .. } => 48 + 584,
            _ => 48 + 384,
        };
        // Header + body (stride 5), then signature (64), attestation key (64), QE report
        // (384) and QE report signature (64), all at stride 3.
        let sig_start = body_end + 4;
        let positions = (0..body_end)
            .step_by(common::stride(5))
            .chain((sig_start..sig_start + 64 + 64 + 384 + 64).step_by(common::stride(3)));
        for pos in positions {
            let mut bad = s.quote.clone();
            bad[pos] ^= 0x40;
            let err =
                verify(s.kind, &bad, &o).expect_err(&format!("{}: flip at {pos} accepted", s.name));
            let ok = match &err {
                VerifyError::BadSignature { .. } | VerifyError::Mismatch { .. } => true,
                // header.version / att_key_type / tee_type / vendor / v5 body descriptor
                VerifyError::Unsupported { .. }
                | VerifyError::Malformed { .. }
                | VerifyError::Input { .. } => pos < 54 || pos >= sig_start,
                // A flipped QE report field can make the QE report itself unusable.
                _ => false,
            };
            assert!(ok, "{}: flip at {pos}: unexpected {err:?}", s.name);
        }
    }
}

#[test]
fn wrong_kind_is_refused() {
    let Some(dir) = common::fixtures("wrong_kind_is_refused") else {
        return;
    };
    for s in samples(&dir) {
        let other = if s.kind == TeeKind::Tdx {
            TeeKind::Sgx
        } else {
            TeeKind::Tdx
        };
        assert!(
            matches!(
                verify(other, &s.quote, &s.opts),
                Err(VerifyError::Input { .. })
            ),
            "{}",
            s.name
        );
    }
}

#[test]
fn collateral_outside_its_window_is_reported_as_expired() {
    let Some(dir) = common::fixtures("collateral_outside_its_window_is_reported_as_expired") else {
        return;
    };
    for s in samples(&dir) {
        let Some((start, end)) = s.window else {
            continue;
        };
        let mut o = s.opts.clone();
        o.at = VerifyTime::from_unix(end.unix() + 1);
        let e = verify(s.kind, &s.quote, &o).expect_err("expired collateral accepted");
        assert!(
            matches!(
                e,
                VerifyError::CollateralExpired { .. } | VerifyError::CertExpired { .. }
            ),
            "{}: {e:?}",
            s.name
        );
        o.at = VerifyTime::from_unix(start.unix() - 1);
        let e = verify(s.kind, &s.quote, &o).expect_err("not-yet-valid collateral accepted");
        assert!(
            matches!(
                e,
                VerifyError::CollateralExpired { .. } | VerifyError::CertNotYetValid { .. }
            ),
            "{}: {e:?}",
            s.name
        );
        // The PROVENANCE re-check instant: every sample is refused.
        o.at = VerifyTime::from_unix(1_795_000_000);
        let e = verify(s.kind, &s.quote, &o).expect_err("2026-11 accepted");
        assert!(e.to_string().contains("expired"), "{}: {e}", s.name);
    }
}

#[test]
fn pck_chain_outside_validity_names_the_cert() {
    let Some(dir) = common::fixtures("pck_chain_outside_validity_names_the_cert") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.contains("tdx_quote_4"))
        .expect("sample");
    let mut o = s.opts.clone();
    o.at = common::at("2031-01-01T00:00:00Z");
    match verify(s.kind, &s.quote, &o) {
        Err(VerifyError::CertExpired { cert, .. }) => {
            assert!(cert.contains("Intel SGX PCK Certificate"), "{cert}")
        }
        other => panic!("expected CertExpired, got {other:?}"),
    }
}

#[test]
fn quote_with_another_platforms_pck_chain_is_refused() {
    let Some(dir) = common::fixtures("quote_with_another_platforms_pck_chain_is_refused") else {
        return;
    };
    let all = samples(&dir);
    let a = all
        .iter()
        .find(|s| s.name.contains("tdx_quote_4"))
        .expect("a");
    let b = all
        .iter()
        .find(|s| s.name.contains("tdx/dcap-qvl/tdx_quote.bin"))
        .expect("b");
    // Put b's PCK chain (the collateral field dcap-qvl prefers) next to a's quote.
    let b_quote = ironclaw_verifier::dcap::quote::parse(&b.quote)
        .expect("parse")
        .1;
    let pem = String::from_utf8(b_quote.raw_cert_chain().expect("type 5").to_vec()).expect("pem");
    let coll: serde_json::Value =
        serde_json::from_slice(b.opts.collateral.as_ref().expect("coll")).expect("json");
    let mut coll = coll;
    coll["pck_certificate_chain"] = serde_json::Value::String(pem);
    let mut o = b.opts.clone();
    o.collateral = Some(serde_json::to_vec(&coll).expect("json"));
    let e = verify(a.kind, &a.quote, &o).expect_err("foreign PCK accepted");
    assert!(
        matches!(
            e,
            VerifyError::BadSignature {
                what: "DCAP QE report",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn trailing_garbage_and_truncation_are_refused() {
    let Some(dir) = common::fixtures("trailing_garbage_and_truncation_are_refused") else {
        return;
    };
    let s = &samples(&dir)[0];
    let mut long = s.quote.clone();
    long.extend_from_slice(&[0, 0, 7]);
    assert!(matches!(
        verify(s.kind, &long, &s.opts),
        Err(VerifyError::Malformed {
            field: "trailing data",
            ..
        })
    ));
    let used = ironclaw_verifier::dcap::quote::parse(&s.quote)
        .expect("parse")
        .2;
    for cut in [0, 10, 47, 300, used - 1] {
        assert!(
            verify(s.kind, &s.quote[..cut], &s.opts).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn quote_fmspc_reads_the_pck_certificates_platform() {
    let Some(dir) = common::fixtures("quote_fmspc_reads_the_pck_certificates_platform") else {
        return;
    };
    // FMSPCs as PROVENANCE.md lists them for each quote.
    for (quote, fmspc) in [
        ("tdx/dcap-qvl/tdx_quote.bin", "B0C06F000000"),
        ("tdx/dcap-qvl/tdx_quote_outdated.bin", "90C06F000000"),
        ("sgx/dcap-qvl/sgx_quote.bin", "00A067110000"),
        ("tdx/trustee/tdx_quote_4.dat", "50806F000000"),
        ("sgx/trustee/occlum_quote.dat", "00606A000000"),
    ] {
        let got = ironclaw_verifier::dcap::quote_fmspc(&common::read(&dir, quote))
            .unwrap_or_else(|e| panic!("{quote}: {e}"));
        assert_eq!(hex::encode_upper(got), fmspc, "{quote}");
    }
    // Not a quote: the structural error, not a panic.
    let e = ironclaw_verifier::dcap::quote_fmspc(&[3, 0, 2, 0]).unwrap_err();
    assert_eq!(e.kind(), "malformed", "{e}");
}
