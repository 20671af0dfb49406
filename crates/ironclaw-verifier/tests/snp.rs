//! SEV-SNP against the real reports in shared/fixtures/attestation (index.json).

mod common;

use std::path::Path;

use ironclaw_verifier::{verify, Measurements, PolicyBits, TeeKind, VerifyError, VerifyOptions};

struct Sample {
    name: String,
    report: Vec<u8>,
    opts: VerifyOptions,
    version: u32,
    signer: String,
    window: Option<(String, String)>,
}

fn samples(dir: &Path) -> Vec<Sample> {
    let idx = common::index(dir);
    let mut out = Vec::new();
    for s in idx["sev-snp"].as_array().expect("sev-snp list") {
        let Some(report) = s["report"].as_str() else {
            continue;
        };
        let mut certs = vec![common::cert_ref(dir, s["vek"].as_str().expect("vek"))];
        certs.push(common::cert_ref(dir, s["ask"].as_str().expect("ask")));
        certs.push(common::cert_ref(dir, s["ark"].as_str().expect("ark")));
        assert_eq!(s["expect"], "ok");
        out.push(Sample {
            name: report.to_string(),
            report: common::read(dir, report),
            opts: common::opts(
                common::at(s["eval_time"].as_str().expect("eval_time")),
                certs,
                None,
            ),
            version: s["version"].as_u64().expect("version") as u32,
            signer: s["signer"].as_str().expect("signer").to_string(),
            window: s["valid_window"].as_array().map(|w| {
                (
                    w[0].as_str().expect("w0").to_string(),
                    w[1].as_str().expect("w1").to_string(),
                )
            }),
        });
    }
    assert!(out.len() >= 5, "index.json lists the SNP samples");
    out
}

/// The raw 1184 bytes of a sample (hex fixtures decoded).
fn raw(s: &Sample) -> Vec<u8> {
    ironclaw_verifier::input::decode_evidence(&s.report).0
}

#[test]
fn every_snp_sample_verifies_at_its_eval_time() {
    let Some(dir) = common::fixtures("every_snp_sample_verifies_at_its_eval_time") else {
        return;
    };
    for s in samples(&dir) {
        let r =
            verify(TeeKind::Snp, &s.report, &s.opts).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(r.tee, TeeKind::Snp);
        let Measurements::Snp {
            version,
            measurement,
            ..
        } = &r.measurements
        else {
            panic!("snp measurements")
        };
        assert_eq!(*version, s.version, "{}", s.name);
        assert_eq!(measurement.as_slice(), &raw(&s)[0x90..0xC0], "{}", s.name);
        assert_eq!(
            r.report_data.as_ref().map(|b| b.as_slice()),
            Some(&raw(&s)[0x50..0x90])
        );
        let PolicyBits::Snp {
            signing_key,
            raw: pol,
            debug_allowed,
            ..
        } = r.policy
        else {
            panic!("snp policy")
        };
        assert_eq!(
            signing_key,
            if s.signer == "VLEK" { 1 } else { 0 },
            "{}",
            s.name
        );
        assert_eq!(debug_allowed, pol & (1 << 19) != 0);
        assert_eq!(r.debug, debug_allowed);
        assert_eq!(r.signer_chain.len(), 3);
        assert!(
            r.signer_chain[2].subject.contains("ARK-Milan"),
            "{}",
            s.name
        );
        assert!(
            r.signer_chain[0]
                .subject
                .contains(&format!("SEV-{}", s.signer)),
            "{}",
            s.name
        );
        assert_eq!(r.verified_at, s.opts.at.to_rfc3339());
    }
}

#[test]
fn go_sev_guest_report_data_is_exposed() {
    let Some(dir) = common::fixtures("go_sev_guest_report_data_is_exposed") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.contains("go-sev-guest"))
        .expect("sample");
    let r = verify(TeeKind::Snp, &s.report, &s.opts).expect("verifies");
    let rd = r.report_data.expect("report data");
    assert_eq!(&rd.as_slice()[..6], &[1, 2, 3, 4, 5, 0]);
}

#[test]
fn snp_verifies_with_only_the_vek_thanks_to_builtin_roots() {
    let Some(dir) = common::fixtures("snp_verifies_with_only_the_vek_thanks_to_builtin_roots")
    else {
        return;
    };
    for mut s in samples(&dir) {
        s.opts.certs.truncate(1);
        verify(TeeKind::Snp, &s.report, &s.opts).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    }
}

#[test]
fn flipping_any_signed_byte_fails() {
    let Some(dir) = common::fixtures("flipping_any_signed_byte_fails") else {
        return;
    };
    for s in samples(&dir) {
        let good = raw(&s);
        // Every byte of the signed region (stride 1 on one sample, 7 on the others)
        // and every byte of the signature.
        let stride = if s.name.contains("go-sev-guest") {
            1
        } else {
            common::stride(7)
        };
        let positions = (0..0x2A0).step_by(stride).chain(0x2A0..0x4A0);
        for pos in positions {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            let err = verify(TeeKind::Snp, &bad, &s.opts)
                .expect_err(&format!("{}: flip at {pos:#x} accepted", s.name));
            match (&err, pos) {
                (VerifyError::BadSignature { what, cert }, _) => {
                    assert_eq!(*what, "SEV-SNP report");
                    assert!(cert.contains("SEV-V"), "{cert}");
                }
                // VERSION, SIGNATURE_ALGO, SIGNING_KEY are checked before the signature.
                (VerifyError::Unsupported { .. }, 0x00..=0x03 | 0x34..=0x37 | 0x48) => {}
                // SIGNING_KEY flip turns a VCEK report into a VLEK one (or back): role mismatch.
                (VerifyError::CertContent { .. } | VerifyError::MissingCert { .. }, 0x48) => {}
                (VerifyError::Malformed { offset, .. }, p) if p >= 0x2A0 => {
                    assert!(*offset >= 0x2A0)
                }
                _ => panic!("{}: flip at {pos:#x}: unexpected error {err:?}", s.name),
            }
        }
    }
}

#[test]
fn another_chips_vcek_is_refused() {
    let Some(dir) = common::fixtures("another_chips_vcek_is_refused") else {
        return;
    };
    let all = samples(&dir);
    let vceks: Vec<_> = all.iter().filter(|s| s.signer == "VCEK").collect();
    for (i, s) in vceks.iter().enumerate() {
        let other = vceks[(i + 1) % vceks.len()];
        let mut opts = s.opts.clone();
        opts.certs[0] = other.opts.certs[0].clone();
        let err = verify(TeeKind::Snp, &s.report, &opts).expect_err("other chip's VCEK accepted");
        assert!(
            matches!(err, VerifyError::BadSignature { .. }),
            "{}: {err:?}",
            s.name
        );
    }
}

#[test]
fn tampered_vceks_are_refused() {
    let Some(dir) = common::fixtures("tampered_vceks_are_refused") else {
        return;
    };
    let idx = common::index(&dir);
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.contains("trustee/vcek-report"))
        .expect("trustee sample");
    let mut n = 0;
    for entry in idx["sev-snp"].as_array().expect("list") {
        let Some(cert) = entry["cert"].as_str() else {
            continue;
        };
        assert!(entry["expect"]
            .as_str()
            .expect("expect")
            .starts_with("reject"));
        let mut opts = s.opts.clone();
        opts.certs[0] = common::cert_ref(&dir, cert);
        let err = verify(TeeKind::Snp, &s.report, &opts).expect_err("tampered VCEK accepted");
        match &err {
            VerifyError::CertSignature { cert, issuer, .. } => {
                assert!(cert.contains("SEV-VCEK"), "{cert}");
                assert!(issuer.contains("SEV-Milan"), "{issuer}");
            }
            VerifyError::CertParse { .. } | VerifyError::CertContent { .. } => {}
            other => panic!("{cert}: unexpected {other:?}"),
        }
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn outside_the_validity_window_names_the_cert() {
    let Some(dir) = common::fixtures("outside_the_validity_window_names_the_cert") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.window.is_some())
        .expect("VLEK sample with a window");
    let (start, end) = s.window.clone().expect("window");
    let mut opts = s.opts.clone();
    opts.at = ironclaw_verifier::VerifyTime::from_unix(common::at(&end).unix() + 1);
    match verify(TeeKind::Snp, &s.report, &opts) {
        Err(VerifyError::CertExpired { cert, .. }) => assert!(cert.contains("SEV-VLEK"), "{cert}"),
        other => panic!("expected CertExpired, got {other:?}"),
    }
    opts.at = ironclaw_verifier::VerifyTime::from_unix(common::at(&start).unix() - 1);
    match verify(TeeKind::Snp, &s.report, &opts) {
        Err(VerifyError::CertNotYetValid { cert, .. }) => {
            assert!(cert.contains("SEV-VLEK"), "{cert}")
        }
        other => panic!("expected CertNotYetValid, got {other:?}"),
    }
    // Edges of the window are inside.
    opts.at = common::at(&end);
    verify(TeeKind::Snp, &s.report, &opts).expect("valid at notAfter");
    // A VCEK sample long after its 7-year VCEK: expired, naming the VCEK.
    let v = samples(&dir)
        .into_iter()
        .find(|s| s.signer == "VCEK")
        .expect("vcek sample");
    let mut o = v.opts.clone();
    o.at = common::at("2031-01-01T00:00:00Z");
    match verify(TeeKind::Snp, &v.report, &o) {
        Err(VerifyError::CertExpired { cert, .. }) => assert!(cert.contains("SEV-VCEK"), "{cert}"),
        other => panic!("expected CertExpired, got {other:?}"),
    }
}

#[test]
fn unknown_version_and_truncation_are_refused_with_offsets() {
    let Some(dir) = common::fixtures("unknown_version_and_truncation_are_refused_with_offsets")
    else {
        return;
    };
    let s = &samples(&dir)[0];
    let mut bad = raw(s);
    bad[0] = 9;
    assert!(matches!(
        verify(TeeKind::Snp, &bad, &s.opts),
        Err(VerifyError::Unsupported {
            field: "VERSION",
            found: 9,
            ..
        })
    ));
    let short = &raw(s)[..1000];
    assert!(matches!(
        verify(TeeKind::Snp, short, &s.opts),
        Err(VerifyError::Malformed { .. })
    ));
    let mut long = raw(s);
    long.push(0);
    assert!(matches!(
        verify(TeeKind::Snp, &long, &s.opts),
        Err(VerifyError::Malformed { .. })
    ));
}

#[test]
fn missing_vek_is_reported() {
    let Some(dir) = common::fixtures("missing_vek_is_reported") else {
        return;
    };
    let mut s = samples(&dir).remove(0);
    s.opts.certs.remove(0);
    assert!(matches!(
        verify(TeeKind::Snp, &s.report, &s.opts),
        Err(VerifyError::MissingCert { .. })
    ));
}

#[test]
fn builtin_arks_are_self_signed_and_pinned() {
    let arks = ironclaw_verifier::snp::builtin_arks().expect("built-in ARKs parse");
    assert_eq!(arks.len(), 3);
    for (p, ark) in &arks {
        ark.verify_signed_by(ark)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name()));
        assert!(ark.subject().contains(&format!("ARK-{}", p.name())));
    }
}

#[test]
fn tampered_vcek_errors_name_the_certificate() {
    let Some(dir) = common::fixtures("tampered_vcek_errors_name_the_certificate") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.contains("trustee/vcek-report"))
        .expect("trustee sample");
    for cert in [
        "sev-snp/trustee/vcek-invalid-legacy.der",
        "sev-snp/trustee/vcek-invalid-new.der",
    ] {
        let mut opts = s.opts.clone();
        opts.certs[0] = common::cert_ref(&dir, cert);
        let err = verify(TeeKind::Snp, &s.report, &opts).expect_err("tampered");
        let msg = err.to_string();
        eprintln!("{cert}: {msg}");
        assert!(msg.contains("SEV-VCEK"), "{msg}");
    }
    let r = verify(TeeKind::Snp, &s.report, &s.opts).expect("ok");
    eprintln!("{}", serde_json::to_string_pretty(&r).expect("json"));
}

#[test]
fn report_containers_are_unwrapped() {
    let Some(dir) = common::fixtures("report_containers_are_unwrapped") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.contains("trustee-azure"))
        .expect("azure sample");
    let bare = verify(TeeKind::Snp, &s.report, &s.opts).expect("bare");
    // The Azure HCL report the derived sample was cut from.
    let hcl = common::read(&dir, "sev-snp/trustee-azure/hcl-report-milan.bin");
    let r = verify(TeeKind::Snp, &hcl, &s.opts).expect("HCLA container");
    assert_eq!(r, bare);
    // MSG_REPORT_RSP: status 0, report_size 0x4A0, 24 reserved bytes, report.
    let mut rsp = vec![0u8; 0x20];
    rsp[4..8].copy_from_slice(&0x4A0u32.to_le_bytes());
    rsp.extend_from_slice(&raw(&s));
    assert_eq!(
        verify(TeeKind::Snp, &rsp, &s.opts).expect("MSG_REPORT_RSP"),
        bare
    );
    rsp[0] = 0x16; // firmware error status
    assert!(matches!(
        verify(TeeKind::Snp, &rsp, &s.opts),
        Err(VerifyError::Malformed {
            field: "status",
            ..
        })
    ));
}

#[test]
fn a_supplied_root_must_be_the_pinned_one() {
    let Some(dir) = common::fixtures("a_supplied_root_must_be_the_pinned_one") else {
        return;
    };
    let s = samples(&dir).remove(0);
    let ark = ironclaw_verifier::snp::builtin_arks()
        .expect("arks")
        .into_iter()
        .find(|(p, _)| p.name() == "Milan")
        .expect("milan")
        .1;
    let mut forged = ark.der().to_vec();
    let n = forged.len();
    forged[n - 10] ^= 0x01; // inside the signature: still parses, same subject
    let mut opts = s.opts.clone();
    opts.certs.push(("forged-ark.der".into(), forged));
    match verify(TeeKind::Snp, &s.report, &opts) {
        Err(VerifyError::UntrustedRoot { reason }) => {
            assert!(reason.contains("ARK-Milan"), "{reason}")
        }
        other => panic!("expected UntrustedRoot, got {other:?}"),
    }
}

#[test]
fn builtin_intermediates_chain_to_their_ark() {
    let arks = ironclaw_verifier::snp::builtin_arks().expect("arks");
    let inters = ironclaw_verifier::snp::builtin_intermediates().expect("intermediates");
    assert_eq!(inters.len(), 6);
    for product in ["Milan", "Genoa", "Turin"] {
        let ark = &arks
            .iter()
            .find(|(p, _)| p.name() == product)
            .expect("ark")
            .1;
        for cn in [
            format!("CN=SEV-{product}"),
            format!("CN=SEV-VLEK-{product}"),
        ] {
            let c = inters
                .iter()
                .find(|c| c.subject().contains(&cn))
                .unwrap_or_else(|| panic!("{cn} built in"));
            c.verify_signed_by(ark)
                .unwrap_or_else(|e| panic!("{cn}: {e}"));
        }
    }
}
