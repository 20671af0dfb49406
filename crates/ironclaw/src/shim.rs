//! The guest shim image, built by `build.rs` from `crates/ironclaw-shim` and embedded here.
//! These bytes are loaded at `ironclaw_abi::layout::SHIM_BASE` and measured.

/// The flat shim image (text, rodata, data, zeroed bss).
pub static SHIM_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shim.bin"));

include!(concat!(env!("OUT_DIR"), "/shim_meta.rs"));

/// Directory holding the example workloads built by `build.rs` (`*.wasm`).
pub const EXAMPLES_DIR: &str = env!("IRONCLAW_EXAMPLES_DIR");

/// The LLM API key proxy module (`examples/wasm/llm-proxy`) that `ironclaw proxy` runs,
/// built reproducibly with the workspace like the shim (its bytes are measured).
pub static LLM_PROXY_MODULE: &[u8] =
    include_bytes!(concat!(env!("IRONCLAW_EXAMPLES_DIR"), "/llm-proxy.wasm"));
