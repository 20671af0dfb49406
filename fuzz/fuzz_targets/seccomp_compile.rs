//! nanoclaw-seccomp: `linux.seccomp` from an untrusted config.json is compiled into a BPF filter
//! while the config is validated. Any profile must compile or be refused with an error that
//! names its `linux.seccomp...` field — never panic, abort inside libseccomp or hang — and a
//! compiled filter must generate its BPF program (what `install` would load), here written to
//! /dev/null. Nothing is loaded into this process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxSeccomp, Spec};

fuzz_target!(|data: &[u8]| {
    // Either a bare linux.seccomp object or a whole config.json carrying one.
    let seccomp = match serde_json::from_slice::<LinuxSeccomp>(data) {
        Ok(s) => s,
        Err(_) => match serde_json::from_slice::<Spec>(data) {
            Ok(spec) => match spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
                Some(s) => s,
                None => return,
            },
            Err(_) => return,
        },
    };
    match nanoclaw_seccomp::compile(&seccomp) {
        Ok(filter) => {
            if let Ok(sink) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                let _ = filter.export_bpf(&sink);
            }
            let names: usize = seccomp
                .syscalls()
                .iter()
                .flatten()
                .map(|r| {
                    r.names()
                        .len()
                        .saturating_mul(r.args().as_ref().map_or(1, |a| a.len().max(1)))
                })
                .sum();
            assert!(filter.rule_count() <= names);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("linux.seccomp"),
                "error without its field: {msg}"
            );
        }
    }
});
