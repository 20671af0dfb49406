//! IronClaw example workload (wasm32-wasip1, Rust std): reads all of stdin and prints
//! `HMAC-SHA256(key = argv[1], message = stdin)` as lowercase hex, one line. Exits 2 with a
//! message on stderr when the key is missing.

#![forbid(unsafe_code)]

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn main() {
    let Some(key) = std::env::args().nth(1) else {
        eprintln!("usage: hmac-stdin KEY < message");
        std::process::exit(2);
    };
    let mut message = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut message) {
        eprintln!("reading stdin: {e}");
        std::process::exit(1);
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(&message);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{hex}");
}
