//! IronClaw example workload (wasm32-wasip1) using the enclave's own calls:
//!
//! - `secret-hmac hmac REPOSITORY/TYPE/TAG < message`: fetches the secret from the key
//!   broker (released only to this module's attested measurement) and prints
//!   `HMAC-SHA256(key = secret, message = stdin)` as hex;
//! - `secret-hmac hmac-lines < requests`: a small signing service; every stdin line is
//!   `REPOSITORY/TYPE/TAG MESSAGE` and is answered, in order, with the hex HMAC of
//!   MESSAGE under that secret. Each line calls `get_secret` again: the shim keeps the
//!   attested session, so only the first line pays for attestation. With
//!   `SECRET_HMAC_TIMING=1` in the environment, the latency of each `get_secret` (guest
//!   monotonic clock) goes to stderr as `get_secret PATH: N us`;
//! - `secret-hmac seal < data`: prints the sealed blob as hex;
//! - `secret-hmac unseal < hex-blob`: prints the unsealed data.
//!
//! Errors go to stderr with exit code 3 (broker refused / unseal refused) or 1.

#![forbid(unsafe_code)]

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn stdin_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut v) {
        eprintln!("reading stdin: {e}");
        std::process::exit(1);
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn fail(what: &str, e: ironclaw_guest::Error) -> ! {
    eprintln!("secret-hmac: {what}: {e}");
    let code = match e {
        ironclaw_guest::Error::Refused | ironclaw_guest::Error::Authentication => 3,
        _ => 1,
    };
    std::process::exit(code);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();
    match args.get(1).map(String::as_str) {
        Some("hmac") => {
            let Some(path) = args.get(2) else {
                eprintln!("usage: secret-hmac hmac REPOSITORY/TYPE/TAG < message");
                std::process::exit(2);
            };
            let key = ironclaw_guest::get_secret(path).unwrap_or_else(|e| fail("get_secret", e));
            let mut mac =
                Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|_| std::process::exit(1));
            mac.update(&stdin_bytes());
            let _ = writeln!(out, "{}", hex(&mac.finalize().into_bytes()));
        }
        Some("hmac-lines") => {
            let timing = std::env::var_os("SECRET_HMAC_TIMING").is_some_and(|v| v == "1");
            for line in std::io::stdin().lines() {
                let line = line.unwrap_or_else(|e| {
                    eprintln!("reading stdin: {e}");
                    std::process::exit(1);
                });
                let Some((path, message)) = line.split_once(' ') else {
                    eprintln!("secret-hmac: expected `REPOSITORY/TYPE/TAG MESSAGE`, got {line:?}");
                    std::process::exit(2);
                };
                let started = std::time::Instant::now();
                let key =
                    ironclaw_guest::get_secret(path).unwrap_or_else(|e| fail("get_secret", e));
                if timing {
                    eprintln!("get_secret {path}: {} us", started.elapsed().as_micros());
                }
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|_| std::process::exit(1));
                mac.update(message.as_bytes());
                let _ = writeln!(out, "{}", hex(&mac.finalize().into_bytes()));
                let _ = out.flush();
            }
        }
        Some("seal") => {
            let blob = ironclaw_guest::seal(&stdin_bytes()).unwrap_or_else(|e| fail("seal", e));
            let _ = writeln!(out, "{}", hex(&blob));
        }
        Some("unseal") => {
            let text = String::from_utf8(stdin_bytes()).unwrap_or_default();
            let Some(blob) = unhex(&text) else {
                eprintln!("secret-hmac: stdin is not a hex blob");
                std::process::exit(2);
            };
            let data = ironclaw_guest::unseal(&blob).unwrap_or_else(|e| fail("unseal", e));
            let _ = out.write_all(&data);
        }
        _ => {
            eprintln!("usage: secret-hmac hmac PATH | hmac-lines | seal | unseal");
            std::process::exit(2);
        }
    }
}
