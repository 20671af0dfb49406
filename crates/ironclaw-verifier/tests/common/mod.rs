//! Fixture access for the verifier's integration tests: ../shared/fixtures/attestation
//! relative to the repository root, driven by its index.json.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ironclaw_verifier::{VerifyOptions, VerifyTime};

/// The fixture directory, or `None` after a recorded skip when shared/ is absent (a failure
/// under CI; see `claw_testsupport::SkipPolicy`).
pub(crate) fn fixtures(test: &str) -> Option<PathBuf> {
    claw_testsupport::require_attestation_fixtures(test)
}

pub(crate) fn index(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("index.json")).expect("read index.json");
    serde_json::from_str(&text).expect("index.json is JSON")
}

pub(crate) fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read fixture {rel}: {e}"))
}

/// index.json cert references look like "path" or "path#N (comment)": the file's
/// N-th PEM block. Returns the bytes to pass as one --cert file.
pub(crate) fn cert_ref(dir: &Path, reference: &str) -> (String, Vec<u8>) {
    let reference = reference.split(' ').next().unwrap_or(reference);
    let (path, index) = match reference.split_once('#') {
        Some((p, i)) => (p, Some(i.parse::<usize>().expect("cert index"))),
        None => (reference, None),
    };
    let bytes = read(dir, path);
    match index {
        None => (path.to_string(), bytes),
        Some(i) => {
            let text = String::from_utf8(bytes).expect("PEM is text");
            let blocks: Vec<&str> = text
                .split_inclusive("-----END CERTIFICATE-----")
                .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
                .collect();
            (format!("{path}#{i}"), blocks[i].as_bytes().to_vec())
        }
    }
}

pub(crate) fn at(s: &str) -> VerifyTime {
    VerifyTime::parse_rfc3339(s).expect("fixture time")
}

pub(crate) fn opts(
    at: VerifyTime,
    certs: Vec<(String, Vec<u8>)>,
    collateral: Option<Vec<u8>>,
) -> VerifyOptions {
    VerifyOptions {
        at,
        certs,
        collateral,
    }
}

/// Stride for byte-flip sweeps: `default`, or 1 when IRONCLAW_VERIFIER_FULL_FLIP=1
/// (every byte; slower, for a thorough local run).
pub(crate) fn stride(default: usize) -> usize {
    if std::env::var("IRONCLAW_VERIFIER_FULL_FLIP").as_deref() == Ok("1") {
        1
    } else {
        default
    }
}
