//! Parsing IronClaw call requests from the guest: hostile input.
//!
//! The guest runs untrusted Wasm; every field is bounds-checked before the host
//! acts on it. Nothing here trusts a length without checking it against the
//! payload and a fixed maximum.

use ironclaw_abi::call;

/// Longest KBS path accepted from the guest.
pub const MAX_PATH: usize = 512;
/// Longest cookie accepted from the guest.
pub const MAX_COOKIE: usize = 512;
/// Largest KBS request body accepted from the guest.
pub const MAX_BODY: usize = 64 * 1024;

/// HTTP method of a relayed KBS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    /// The method token.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// A validated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnclaveCall {
    Attest {
        report_data: [u8; 64],
    },
    SealKey {
        key_version: u64,
        field_select: u64,
    },
    KbsHttp {
        method: HttpMethod,
        path: String,
        cookie: String,
        body: Vec<u8>,
    },
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnclaveCallError {
    #[error("unknown IronClaw call {0:#x}")]
    UnknownCall(u32),
    #[error("{call}: field `{field}` at payload offset {offset}: {reason}")]
    Field {
        call: &'static str,
        field: &'static str,
        offset: usize,
        reason: String,
    },
}

fn field(
    call: &'static str,
    field: &'static str,
    offset: usize,
    reason: impl Into<String>,
) -> EnclaveCallError {
    EnclaveCallError::Field {
        call,
        field,
        offset,
        reason: reason.into(),
    }
}

/// Reads a `u32 LE length | bytes` field at `*at`, at most `max` bytes.
fn take_lv<'a>(
    p: &'a [u8],
    at: &mut usize,
    name: &'static str,
    max: usize,
) -> Result<&'a [u8], EnclaveCallError> {
    let start = *at;
    let len_bytes: [u8; 4] = p
        .get(
            start
                ..start
                    .checked_add(4)
                    .ok_or_else(|| field("kbs_http", name, start, "offset overflow"))?,
        )
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            field(
                "kbs_http",
                name,
                start,
                "length prefix past the end of the payload",
            )
        })?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max {
        return Err(field(
            "kbs_http",
            name,
            start,
            format!("{len} bytes (at most {max})"),
        ));
    }
    let begin = start + 4;
    let end = begin
        .checked_add(len)
        .ok_or_else(|| field("kbs_http", name, start, "length overflow"))?;
    let bytes = p.get(begin..end).ok_or_else(|| {
        field(
            "kbs_http",
            name,
            start,
            format!("{len} bytes past the end of the payload"),
        )
    })?;
    *at = end;
    Ok(bytes)
}

fn printable(
    call: &'static str,
    name: &'static str,
    offset: usize,
    b: &[u8],
) -> Result<String, EnclaveCallError> {
    if !b.iter().all(|c| c.is_ascii_graphic()) {
        return Err(field(
            call,
            name,
            offset,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(String::from_utf8_lossy(b).into_owned())
}

impl EnclaveCall {
    /// Parses and validates a guest request.
    pub fn parse(number: u32, args: [u64; 4], payload: &[u8]) -> Result<Self, EnclaveCallError> {
        match number {
            call::ATTEST => {
                let report_data: [u8; 64] = payload.try_into().map_err(|_| {
                    field(
                        "attest",
                        "report_data",
                        0,
                        format!("{} bytes, expected 64", payload.len()),
                    )
                })?;
                Ok(EnclaveCall::Attest { report_data })
            }
            call::SEAL_KEY => {
                if !payload.is_empty() {
                    return Err(field("seal_key", "payload", 0, "must be empty"));
                }
                Ok(EnclaveCall::SealKey {
                    key_version: args[0],
                    field_select: args[1],
                })
            }
            call::KBS_HTTP => {
                let method = match args[0] {
                    1 => HttpMethod::Get,
                    2 => HttpMethod::Post,
                    m => {
                        return Err(field(
                            "kbs_http",
                            "method",
                            0,
                            format!("{m} (1 = GET, 2 = POST)"),
                        ))
                    }
                };
                let mut at = 0;
                let path = take_lv(payload, &mut at, "path", MAX_PATH)?;
                let path = printable("kbs_http", "path", 0, path)?;
                if !path.starts_with("/kbs/v0/") {
                    return Err(field("kbs_http", "path", 0, "must start with /kbs/v0/"));
                }
                let cookie_at = at;
                let cookie = take_lv(payload, &mut at, "cookie", MAX_COOKIE)?;
                let cookie = printable("kbs_http", "cookie", cookie_at, cookie)?;
                let body = payload.get(at..).unwrap_or_default();
                if body.len() > MAX_BODY {
                    return Err(field(
                        "kbs_http",
                        "body",
                        at,
                        format!("{} bytes (at most {MAX_BODY})", body.len()),
                    ));
                }
                Ok(EnclaveCall::KbsHttp {
                    method,
                    path,
                    cookie,
                    body: body.to_vec(),
                })
            }
            other => Err(EnclaveCallError::UnknownCall(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn parses_valid_calls() {
        assert_eq!(
            EnclaveCall::parse(call::ATTEST, [0; 4], &[7; 64]).unwrap(),
            EnclaveCall::Attest {
                report_data: [7; 64]
            }
        );
        let mut p = lv(b"/kbs/v0/auth");
        p.extend(lv(b""));
        p.extend_from_slice(b"{}");
        match EnclaveCall::parse(call::KBS_HTTP, [2, 0, 0, 0], &p).unwrap() {
            EnclaveCall::KbsHttp {
                method, path, body, ..
            } => {
                assert_eq!(
                    (method, path.as_str(), body.as_slice()),
                    (HttpMethod::Post, "/kbs/v0/auth", &b"{}"[..])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_payloads_are_refused_with_the_field() {
        assert!(matches!(
            EnclaveCall::parse(call::ATTEST, [0; 4], &[0; 63]),
            Err(EnclaveCallError::Field {
                field: "report_data",
                ..
            })
        ));
        assert!(matches!(
            EnclaveCall::parse(0x1ff, [0; 4], &[]),
            Err(EnclaveCallError::UnknownCall(0x1ff))
        ));
        // Length prefix claiming more than the payload holds.
        let mut p = (u32::MAX).to_le_bytes().to_vec();
        p.extend_from_slice(b"/kbs");
        assert!(matches!(
            EnclaveCall::parse(call::KBS_HTTP, [1, 0, 0, 0], &p),
            Err(EnclaveCallError::Field { field: "path", .. })
        ));
        // A path outside the KBS API: the host is not an open proxy.
        let mut p = lv(b"/admin");
        p.extend(lv(b""));
        assert!(matches!(
            EnclaveCall::parse(call::KBS_HTTP, [1, 0, 0, 0], &p),
            Err(EnclaveCallError::Field { field: "path", .. })
        ));
        let mut p = lv(b"/kbs/v0/x\r\nHost: evil");
        p.extend(lv(b""));
        assert!(EnclaveCall::parse(call::KBS_HTTP, [1, 0, 0, 0], &p).is_err());
        assert!(matches!(
            EnclaveCall::parse(call::KBS_HTTP, [3, 0, 0, 0], &[]),
            Err(EnclaveCallError::Field {
                field: "method",
                ..
            })
        ));
        // Truncated anywhere: never a panic.
        let mut full = lv(b"/kbs/v0/auth");
        full.extend(lv(b"kbs-session-id=x"));
        for n in 0..full.len() {
            let _ = EnclaveCall::parse(call::KBS_HTTP, [2, 0, 0, 0], &full[..n]);
        }
    }
}
