//! Parser edge cases on constructed inputs (no fixtures needed): SNP report fields,
//! TCB layouts per product, certificate bundles, DCAP headers, evidence encodings.

use ironclaw_verifier::dcap::quote;
use ironclaw_verifier::input::{decode_evidence, Encoding};
use ironclaw_verifier::snp::report::{Product, RawTcb, Report, SigningKey, REPORT_LEN};
use ironclaw_verifier::snp::vcek_ext;
use ironclaw_verifier::x509::parse_bundle;
use ironclaw_verifier::VerifyError;

fn report(version: u32) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    r[0..4].copy_from_slice(&version.to_le_bytes());
    r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
    r
}

#[test]
fn snp_versions_two_to_five_parse_others_are_refused() {
    for v in 2..=5 {
        let r = Report::parse(&report(v)).expect("parses");
        assert_eq!(r.version, v);
        assert_eq!(r.cpuid.is_some(), v >= 3);
    }
    for v in [0, 1, 6, 0xffff_ffff] {
        match Report::parse(&report(v)) {
            Err(VerifyError::Unsupported {
                field: "VERSION",
                found,
                ..
            }) => assert_eq!(found, u64::from(v)),
            other => panic!("version {v}: {other:?}"),
        }
    }
}

#[test]
fn snp_signature_algo_and_signing_key_are_checked() {
    let mut r = report(2);
    r[0x34] = 2;
    assert!(matches!(
        Report::parse(&r),
        Err(VerifyError::Unsupported {
            field: "SIGNATURE_ALGO",
            ..
        })
    ));
    let mut r = report(3);
    r[0x48] = 1 << 2; // SIGNING_KEY = 1 (VLEK)
    assert_eq!(
        Report::parse(&r).expect("vlek").signing_key,
        SigningKey::Vlek
    );
    r[0x48] = 7 << 2; // 7: no key
    assert!(matches!(
        Report::parse(&r),
        Err(VerifyError::Unsupported {
            field: "SIGNING_KEY",
            found: 7,
            ..
        })
    ));
    r[0x48] = 2; // MASK_CHIP_ID
    assert!(Report::parse(&r).expect("masked").mask_chip_id);
}

#[test]
fn snp_signature_scalars_must_fit_p384() {
    let mut r = report(2);
    r[0x2A0 + 48] = 1; // byte 48 of R (little-endian): above a P-384 scalar
    match Report::parse(&r) {
        Err(VerifyError::Malformed {
            field: "SIGNATURE.R",
            offset,
            ..
        }) => assert_eq!(offset, 0x2A0),
        other => panic!("{other:?}"),
    }
    let mut r = report(2);
    r[0x2A0] = 0xAB; // least significant byte of R
    let p = Report::parse(&r).expect("parses");
    assert_eq!(p.sig_r[47], 0xAB, "R is converted to big-endian");
}

#[test]
fn snp_report_length_is_exact() {
    assert!(matches!(
        Report::parse(&vec![0u8; REPORT_LEN - 1]),
        Err(VerifyError::Malformed { .. })
    ));
    assert!(matches!(
        Report::parse(&vec![0u8; REPORT_LEN + 1]),
        Err(VerifyError::Malformed { .. })
    ));
    assert!(Report::parse(&[]).is_err());
}

#[test]
fn tcb_layout_differs_for_turin() {
    // bytes (LE): 0:0x11 1:0x22 2:0x33 3:0x44 ... 6:0x77 7:0x88
    let raw = RawTcb(u64::from_le_bytes([
        0x11, 0x22, 0x33, 0x44, 0, 0, 0x77, 0x88,
    ]));
    let m = raw.decode(Product::Milan);
    assert_eq!(
        (m.bootloader, m.tee, m.snp, m.microcode, m.fmc),
        (0x11, 0x22, 0x77, 0x88, None)
    );
    assert_eq!(raw.decode(Product::Genoa), m);
    let t = raw.decode(Product::Turin);
    assert_eq!(
        (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
        (Some(0x11), 0x22, 0x33, 0x44, 0x88)
    );
}

#[test]
fn vcek_extension_values() {
    assert_eq!(
        vcek_ext::decode_spl(&[0x02, 0x01, 0x73], "x").expect("int"),
        0x73
    );
    assert_eq!(
        vcek_ext::decode_spl(&[0x02, 0x02, 0x00, 0xd1], "x").expect("int"),
        0xd1
    );
    assert!(
        vcek_ext::decode_spl(&[0x02, 0x02, 0x01, 0x00], "x").is_err(),
        "256 is not an SPL"
    );
    assert!(
        vcek_ext::decode_spl(&[0x04, 0x01, 0x01], "x").is_err(),
        "not an INTEGER"
    );
    let mut os = vec![0x04, 0x40];
    os.extend([7u8; 64]);
    assert_eq!(
        vcek_ext::decode_hwid(&os).expect("octet string"),
        vec![7u8; 64]
    );
    assert_eq!(
        vcek_ext::decode_hwid(&[9u8; 64]).expect("raw"),
        vec![9u8; 64]
    );
    assert!(vcek_ext::decode_hwid(&[1, 2, 3]).is_err());
}

#[test]
fn cert_bundles_in_any_encoding() {
    let pems = [
        include_bytes!("../src/snp/roots/ark_milan.pem").as_slice(),
        include_bytes!("../src/snp/roots/ask_milan.pem").as_slice(),
    ];
    let mut joined = b"junk before\n".to_vec();
    for p in pems {
        joined.extend_from_slice(p);
        joined.extend_from_slice(b"\n");
    }
    let certs = parse_bundle(&joined, "joined.pem").expect("two PEM blocks");
    assert_eq!(certs.len(), 2);
    // The same two as concatenated DER.
    let mut der = certs[0].der().to_vec();
    der.extend_from_slice(certs[1].der());
    let again = parse_bundle(&der, "joined.der").expect("two DER certs");
    assert_eq!(again, certs);
    // Truncated DER names the offset.
    match parse_bundle(&der[..der.len() - 1], "cut.der") {
        Err(VerifyError::CertParse { which, .. }) => {
            assert!(which.contains("cut.der at byte offset"), "{which}")
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_bundle(b"", "empty").is_err());
    assert!(parse_bundle(b"-----BEGIN CERTIFICATE-----\nAAAA\n", "open").is_err());
    assert!(parse_bundle(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "key"
    )
    .is_err());
}

#[test]
fn dcap_header_fields_are_checked_with_offsets() {
    let mut h = vec![0u8; 64];
    h[0] = 4;
    h[2] = 2;
    h[4] = 0x81;
    h[12..28].copy_from_slice(&quote::INTEL_QE_VENDOR_ID);
    let info = quote::check_header(&h).expect("header ok");
    assert_eq!((info.version, info.tee_type), (4, quote::TEE_TYPE_TDX));
    let mut bad = h.clone();
    bad[0] = 2;
    assert!(matches!(
        quote::check_header(&bad),
        Err(VerifyError::Unsupported {
            field: "header.version",
            ..
        })
    ));
    let mut bad = h.clone();
    bad[2] = 3;
    assert!(matches!(
        quote::check_header(&bad),
        Err(VerifyError::Unsupported {
            field: "header.att_key_type",
            ..
        })
    ));
    let mut bad = h.clone();
    bad[4] = 0x80;
    assert!(matches!(
        quote::check_header(&bad),
        Err(VerifyError::Unsupported {
            field: "header.tee_type",
            ..
        })
    ));
    let mut bad = h.clone();
    bad[20] ^= 1;
    assert!(matches!(
        quote::check_header(&bad),
        Err(VerifyError::Malformed {
            field: "header.qe_vendor_id",
            offset: 12,
            ..
        })
    ));
    // v5: body descriptor type and size.
    let mut v5 = h.clone();
    v5[0] = 5;
    v5[48] = 3;
    v5[50..54].copy_from_slice(&648u32.to_le_bytes());
    assert_eq!(quote::check_header(&v5).expect("TD 1.5").body_type, 3);
    v5[50..54].copy_from_slice(&584u32.to_le_bytes());
    assert!(matches!(
        quote::check_header(&v5),
        Err(VerifyError::Malformed {
            field: "body.size",
            ..
        })
    ));
    v5[48] = 9;
    assert!(matches!(
        quote::check_header(&v5),
        Err(VerifyError::Unsupported {
            field: "body.type",
            found: 9,
            ..
        })
    ));
    v5[48] = 1; // SGX body in a TDX quote
    v5[50..54].copy_from_slice(&384u32.to_le_bytes());
    assert!(matches!(
        quote::check_header(&v5),
        Err(VerifyError::Malformed {
            field: "body.type",
            ..
        })
    ));
    assert!(quote::check_header(&h[..10]).is_err());
}

#[test]
fn evidence_encodings() {
    assert_eq!(
        decode_evidence(b"0xDEAD beef\n").0,
        vec![0xde, 0xad, 0xbe, 0xef]
    );
    let raw = [0u8, 1, 2, 0xff];
    assert_eq!(decode_evidence(&raw), (raw.to_vec(), Encoding::Raw));
    // Odd-length hex is not hex.
    assert_ne!(decode_evidence(b"abc").1, Encoding::Hex);
}
