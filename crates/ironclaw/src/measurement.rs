//! The launch measurement: SHA-384 over exactly what a launch loads and how it is limited.
//!
//! Layout, version 1 (every item is `len: u64 little-endian || bytes`, in this order):
//!
//! | # | item | bytes |
//! |---|---|---|
//! | 1 | domain-separation tag | `ironclaw.launch-measurement` (ASCII) |
//! | 2 | layout version | `1u32` LE |
//! | 3 | shim load address, entry point | `u64` LE each (16 bytes) |
//! | 4 | shim image digest | SHA-384 of the flat image loaded at the load address (48 bytes; computed at build time, which keeps hashing the 1.2 MB image off the launch path and binds it just the same) |
//! | 5 | Wasm module | the module bytes as given |
//! | 6 | launch configuration | ABI version `u32`, memory bytes `u64`, fuel `u64` (`u64::MAX` = unlimited), timeout ms `u64`, max output `u64`, max Wasm memory `u64`, max table elements `u64`, max hypercalls `u64`, debug `u8` — all LE (61 bytes) |
//!
//! **Layout version 2** (a service, `ironclaw serve`): the same six items with version `2u32`
//! in item 2, then
//!
//! | # | item | bytes |
//! |---|---|---|
//! | 7 | service configuration | listeners `u32`, max connections `u64`, window (bytes buffered per connection and direction) `u64`, idle timeout ms `u64`, grace ms `u64`, egress count `u32`, then per egress destination `len: u32` + `HOST:PORT` (ASCII, as given, in order) — all LE |
//!
//! The egress list is measured, so a verifier (and the broker's policy) knows exactly
//! where an attested service can open connections; listen addresses are not (where the
//! operator exposes the service does not change what it can reach), their number is.
//! Version 1 stays the layout of a batch launch (`ironclaw run`), so its digests are
//! unchanged, and a service can never share a digest with a batch run of the same module.
//!
//! Not measured: argv, environment and stdin — they are run-time inputs, like a request to
//! a service, and an attesting workload must treat them as untrusted.
//!
//! A verifier with the same shim image, module and configuration recomputes the same
//! digest with [`LaunchMeasurement::compute`] (or `ironclaw measure`).

use sha2::{Digest, Sha384};

use crate::config::LaunchConfig;

/// Version of the measured layout above (batch launches).
pub const MEASUREMENT_VERSION: u32 = 1;
/// Version of the service layout (item 7 added).
pub const SERVICE_MEASUREMENT_VERSION: u32 = 2;
/// Domain-separation tag (item 1).
pub const MEASUREMENT_TAG: &[u8] = b"ironclaw.launch-measurement";

/// SHA-384 of a guest image; the embedded shim's was computed at build time
/// (`shim::SHIM_DIGEST`; tests/measurement.rs recomputes it).
pub fn image_digest(image: &[u8]) -> [u8; 48] {
    if std::ptr::eq(image, crate::shim::SHIM_IMAGE) {
        crate::shim::SHIM_DIGEST
    } else {
        Sha384::digest(image).into()
    }
}

/// A SHA-384 launch measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaunchMeasurement(pub [u8; 48]);

fn item(h: &mut Sha384, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The configuration item (6) of the layout.
pub fn encode_config(config: &LaunchConfig) -> Vec<u8> {
    let mut c = Vec::with_capacity(61);
    c.extend_from_slice(&ironclaw_abi::ABI_VERSION.to_le_bytes());
    c.extend_from_slice(&config.memory_bytes().to_le_bytes());
    c.extend_from_slice(&config.fuel.unwrap_or(u64::MAX).to_le_bytes());
    let timeout_ms = u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX);
    c.extend_from_slice(&timeout_ms.to_le_bytes());
    c.extend_from_slice(&config.max_output_bytes.to_le_bytes());
    c.extend_from_slice(&config.max_wasm_memory_bytes.to_le_bytes());
    c.extend_from_slice(&config.max_table_elements.to_le_bytes());
    c.extend_from_slice(&config.max_hypercalls.to_le_bytes());
    c.push(u8::from(config.debug));
    c
}

/// The service item (7) of layout 2.
pub fn encode_service(s: &crate::service::ServiceConfig) -> Vec<u8> {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut c = Vec::new();
    c.extend_from_slice(&(s.listen.len() as u32).to_le_bytes());
    c.extend_from_slice(&s.max_connections.to_le_bytes());
    c.extend_from_slice(&s.window.to_le_bytes());
    c.extend_from_slice(&ms(s.idle_timeout).to_le_bytes());
    c.extend_from_slice(&ms(s.grace).to_le_bytes());
    c.extend_from_slice(&(s.egress.len() as u32).to_le_bytes());
    for e in &s.egress {
        let name = e.to_string();
        c.extend_from_slice(&(name.len() as u32).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
    }
    c
}

impl LaunchMeasurement {
    /// Computes the measurement of a launch of `module` with the embedded shim.
    pub fn of_launch(module: &[u8], config: &LaunchConfig) -> Self {
        Self::compute(
            ironclaw_abi::layout::SHIM_BASE,
            crate::shim::SHIM_ENTRY,
            crate::shim::SHIM_IMAGE,
            module,
            config,
        )
    }

    /// Computes the measurement of a service launch of `module` with the embedded shim.
    pub fn of_service(
        module: &[u8],
        config: &LaunchConfig,
        service: &crate::service::ServiceConfig,
    ) -> Self {
        Self::compute_with_service(
            ironclaw_abi::layout::SHIM_BASE,
            crate::shim::SHIM_ENTRY,
            crate::shim::SHIM_IMAGE,
            module,
            config,
            Some(service),
        )
    }

    /// Computes the measurement from explicit artifacts (for verifiers and tests).
    pub fn compute(
        shim_base: u64,
        shim_entry: u64,
        shim_image: &[u8],
        module: &[u8],
        config: &LaunchConfig,
    ) -> Self {
        Self::compute_with_service(shim_base, shim_entry, shim_image, module, config, None)
    }

    /// [`LaunchMeasurement::compute`] for a batch launch (`service` = `None`, layout 1) or a
    /// service (layout 2).
    pub fn compute_with_service(
        shim_base: u64,
        shim_entry: u64,
        shim_image: &[u8],
        module: &[u8],
        config: &LaunchConfig,
        service: Option<&crate::service::ServiceConfig>,
    ) -> Self {
        let mut h = Sha384::new();
        item(&mut h, MEASUREMENT_TAG);
        let version = if service.is_some() {
            SERVICE_MEASUREMENT_VERSION
        } else {
            MEASUREMENT_VERSION
        };
        item(&mut h, &version.to_le_bytes());
        let mut addrs = [0u8; 16];
        addrs[..8].copy_from_slice(&shim_base.to_le_bytes());
        addrs[8..].copy_from_slice(&shim_entry.to_le_bytes());
        item(&mut h, &addrs);
        item(&mut h, &image_digest(shim_image));
        item(&mut h, module);
        item(&mut h, &encode_config(config));
        if let Some(service) = service {
            item(&mut h, &encode_service(service));
        }
        Self(h.finalize().into())
    }

    /// Lowercase hex (96 characters).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for LaunchMeasurement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
