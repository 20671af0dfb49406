//! Builds the guest side so that a plain `cargo build` of this crate just works:
//!
//! 1. the shim (`crates/ironclaw-shim`, `x86_64-unknown-none`), with a nested
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
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;

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
        "examples/wasm",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    let shim_elf = nested_build(
        &root,
        &root.join("crates/ironclaw-shim/Cargo.toml"),
        "x86_64-unknown-none",
        &guest_target.join("shim"),
        &["-Crelocation-model=static"],
    )?
    .join("x86_64-unknown-none/release/ironclaw-shim");
    flatten_shim(&shim_elf, &out_dir)?;

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
    println!("cargo:rustc-env=IRONCLAW_EXAMPLES_DIR={}", examples_out.display());
    Ok(())
}

/// Runs `cargo build --release --locked --target <target>` for `manifest` with a clean
/// environment and returns its target directory.
fn nested_build(
    root: &Path,
    manifest: &Path,
    target: &str,
    target_dir: &Path,
    extra_flags: &[&str],
) -> Result<PathBuf, BoxError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_home = std::env::var("CARGO_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")))
        .unwrap_or_else(|| "/nonexistent-cargo-home".into());
    let mut flags: Vec<String> = vec![
        format!("--remap-path-prefix={}=/claw", root.display()),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
        "-Cdebuginfo=0".into(),
    ];
    flags.extend(extra_flags.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(manifest.parent().ok_or("manifest without a directory")?);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
            || k.starts_with("CARGO_ENCODED_")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_TARGET_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k == "RUSTC_WRAPPER"
            || k == "RUSTC_WORKSPACE_WRAPPER"
            || k == "TARGET"
            || k == "HOST"
            || k == "OUT_DIR"
            || k == "OPT_LEVEL"
            || k == "PROFILE"
            || k == "DEBUG"
            || k == "NUM_JOBS"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"));
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("nested build of {} for {target} failed: {status}", manifest.display()).into());
    }
    Ok(target_dir.to_path_buf())
}

/// Turns the shim ELF into the flat image loaded at `SHIM_BASE`: the PT_LOAD segments laid
/// out at their addresses, gaps and .bss as zeros. Writes `shim.bin` and `shim_meta.rs`.
fn flatten_shim(elf_path: &Path, out_dir: &Path) -> Result<(), BoxError> {
    use object::elf::{FileHeader64, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::LittleEndian as LE;

    let data = std::fs::read(elf_path)?;
    let header = FileHeader64::<LE>::parse(&*data)?;
    let endian = header.endian()?;
    let entry = header.e_entry(endian);
    let mut segments = Vec::new();
    for ph in header.program_headers(endian, &*data)? {
        if ph.p_type(endian) != PT_LOAD || ph.p_memsz(endian) == 0 {
            continue;
        }
        let bytes = ph.data(endian, &*data).map_err(|_| "segment outside the ELF file")?;
        segments.push((ph.p_vaddr(endian), ph.p_memsz(endian), bytes.to_vec()));
    }
    let base = segments.iter().map(|s| s.0).min().ok_or("shim ELF has no PT_LOAD segment")?;
    if base != ironclaw_abi::layout::SHIM_BASE {
        return Err(format!(
            "shim is linked at {base:#x}, the ABI says SHIM_BASE = {:#x} (crates/ironclaw-shim/link.ld)",
            ironclaw_abi::layout::SHIM_BASE
        )
        .into());
    }
    let end = segments.iter().map(|s| s.0 + s.1).max().unwrap_or(base);
    let mut image = vec![0u8; usize::try_from(end - base)?];
    for (vaddr, _, bytes) in &segments {
        let off = usize::try_from(vaddr - base)?;
        image[off..off + bytes.len()].copy_from_slice(bytes);
    }
    std::fs::write(out_dir.join("shim.bin"), &image)?;
    std::fs::write(
        out_dir.join("shim_meta.rs"),
        format!("/// Entry point of the shim image.\npub const SHIM_ENTRY: u64 = {entry:#x};\n"),
    )?;
    Ok(())
}
