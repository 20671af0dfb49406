//! Verification latency per evidence kind on the real fixture samples (release build:
//! `bench/verifier-latency.sh`). Prints the median and p90 of N verifications each.

use std::path::Path;
use std::time::{Duration, Instant};

use ironclaw_verifier::{verify, TeeKind, VerifyOptions, VerifyTime};

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(dir) = claw_testsupport::find_attestation_fixtures(&repo) else {
        eprintln!(
            "verify_latency: no shared/fixtures/attestation beside {} or an ancestor",
            repo.display()
        );
        std::process::exit(1);
    };
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let at = |s: &str| VerifyTime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{e}"));
    let mut cases: Vec<(&str, TeeKind, Vec<u8>, VerifyOptions)> = Vec::new();
    let mut o = VerifyOptions::at(at("2025-06-01T00:00:00Z"));
    o.certs
        .push(("vcek".into(), read("sev-snp/go-sev-guest/vcek.der")));
    cases.push((
        "snp (VCEK, built-in ASK/ARK)",
        TeeKind::Snp,
        read("sev-snp/go-sev-guest/attestation.bin"),
        o,
    ));
    let o = VerifyOptions::at(VerifyTime::from_unix(1_751_624_191));
    cases.push((
        "tdx v4 (no collateral)",
        TeeKind::Tdx,
        read("tdx/dcap-qvl/tdx_quote.bin"),
        o.clone(),
    ));
    let mut oc = o;
    oc.collateral = Some(read("tdx/dcap-qvl/tdx_quote_collateral.json"));
    cases.push((
        "tdx v4 + collateral (dcap-qvl)",
        TeeKind::Tdx,
        read("tdx/dcap-qvl/tdx_quote.bin"),
        oc,
    ));
    let mut o = VerifyOptions::at(VerifyTime::from_unix(1_751_624_924));
    o.collateral = Some(read("sgx/dcap-qvl/sgx_quote_collateral.json"));
    cases.push((
        "sgx v3 + collateral (dcap-qvl)",
        TeeKind::Sgx,
        read("sgx/dcap-qvl/sgx_quote.bin"),
        o,
    ));
    let o = VerifyOptions::at(at("2025-12-25T13:15:37.578Z"));
    cases.push((
        "nitro (5-cert chain)",
        TeeKind::Nitro,
        read("nitro/dstack/nitro_attestation.bin"),
        o,
    ));

    println!(
        "{:<34} {:>10} {:>10}   (n={n})",
        "evidence", "median", "p90"
    );
    for (name, kind, ev, opts) in cases {
        let mut t: Vec<Duration> = (0..n)
            .map(|_| {
                let s = Instant::now();
                verify(kind, &ev, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
                s.elapsed()
            })
            .collect();
        t.sort();
        println!(
            "{name:<34} {:>8.0}µs {:>8.0}µs",
            us(t[n / 2]),
            us(t[n * 9 / 10])
        );
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
