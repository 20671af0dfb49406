//! IronClaw's own calls for the module (import module `"ironclaw"`): attestation,
//! secrets, sealing, built on [`crate::hostcall::call`] with the call
//! numbers `ironclaw_abi::call::{ATTEST, SEAL_KEY, KBS_HTTP}`.
//!
//! Module-facing signatures (all `i32`, results >= 0 are byte counts written to `out`):
//!
//! | import | arguments | does |
//! |---|---|---|
//! | `attest` | `data, data_len (<= 64), out, out_cap` | kvm evidence (COSE_Sign1) binding `data` (zero-padded to 64) |
//! | `get_secret` | `path, path_len, out, out_cap` | the secret at `repository/type/tag`: KBS auth → attest on the first call, then only the resource request on the same session (kept for the enclave's lifetime) |
//! | `seal` | `data, data_len, out, out_cap` | a sealed blob bound to this enclave's launch measurement |
//! | `unseal` | `blob, blob_len, out, out_cap` | the data, if this enclave (same measurement, same host) sealed it |
//! | `connect` | `dest, dest_len` | a service's egress connection to `HOST:PORT` (one of the launch's `--egress` destinations): the new socket fd; `E_REFUSED` for any other destination, `E_UNAVAILABLE` outside a service or at the connection limit |
//! | `aead_seal` | `alg, key, key_len, nonce, nonce_len, aad, aad_len, buf, len, cap` | encrypts `buf[..len]` in place and writes the 16-byte tag after it: `len + 16`; `E_TOO_SMALL` when `cap < len + 16` |
//! | `aead_open` | `alg, key, key_len, nonce, nonce_len, aad, aad_len, buf, len` | verifies the tag at the end of `buf[..len]` and decrypts in place: `len - 16`; `E_AUTH` (buffer untouched) when the tag does not match |
//!
//! `aead_*` are computed here, natively, with no hypercall: the record cipher of a module's
//! TLS, which the interpreter runs at 30–200 ns per byte. `alg`: 1 ChaCha20-Poly1305 (32-byte
//! key), 2 AES-128-GCM (16), 3 AES-256-GCM (32); the nonce is 12 bytes, the aad at most 1024.
//! Every region is checked against the module's memory before a byte is written
//! (`E_FAULT`); a bad id or length is `E_INVALID` (`ironclaw_enclave::aead`). Each call is
//! charged fuel for its record and aad bytes at about their native cost (`charge_aead`), so
//! the CPU guard still bounds a module that loops over them.
//!
//! Negative results: [`E_FAULT`] .. [`E_INVALID`] (documented on each constant;
//! `crates/ironclaw-guest` maps them to an error enum). When the broker refuses,
//! its reason is written to the module's stderr.
//!
//! Trust: the host is the adversary here. Everything the host returns is copied
//! out of the shared buffer by `hostcall` and parsed by `ironclaw_enclave`
//! (challenge, token, JWE) before use; the secret arrives JWE-encrypted to a key
//! generated here from RDRAND, which never leaves the enclave. The sealing key is
//! derived by the host (as SEV-SNP's firmware derives it) and the AEAD is done here.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ironclaw_abi::{call, status};
use ironclaw_enclave::aead::{self, AeadError, Region};
use ironclaw_enclave::kbs_client::{self, KbsClientError};
use ironclaw_enclave::kbs_session::{KbsIo, Method, Reply, SessionError, Value};
use ironclaw_enclave::seal::{self, KeyRequest, NONCE_LEN};
use wasmi::{Caller, Extern, Linker, Memory, TrapCode};

use crate::hostcall;
use crate::runner::State;
use crate::wasi::Clock;

/// Import module name of IronClaw's calls.
pub(crate) const MODULE: &str = "ironclaw";

/// Names this shim defines under [`MODULE`].
pub(crate) const PROVIDED: &[&str] = &[
    "attest",
    "get_secret",
    "seal",
    "unseal",
    "connect",
    "aead_seal",
    "aead_open",
];

/// A pointer/length from the module is outside its memory.
pub(crate) const E_FAULT: i32 = -1;
/// `out_cap` (`aead_seal`: `cap`) is too small for the result.
pub(crate) const E_TOO_SMALL: i32 = -2;
/// The host offers no such service (no platform key, no broker given, no RDRAND).
pub(crate) const E_UNAVAILABLE: i32 = -3;
/// The broker refused (policy, evidence); the reason went to stderr.
pub(crate) const E_REFUSED: i32 = -4;
/// The host or broker answered something invalid (tampered JWE, bad reply).
pub(crate) const E_PROTOCOL: i32 = -5;
/// The blob does not unseal here (another measurement or host, or modified); for
/// `aead_open`: the tag does not match.
pub(crate) const E_AUTH: i32 = -6;
/// Invalid argument (path syntax, blob format, data too long; AEAD id, key, nonce or
/// aad length, a record shorter than its tag).
pub(crate) const E_INVALID: i32 = -7;

const REPLY_CAP: usize = 64 * 1024;
const MAX_INPUT: usize = 1024 * 1024;

/// RDRAND as a `rand_core` RNG (randomness never comes from the host).
struct RdRand;

#[derive(Debug)]
struct NoEntropy;

impl core::fmt::Display for NoEntropy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RDRAND/RDSEED failed")
    }
}

impl core::error::Error for NoEntropy {}

impl rand_core::TryRng for RdRand {
    type Error = NoEntropy;
    fn try_next_u32(&mut self) -> Result<u32, NoEntropy> {
        crate::cpu::random_u64().map(|v| v as u32).ok_or(NoEntropy)
    }
    fn try_next_u64(&mut self) -> Result<u64, NoEntropy> {
        crate::cpu::random_u64().ok_or(NoEntropy)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), NoEntropy> {
        for chunk in dst.chunks_mut(8) {
            let v = crate::cpu::random_u64().ok_or(NoEntropy)?;
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for RdRand {}

/// An RNG for the crypto APIs, once RDRAND was seen to work.
fn rng() -> Result<rand_core::UnwrapErr<RdRand>, i32> {
    crate::cpu::random_u64().ok_or(E_UNAVAILABLE)?;
    Ok(rand_core::UnwrapErr(RdRand))
}

fn stderr(msg: &str) {
    hostcall::write_output(ironclaw_abi::output::STDERR, msg.as_bytes());
}

fn memory(caller: &Caller<'_, State>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

fn range(len_total: usize, ptr: i32, len: i32) -> Option<core::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    (end <= len_total).then_some(start..end)
}

/// Copies the module's input `ptr..ptr+len` out of its memory.
fn input(c: &Caller<'_, State>, ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    let m = memory(c).ok_or(E_FAULT)?;
    let mem = m.data(c);
    if len as u32 as usize > MAX_INPUT {
        return Err(E_INVALID);
    }
    let r = range(mem.len(), ptr, len).ok_or(E_FAULT)?;
    Ok(mem[r].to_vec())
}

/// Writes `data` to the module's `out..out+cap`; returns the length.
fn output(c: &mut Caller<'_, State>, out: i32, cap: i32, data: &[u8]) -> i32 {
    let Some(m) = memory(c) else { return E_FAULT };
    let mem = m.data_mut(c);
    let Some(r) = range(mem.len(), out, cap) else {
        return E_FAULT;
    };
    if data.len() > r.len() {
        return E_TOO_SMALL;
    }
    mem[r.start..r.start + data.len()].copy_from_slice(data);
    i32::try_from(data.len()).unwrap_or(E_TOO_SMALL)
}

fn finish(c: &mut Caller<'_, State>, out: i32, cap: i32, r: Result<Vec<u8>, i32>) -> i32 {
    match r {
        Ok(data) => output(c, out, cap, &data),
        Err(e) => e,
    }
}

/// One IronClaw hypercall; the host's status mapped to an error code.
fn host(number: u32, args: [u64; 4], payload: &[u8]) -> Result<(Vec<u8>, [u64; 2]), i32> {
    let mut out = vec![0u8; REPLY_CAP];
    let r = hostcall::call(number, args, payload, &mut out).map_err(|_| E_PROTOCOL)?;
    match r.status {
        status::OK => {
            out.truncate(r.len);
            Ok((out, r.values))
        }
        status::BAD_REQUEST => Err(E_INVALID),
        _ => Err(E_UNAVAILABLE),
    }
}

fn attest(report_data: &[u8]) -> Result<Vec<u8>, i32> {
    if report_data.len() > 64 {
        return Err(E_INVALID);
    }
    let mut rd = [0u8; 64];
    rd[..report_data.len()].copy_from_slice(report_data);
    host(call::ATTEST, [0; 4], &rd).map(|(evidence, _)| evidence)
}

/// One KBS request relayed by the host.
fn kbs_http(method: Method, path: &str, cookie: &str, body: &[u8]) -> Result<Reply, i32> {
    let mut p = Vec::with_capacity(8 + path.len() + cookie.len() + body.len());
    p.extend_from_slice(&(path.len() as u32).to_le_bytes());
    p.extend_from_slice(path.as_bytes());
    p.extend_from_slice(&(cookie.len() as u32).to_le_bytes());
    p.extend_from_slice(cookie.as_bytes());
    p.extend_from_slice(body);
    let verb = match method {
        Method::Get => 1,
        Method::Post => 2,
    };
    let (reply, values) = host(call::KBS_HTTP, [verb, 0, 0, 0], &p)?;
    // Hostile reply: check every length before slicing.
    let len_bytes: [u8; 4] = reply
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(E_PROTOCOL)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let end = 4usize.checked_add(len).ok_or(E_PROTOCOL)?;
    let set_cookie = reply.get(4..end).ok_or(E_PROTOCOL)?;
    let set_cookie = String::from_utf8(set_cookie.to_vec()).map_err(|_| E_PROTOCOL)?;
    let status = u16::try_from(values[0]).map_err(|_| E_PROTOCOL)?;
    Ok(Reply {
        status,
        set_cookie: (!set_cookie.is_empty()).then_some(set_cookie),
        body: reply.get(end..).unwrap_or_default().to_vec(),
    })
}

/// The KBS session's view of the outside: the host relay, the host's `attest`
/// service and the guest clock (TSC; the host can skew it, which only changes when
/// a new handshake happens, see `ironclaw_enclave::kbs_session`).
struct ShimKbsIo<'a> {
    clock: &'a Clock,
}

impl KbsIo for ShimKbsIo<'_> {
    type Error = i32;

    fn request(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, i32> {
        kbs_http(method, path, cookie.unwrap_or_default(), body)
    }

    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Value, i32> {
        attest(report_data).map(|e| kbs_client::kvm_primary_evidence(&e))
    }

    fn now_ms(&self) -> Option<u64> {
        self.clock.monotonic_ns().map(|ns| ns / 1_000_000)
    }
}

fn kbs_error(e: KbsClientError) -> i32 {
    match e {
        KbsClientError::Refused { .. } => {
            stderr(&alloc::format!("ironclaw: get_secret: {e}\n"));
            E_REFUSED
        }
        KbsClientError::BadPath { .. } => E_INVALID,
        other => {
            stderr(&alloc::format!("ironclaw: get_secret: {other}\n"));
            E_PROTOCOL
        }
    }
}

/// `get_secret` on the enclave's KBS session: the first call attests, later ones
/// only fetch (a new handshake when the session expired; see `KbsSession`).
fn get_secret(state: &mut State, path: &[u8]) -> Result<Vec<u8>, i32> {
    let path = core::str::from_utf8(path).map_err(|_| E_INVALID)?;
    let mut parts = path.split('/');
    let (Some(repo), Some(kind), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(E_INVALID);
    };
    let mut rng = rng()?;
    let mut io = ShimKbsIo {
        clock: &state.clock,
    };
    state
        .kbs
        .get_resource(&mut io, &mut rng, repo, kind, tag)
        .map_err(|e| match e {
            SessionError::Kbs(e) => kbs_error(e),
            SessionError::Io(code) => code,
        })
}

fn seal_key(req: KeyRequest) -> Result<[u8; 32], i32> {
    let (key, _) = host(
        call::SEAL_KEY,
        [u64::from(req.key_version), req.field_select, 0, 0],
        &[],
    )?;
    key.as_slice().try_into().map_err(|_| E_PROTOCOL)
}

fn seal_data(data: &[u8]) -> Result<Vec<u8>, i32> {
    let req = KeyRequest::MEASUREMENT_BOUND;
    let key = seal_key(req)?;
    let mut nonce = [0u8; NONCE_LEN];
    rand_core::Rng::fill_bytes(&mut rng()?, &mut nonce);
    seal::seal(&key, req, &nonce, data).map_err(|_| E_INVALID)
}

fn unseal_blob(blob: &[u8]) -> Result<Vec<u8>, i32> {
    let req = seal::key_request(blob).map_err(|_| E_INVALID)?;
    let key = seal_key(req)?;
    seal::unseal(&key, blob).map_err(|e| match e {
        seal::SealError::Authentication => E_AUTH,
        _ => E_INVALID,
    })
}

/// Fuel for one `aead_*` call besides the per-byte charge: the call, the key setup (AES key
/// expansion and the GHASH key cost about as much as a few hundred bytes).
const AEAD_CALL_FUEL: u64 = 512;

/// Fuel per record or associated-data byte, about the native cost in ns at the shim's fixed
/// backends (guest_build.rs), as one fuel unit is about one interpreted ns: ChaCha20 (SSE2) with
/// portable Poly1305 about 2 ns per byte, bitsliced software AES with portable GHASH about 7.
fn aead_fuel_per_byte(alg: u32) -> u64 {
    match aead::Algorithm::from_id(alg) {
        Some(aead::Algorithm::Aes128Gcm | aead::Algorithm::Aes256Gcm) => 8,
        _ => 2,
    }
}

/// Charges an `aead_*` call to the module's fuel (when metered): native work the interpreter
/// does not count would otherwise escape the CPU guard. `bytes` is the record and associated
/// data length, each clamped by the caller to what lies in memory from its offset.
fn charge_aead(c: &mut Caller<'_, State>, alg: u32, bytes: u64) -> Result<(), wasmi::Error> {
    let Ok(fuel) = c.get_fuel() else {
        return Ok(()); // not metered
    };
    let cost = bytes
        .saturating_mul(aead_fuel_per_byte(alg))
        .saturating_add(AEAD_CALL_FUEL);
    match fuel.checked_sub(cost) {
        Some(left) => c.set_fuel(left),
        None => {
            c.set_fuel(0)?;
            Err(TrapCode::OutOfFuel.into())
        }
    }
}

fn aead_code(e: AeadError) -> i32 {
    match e {
        AeadError::OutOfBounds { .. } => E_FAULT,
        AeadError::TooSmall { .. } => E_TOO_SMALL,
        AeadError::Authentication => E_AUTH,
        AeadError::UnknownAlgorithm(_)
        | AeadError::KeyLength { .. }
        | AeadError::NonceLength(_)
        | AeadError::AadTooLong(_)
        | AeadError::TooLong(_)
        | AeadError::TooShort(_) => E_INVALID,
    }
}

/// Runs `f` (seal or open) on the module's whole memory; its result as the call's `i32`.
fn aead_call(
    c: &mut Caller<'_, State>,
    args: &aead::Args,
    f: impl FnOnce(&mut [u8], &aead::Args) -> Result<usize, AeadError>,
) -> Result<i32, wasmi::Error> {
    let Some(m) = memory(c) else {
        return Ok(E_FAULT);
    };
    // No call works on more than the memory holds: a wild length is refused (E_FAULT), not
    // charged as gigabytes of work.
    let mem_len = u32::try_from(m.data(&*c).len()).unwrap_or(u32::MAX);
    // What a region can cover from its offset to the end of memory: a call never works on more.
    let in_memory = |r: Region| u64::from(r.len.min(mem_len.saturating_sub(r.ptr)));
    let bytes = in_memory(args.buf) + in_memory(args.aad);
    charge_aead(c, args.alg, bytes)?;
    Ok(match f(m.data_mut(c), args) {
        // Results are at most `aead::MAX_LEN + TAG_LEN` = i32::MAX.
        Ok(n) => i32::try_from(n).unwrap_or(E_INVALID),
        Err(e) => aead_code(e),
    })
}

#[allow(clippy::too_many_arguments)] // the module-facing signature, one `i32` per argument
fn aead_args(
    alg: i32,
    k: i32,
    kl: i32,
    n: i32,
    nl: i32,
    a: i32,
    al: i32,
    b: i32,
    bl: i32,
) -> aead::Args {
    aead::Args {
        alg: alg as u32,
        key: Region::from_i32(k, kl),
        nonce: Region::from_i32(n, nl),
        aad: Region::from_i32(a, al),
        buf: Region::from_i32(b, bl),
    }
}

/// Defines IronClaw's calls in `linker`.
pub(crate) fn define(linker: &mut Linker<State>) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_wrap(
        MODULE,
        "attest",
        |mut c: Caller<'_, State>, p: i32, l: i32, out: i32, cap: i32| -> i32 {
            let r = input(&c, p, l).and_then(|d| attest(&d));
            finish(&mut c, out, cap, r)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "get_secret",
        |mut c: Caller<'_, State>, p: i32, l: i32, out: i32, cap: i32| -> i32 {
            let r = input(&c, p, l).and_then(|d| get_secret(c.data_mut(), &d));
            finish(&mut c, out, cap, r)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "seal",
        |mut c: Caller<'_, State>, p: i32, l: i32, out: i32, cap: i32| -> i32 {
            let r = input(&c, p, l).and_then(|d| seal_data(&d));
            finish(&mut c, out, cap, r)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "unseal",
        |mut c: Caller<'_, State>, p: i32, l: i32, out: i32, cap: i32| -> i32 {
            let r = input(&c, p, l).and_then(|d| unseal_blob(&d));
            finish(&mut c, out, cap, r)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "connect",
        |mut c: Caller<'_, State>, p: i32, l: i32| -> i32 { crate::sock::connect(&mut c, p, l) },
    )?;
    linker.func_wrap(
        MODULE,
        "aead_seal",
        #[allow(clippy::too_many_arguments)]
        |mut c: Caller<'_, State>,
         alg: i32,
         k: i32,
         kl: i32,
         n: i32,
         nl: i32,
         a: i32,
         al: i32,
         b: i32,
         bl: i32,
         cap: i32|
         -> Result<i32, wasmi::Error> {
            let args = aead_args(alg, k, kl, n, nl, a, al, b, bl);
            aead_call(&mut c, &args, |mem, args| {
                aead::seal_in_place(mem, args, cap as u32)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "aead_open",
        #[allow(clippy::too_many_arguments)]
        |mut c: Caller<'_, State>,
         alg: i32,
         k: i32,
         kl: i32,
         n: i32,
         nl: i32,
         a: i32,
         al: i32,
         b: i32,
         bl: i32|
         -> Result<i32, wasmi::Error> {
            let args = aead_args(alg, k, kl, n, nl, a, al, b, bl);
            aead_call(&mut c, &args, aead::open_in_place)
        },
    )?;
    Ok(())
}
