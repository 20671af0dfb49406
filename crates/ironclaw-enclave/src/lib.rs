#![no_std]
#![forbid(unsafe_code)]
//! IronClaw enclave-side logic (no_std + alloc): the enclave half of the
//! Confidential Containers KBS protocol, JWE unwrap of released resources, the
//! sealing AEAD, and the in-place AEAD a module calls for its TLS records.
//!
//! Everything here runs *inside* the enclave (linked into the guest shim) and is
//! tested on the host. It does no I/O: [`kbs_client::KbsClient`] is a sans-IO
//! state machine that produces request bodies and consumes response bodies, and
//! [`kbs_session::KbsSession`] keeps one attested session for the enclave's lifetime
//! over a [`kbs_session::KbsIo`] the shim implements; the shim moves those bytes
//! through the host (which is untrusted: every byte that comes back is parsed and
//! checked here before use).
//!
//! | module | untrusted input it parses |
//! |---|---|
//! | [`tee`] | the `tee` name of a KBS `Request` (broker side) |
//! | [`kbs_client`] | the broker's `Challenge`, attest reply and resource `Response` |
//! | [`kbs_session`] | the broker's refusals (is the session gone?) and `Set-Cookie` `Max-Age` |
//! | [`jwe`] | a JWE (flattened JSON, `ECDH-ES+A256KW` / `A256GCM`) |
//! | [`seal`] | a sealed blob handed back by the host |
//! | [`runtime_data`] | nothing: it computes the `report_data` binding |
//! | [`aead`] | the module's `aead_seal`/`aead_open` arguments (regions of its memory, ids, lengths) |

extern crate alloc;

pub mod aead;
pub mod jwe;
pub mod kbs_client;
pub mod kbs_session;
pub mod runtime_data;
pub mod seal;
pub mod tee;

pub use kbs_types;
