#![no_std]
//! IronClaw hypercall ABI shared by the host VMM and the guest shim.
