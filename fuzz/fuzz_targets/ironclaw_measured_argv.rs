//! Fuzzes the shim's reader of a module's `ironclaw.argv` section
//! (`ironclaw_abi::measured_argv::decode`): arbitrary bytes never panic, and whatever decodes
//! encodes back to exactly the same bytes (no two payloads mean the same argv).
#![no_main]

use ironclaw_abi::measured_argv::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(args) = decode(data) {
        assert_eq!(encode(&args), data);
        assert!(args.iter().all(|a| !a.contains(&0)));
    }
});
