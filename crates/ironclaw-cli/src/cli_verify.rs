//! `ironclaw verify`: check attestation evidence (SEV-SNP, TDX, SGX, Nitro, kvm)
//! with ironclaw-verifier and print the normalized result or the reason for
//! refusal. Argument parsing and file reading only; the library does the work.
//!
//! Exit status: 0 the evidence verified; 1 it was refused; 2 usage error or an
//! input file could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ironclaw_verifier::{AttestationResult, Measurements, TeeKind, VerifyOptions, VerifyTime};

/// Exit status when the evidence is refused.
pub(crate) const EXIT_REFUSED: u8 = 1;
/// Exit status for usage errors and unreadable inputs.
pub(crate) const EXIT_USAGE: u8 = 2;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Evidence kind: snp, tdx, sgx, nitro or kvm.
    #[arg(long, value_parser = parse_kind)]
    kind: TeeKind,
    /// Evidence file: raw bytes, hex text or base64 text.
    file: PathBuf,
    /// Certificate file, PEM or DER, repeatable, any order (SNP: VCEK/VLEK and
    /// optionally ASK/ASVK/ARK; DCAP: PCK chain when the quote has none; kvm: the
    /// trusted platform key as a public JWK).
    #[arg(long = "cert", value_name = "FILE")]
    certs: Vec<PathBuf>,
    /// DCAP collateral JSON (QuoteCollateralV3 layout).
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Verification instant, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Print the result (or the refusal) as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_kind(s: &str) -> Result<TeeKind, String> {
    s.parse()
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(path).map_err(|e| {
        eprintln!("ironclaw verify: reading {what} {}: {e}", path.display());
        ExitCode::from(EXIT_USAGE)
    })
}

/// Run `ironclaw verify`.
pub(crate) fn run(args: VerifyArgs) -> ExitCode {
    let at = match &args.at {
        Some(s) => match VerifyTime::parse_rfc3339(s) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ironclaw verify: --at: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => VerifyTime::now(),
    };
    let evidence = match read(&args.file, "evidence") {
        Ok(b) => b,
        Err(c) => return c,
    };
    let mut opts = VerifyOptions::at(at);
    for c in &args.certs {
        match read(c, "certificate") {
            Ok(b) => opts.certs.push((c.display().to_string(), b)),
            Err(code) => return code,
        }
    }
    if let Some(c) = &args.collateral {
        match read(c, "collateral") {
            Ok(b) => opts.collateral = Some(b),
            Err(code) => return code,
        }
    }
    match ironclaw_verifier::verify(args.kind, &evidence, &opts) {
        Ok(result) => {
            if args.json {
                match serde_json::to_string_pretty(&result) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("ironclaw verify: encoding the result: {e}");
                        return ExitCode::from(EXIT_REFUSED);
                    }
                }
            } else {
                print_human(&result);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if args.json {
                let v = serde_json::json!({
                    "verified": false,
                    "tee": args.kind.as_str(),
                    "error": { "kind": e.kind(), "message": e.to_string() },
                    "verified_at": at.to_rfc3339(),
                });
                println!("{v:#}");
            }
            eprintln!("ironclaw verify: REFUSED: {e}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

fn print_human(r: &AttestationResult) {
    println!("verified: {} evidence at {}", r.tee, r.verified_at);
    if let Some(m) = r.measurements.primary() {
        let name = match &r.measurements {
            Measurements::Snp { .. } => "measurement",
            Measurements::Tdx { .. } => "mr_td",
            Measurements::Sgx { .. } => "mr_enclave",
            Measurements::Nitro { .. } => "pcr0",
            Measurements::Kvm { .. } => "launch_measurement",
        };
        println!("{name}: {}", m.to_hex());
    }
    match &r.measurements {
        Measurements::Tdx { rtmr, .. } => {
            for (i, m) in rtmr.iter().enumerate() {
                println!("rtmr{i}: {}", m.to_hex());
            }
        }
        Measurements::Sgx {
            mr_signer,
            isv_prod_id,
            isv_svn,
            ..
        } => {
            println!("mr_signer: {}", mr_signer.to_hex());
            println!("isv_prod_id: {isv_prod_id} isv_svn: {isv_svn}");
        }
        Measurements::Nitro { module_id, .. } => println!("module_id: {module_id}"),
        _ => {}
    }
    println!("debug: {}", r.debug);
    for (name, v) in [
        ("report_data", &r.report_data),
        ("user_data", &r.user_data),
        ("nonce", &r.nonce),
        ("public_key", &r.public_key),
    ] {
        if let Some(b) = v {
            println!("{name}: {}", b.to_hex());
        }
    }
    print!("tcb_status: {:?}", r.tcb.status);
    if !r.tcb.advisory_ids.is_empty() {
        print!(" advisories: {}", r.tcb.advisory_ids.join(","));
    }
    println!();
    for (i, c) in r.signer_chain.iter().enumerate() {
        println!(
            "signer[{i}]: {} (valid {} .. {})",
            c.subject, c.not_before, c.not_after
        );
    }
}
