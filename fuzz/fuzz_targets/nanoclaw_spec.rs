//! nanoclaw: config.json is the container tier's untrusted input. Parsing and validating any
//! bytes must return a value or a field-naming error, never panic, hang or touch the host
//! (validate only stats paths and, as root, gives filesystem options to a filesystem context
//! that is never mounted: fsopts.rs).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static BUNDLE: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let bundle = BUNDLE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("claw-fuzz-bundle-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("rootfs"));
        dir
    });
    if let Ok(spec) = nanoclaw::spec::parse(Path::new("config.json"), data) {
        for euid in [0, 1000] {
            if let Ok(plan) = nanoclaw::spec::validate(bundle, spec.clone(), euid) {
                // Invariants the init relies on.
                assert!(!plan.process.args.is_empty());
                assert!(plan.process.cwd.is_absolute());
                for m in &plan.mounts {
                    assert!(m.destination.is_absolute());
                    assert!(!m
                        .destination
                        .components()
                        .any(|c| c == std::path::Component::ParentDir));
                }
            }
        }
    }
});
