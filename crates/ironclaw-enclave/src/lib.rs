#![no_std]
//! IronClaw enclave-side logic (no_std + alloc): KBS client, JWE unwrap, sealing.
