//! Builds the guest side so that a plain `cargo build` of this crate just works:
//!
//! 1. the shim (`crates/ironclaw-shim`, freestanding `x86_64-unknown-linux-gnu`), with a nested
//!    `cargo build --release --locked` in its own target directory, then flattened from ELF
//!    to the exact bytes the host loads at `SHIM_BASE` (`OUT_DIR/shim.bin`) — those bytes are
//!    what the launch measurement covers;
//! 2. the example workloads (`examples/wasm`): the Rust `wasm32-wasip1` program with another
//!    nested cargo build, and every `*.wat` file converted to `.wasm`. Their directory is
//!    exported to the crate as `IRONCLAW_EXAMPLES_DIR` (tests, benchmarks, demo).
//!
//! Reproducibility: the nested builds get a clean, explicit flag set (inherited RUSTFLAGS,
//! CARGO_ENCODED_RUSTFLAGS, CARGO_BUILD_* and the outer build's profile variables are
//! removed), no debug info, and `--remap-path-prefix` for the workspace and cargo-home paths,
//! so the shim's bytes do not depend on where the tree is checked out.

use std::path::{Path, PathBuf};

#[path = "build/guest_build.rs"]
mod guest_build;

use guest_build::{flatten_shim, nested_build, BoxError, SHIM_FLAGS, SHIM_TARGET};

fn main() -> Result<(), BoxError> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .ok_or("crates/ironclaw has no workspace root above it")?
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // OUT_DIR = <target>/<profile>/build/<pkg>/out: share one nested target dir per outer one.
    let guest_target = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("ironclaw-guest"))
        .unwrap_or_else(|| out_dir.join("ironclaw-guest"));

    for p in [
        "crates/ironclaw-shim/src",
        "crates/ironclaw-shim/Cargo.toml",
        "crates/ironclaw-shim/Cargo.lock",
        "crates/ironclaw-shim/link.ld",
        "crates/ironclaw-shim/build.rs",
        "crates/ironclaw-abi/src",
        "crates/ironclaw-abi/Cargo.toml",
        "crates/ironclaw-enclave/src",
        "crates/ironclaw-enclave/Cargo.toml",
        "crates/ironclaw/build",
        "examples/wasm",
        // The examples' library of IronClaw calls: a change there changes the modules.
        "crates/ironclaw-guest/src",
        "crates/ironclaw-guest/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let shim_elf = nested_build(
        &root,
        &root.join("crates/ironclaw-shim/Cargo.toml"),
        SHIM_TARGET,
        &guest_target.join("shim"),
        SHIM_FLAGS,
    )?
    .join(SHIM_TARGET)
    .join("release/ironclaw-shim");
    let (image, entry) = flatten_shim(&shim_elf)?;
    std::fs::write(out_dir.join("shim.bin"), &image)?;
    let digest: [u8; 48] = {
        use sha2::Digest;
        sha2::Sha384::digest(&image).into()
    };
    std::fs::write(
        out_dir.join("shim_meta.rs"),
        format!(
            "/// Entry point of the shim image.\npub const SHIM_ENTRY: u64 = {entry:#x};\n\
             /// SHA-384 of [`SHIM_IMAGE`], computed at build time (item 4 of the measurement).\n\
             pub const SHIM_DIGEST: [u8; 48] = {digest:?};\n"
        ),
    )?;

    let examples_out = guest_target.join("examples");
    std::fs::create_dir_all(&examples_out)?;
    let examples_src = root.join("examples/wasm");
    if examples_src.join("Cargo.toml").is_file() {
        let release = nested_build(
            &root,
            &examples_src.join("Cargo.toml"),
            "wasm32-wasip1",
            &guest_target.join("examples-target"),
            &[],
        )?
        .join("wasm32-wasip1/release");
        for entry in std::fs::read_dir(&release)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, examples_out.join(name))?;
                }
            }
        }
    }
    if examples_src.is_dir() {
        for entry in std::fs::read_dir(&examples_src)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wat") {
                let text = std::fs::read_to_string(&path)?;
                let stem = path.file_stem().ok_or("wat file without a name")?;
                // A file named `*.invalid.wat` is kept as raw (deliberately broken) bytes.
                let bytes = if stem.to_string_lossy().ends_with(".invalid") {
                    text.into_bytes()
                } else {
                    wat::parse_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
                };
                let mut name = stem.to_os_string();
                name.push(".wasm");
                std::fs::write(examples_out.join(name), bytes)?;
            }
        }
    }
    println!(
        "cargo:rustc-env=IRONCLAW_EXAMPLES_DIR={}",
        examples_out.display()
    );
    Ok(())
}
