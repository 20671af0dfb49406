//! AWS Nitro attestation documents against the real samples in shared/fixtures/attestation.

mod common;

use std::path::Path;

use ironclaw_verifier::{
    input, verify, Measurements, TeeKind, VerifyError, VerifyOptions, VerifyTime,
};
use sha2::Digest;

struct Sample {
    name: String,
    file: Vec<u8>,
    /// The COSE bytes (framing / base64 removed) and where they start in the decoded file.
    cose: Vec<u8>,
    opts: VerifyOptions,
    debug: bool,
}

fn samples(dir: &Path) -> Vec<Sample> {
    let idx = common::index(dir);
    let mut out = Vec::new();
    for s in idx["nitro"].as_array().expect("nitro list") {
        let path = s["doc"].as_str().expect("doc");
        let file = common::read(dir, path);
        let decoded = input::decode_evidence(&file).0;
        let doc = ironclaw_verifier::nitro::document::Document::parse(&decoded).expect("parse");
        out.push(Sample {
            name: path.to_string(),
            cose: decoded[doc.offset..doc.offset + doc.len].to_vec(),
            file,
            opts: common::opts(
                common::at(s["eval_time"].as_str().expect("eval")),
                Vec::new(),
                None,
            ),
            debug: s["debug"].as_bool().expect("debug"),
        });
    }
    assert_eq!(out.len(), 4);
    out
}

#[test]
fn pinned_nitro_root_matches_provenance() {
    let root = ironclaw_verifier::nitro::root().expect("root");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(root.der())),
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    );
}

#[test]
fn every_nitro_sample_verifies_with_its_debug_flag() {
    let Some(dir) = common::fixtures("every_nitro_sample_verifies_with_its_debug_flag") else {
        return;
    };
    for s in samples(&dir) {
        let r =
            verify(TeeKind::Nitro, &s.file, &s.opts).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(r.tee, TeeKind::Nitro);
        assert_eq!(r.debug, s.debug, "{}", s.name);
        let Measurements::Nitro {
            module_id,
            digest,
            pcrs,
            timestamp_ms,
        } = &r.measurements
        else {
            panic!()
        };
        assert!(module_id.starts_with("i-"), "{module_id}");
        assert_eq!(digest, "SHA384");
        assert_eq!(pcrs[&0].is_all_zero(), s.debug, "{}", s.name);
        assert!(pcrs.values().all(|p| p.as_slice().len() == 48));
        assert_eq!(
            (*timestamp_ms / 1000) as i64,
            s.opts.at.unix(),
            "{}",
            s.name
        );
        assert_eq!(r.signer_chain.len(), 5, "{}", s.name);
        assert!(r.signer_chain[4].subject.contains("aws.nitro-enclaves"));
        // JSON carries the debug flag.
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["debug"], serde_json::Value::Bool(s.debug));
        // Tagged (CBOR tag 18) and untagged forms, raw and hex, verify the same.
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&s.cose);
        let t = verify(TeeKind::Nitro, &tagged, &s.opts)
            .unwrap_or_else(|e| panic!("{} tagged: {e}", s.name));
        assert_eq!(t.measurements, r.measurements);
        let h = verify(TeeKind::Nitro, hex::encode(&s.cose).as_bytes(), &s.opts).expect("hex");
        assert_eq!(h.measurements, r.measurements);
    }
}

#[test]
fn blocky_sample_exposes_user_data_nonce_public_key() {
    let Some(dir) = common::fixtures("blocky_sample_exposes_user_data_nonce_public_key") else {
        return;
    };
    let s = samples(&dir)
        .into_iter()
        .find(|s| s.name.ends_with("blocky-nitrite/nitro_attestation.b64"))
        .expect("s");
    let r = verify(TeeKind::Nitro, &s.file, &s.opts).expect("verifies");
    for (name, v) in [
        ("user_data", &r.user_data),
        ("nonce", &r.nonce),
        ("public_key", &r.public_key),
    ] {
        let v = v.as_ref().unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            !v.as_slice().is_empty() && v.as_slice().iter().all(|b| *b == 1),
            "{name}: {v:?}"
        );
    }
}

#[test]
fn flipping_cose_bytes_fails() {
    let Some(dir) = common::fixtures("flipping_cose_bytes_fails") else {
        return;
    };
    for (i, s) in samples(&dir).into_iter().enumerate() {
        // Every 29th byte of the COSE structure, and the signature (the last 96 bytes):
        // every byte of it on the first sample, every 5th on the others.
        let n = s.cose.len();
        let positions = (0..n)
            .step_by(common::stride(29))
            .chain((n - 96..n).step_by(if i == 0 { 1 } else { 5 }));
        for pos in positions {
            let mut bad = s.cose.clone();
            bad[pos] ^= 0x01;
            let err = verify(TeeKind::Nitro, &bad, &s.opts)
                .expect_err(&format!("{}: flip at {pos} accepted", s.name));
            if pos >= n - 96 {
                assert!(
                    matches!(err, VerifyError::BadSignature { .. }),
                    "{}: {pos}: {err:?}",
                    s.name
                );
            }
        }
    }
}

#[test]
fn outside_the_leaf_validity_names_the_cert() {
    let Some(dir) = common::fixtures("outside_the_leaf_validity_names_the_cert") else {
        return;
    };
    for s in samples(&dir) {
        let mut o = s.opts.clone();
        o.at = VerifyTime::from_unix(s.opts.at.unix() + 4 * 3600);
        match verify(TeeKind::Nitro, &s.file, &o) {
            Err(VerifyError::CertExpired { cert, .. }) => {
                assert!(cert.contains("i-"), "{}: {cert}", s.name)
            }
            other => panic!("{}: expected CertExpired, got {other:?}", s.name),
        }
        o.at = VerifyTime::from_unix(s.opts.at.unix() - 3600);
        match verify(TeeKind::Nitro, &s.file, &o) {
            Err(VerifyError::CertNotYetValid { cert, .. }) => {
                assert!(cert.contains("i-"), "{}: {cert}", s.name)
            }
            other => panic!("{}: expected CertNotYetValid, got {other:?}", s.name),
        }
    }
}

#[test]
fn another_documents_signature_is_refused() {
    let Some(dir) = common::fixtures("another_documents_signature_is_refused") else {
        return;
    };
    let all = samples(&dir);
    // Same length signatures (96 bytes at the end): swap them.
    let (a, b) = (&all[0], &all[1]);
    let mut bad = a.cose.clone();
    let n = bad.len();
    bad[n - 96..].copy_from_slice(&b.cose[b.cose.len() - 96..]);
    assert!(matches!(
        verify(TeeKind::Nitro, &bad, &a.opts),
        Err(VerifyError::BadSignature { .. })
    ));
}

#[test]
fn garbage_is_refused_with_a_field() {
    for junk in [
        &b""[..],
        b"\x84",
        b"\xd2\x84\x40\xa0\xf6\x40",
        b"hello world",
    ] {
        let e = verify(
            TeeKind::Nitro,
            junk,
            &VerifyOptions::at(VerifyTime::from_unix(1_700_000_000)),
        )
        .expect_err("junk accepted");
        assert!(matches!(e, VerifyError::Malformed { .. }), "{e:?}");
    }
}

#[test]
fn collateral_is_refused_for_non_dcap_kinds() {
    let mut o = VerifyOptions::at(VerifyTime::from_unix(1_700_000_000));
    o.collateral = Some(b"{}".to_vec());
    for kind in [TeeKind::Nitro, TeeKind::Snp, TeeKind::Kvm] {
        match verify(kind, b"\x84", &o) {
            Err(VerifyError::Input { what, .. }) => assert_eq!(what, "collateral"),
            other => panic!("{kind}: {other:?}"),
        }
    }
}
