//! IronClaw host library: a KVM micro-VM with no guest OS that runs one measured
//! WebAssembly module. The `ironclaw` command is crates/ironclaw-cli; this library links
//! neither the key broker nor the verifier (it signs `kvm` evidence with
//! `ironclaw-kvm-evidence` and relays KBS requests with `ironclaw-kbs-client`).
//!
//! - [`launch::run`] — one launch, end to end (the `ironclaw run` command is a thin wrapper).
//! - [`measurement::LaunchMeasurement`] — the SHA-384 launch measurement, documented layout.
//! - [`config::LaunchConfig`] — memory size and every limit.
//! - [`hypercall`] — the host side of the hypercall buffer; the guest's requests are parsed
//!   in [`hypercall::untrusted_guest_request`], the security boundary.
//! - [`vmm`] — KVM VM, vCPU, memory, page tables, GDT/IDT, watchdog.
//! - [`check`] — is KVM usable, which backend.
//! - [`service`] — `ironclaw serve`: an enclave as a network service (host-owned sockets).

pub mod attest;
pub mod check;
pub mod config;
pub mod hypercall;
pub mod launch;
pub mod measurement;
pub mod platform_key;
pub mod sealing;
pub mod service;
pub mod shim;
pub mod vmm;

pub use config::LaunchConfig;
pub use launch::{
    exit_code, run, run_image, GuestImage, LaunchError, LaunchInputs, RunReport, Timings,
};
pub use measurement::LaunchMeasurement;
