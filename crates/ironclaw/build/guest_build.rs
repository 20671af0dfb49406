//! The guest build steps shared by build.rs and the reproducibility test
//! (tests/reproducible.rs): a nested, clean-environment cargo build and the ELF → flat image
//! conversion of the shim.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// The shim's build target. Not `x86_64-unknown-none`: that target's soft-float ABI passes
/// floats in integer registers, so the handlers of wasmi's tail-call dispatcher (nine
/// arguments, three of them floats) spill arguments to the stack, LLVM cannot turn their
/// calls into jumps, and the stack grows with every executed Wasm instruction; the shim
/// then needed wasmi's slower loop dispatcher. The Linux target has the SSE2 ABI (floats in
/// XMM registers: every handler argument in a register, the dispatch is a jump). The shim
/// uses nothing of Linux: it is `no_std`, linked without start files or libc at a fixed
/// address (link.ld), and brings its own memory functions (crates/ironclaw-shim/src/mem.rs).
/// It all runs at CPL3, where the host enables SSE (CR4.OSFXSR); the CPL0 fault stubs are
/// the host's own SSE-free bytes (crates/ironclaw/src/vmm/layout.rs).
pub(crate) const SHIM_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Flags the shim's nested build gets besides the remapping.
pub(crate) const SHIM_FLAGS: &[&str] = &[
    "-Crelocation-model=static",
    // A freestanding executable: no C start files, no libc, nothing dynamic.
    "-Clink-arg=-nostartfiles",
    "-Clink-arg=-nostdlib",
    "-Clink-arg=-static",
    // Selects the shim-only dependency settings (crates/ironclaw-enclave/Cargo.toml).
    "--cfg=ironclaw_shim",
    // ironclaw-enclave's RustCrypto dependencies (AES-GCM, SHA-2, ChaCha20-Poly1305) would
    // pick SIMD or AES-NI backends by CPUID, which exits to the host: fix each backend at
    // build time. Portable code, except ChaCha20's SSE2 backend: SSE2 is part of the shim's
    // target (the shim already runs with SSE enabled), so it needs no detection.
    "--cfg=aes_backend=\"soft\"",
    "--cfg=polyval_backend=\"soft\"",
    "--cfg=sha2_backend=\"soft\"",
    "--cfg=chacha20_backend=\"sse2\"",
    "--cfg=poly1305_backend=\"soft\"",
];

/// Runs `cargo build --release --locked --target <target>` for `manifest` with a clean
/// environment and returns its target directory.
pub(crate) fn nested_build(
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
        return Err(format!(
            "nested build of {} for {target} failed: {status}",
            manifest.display()
        )
        .into());
    }
    Ok(target_dir.to_path_buf())
}

/// Turns the shim ELF into the flat image loaded at `SHIM_BASE`: the PT_LOAD segments laid
/// out at their addresses, gaps and .bss as zeros. Returns the image and the entry point.
pub(crate) fn flatten_shim(elf_path: &Path) -> Result<(Vec<u8>, u64), BoxError> {
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
        let bytes = ph
            .data(endian, &*data)
            .map_err(|_| "segment outside the ELF file")?;
        segments.push((ph.p_vaddr(endian), ph.p_memsz(endian), bytes.to_vec()));
    }
    let base = segments
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("shim ELF has no PT_LOAD segment")?;
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
    Ok((image, entry))
}
