//! argv carried inside the module, so that it is measured with it.
//!
//! The boot block's argv is an input the host writes after measurement: on SEV-SNP/TDX the
//! host could change it without changing what the enclave attests to. A module that needs
//! its arguments pinned by the measurement (e.g. `ironclaw proxy`'s routes: where each key
//! may be sent, and how) carries them in a custom section named [`SECTION`]; the shim then
//! serves argv from that section and refuses to run when the host's argv differs.
//!
//! Format of the section's payload: for each argument, its length as a little-endian `u32`,
//! then its bytes. Nothing else; an argument may be empty and may contain any byte but NUL
//! (WASI hands argv to the module as NUL-terminated strings).

use alloc::vec::Vec;

/// Name of the custom section.
pub const SECTION: &str = "ironclaw.argv";

/// The section payload for `args`.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(&(a.len() as u32).to_le_bytes());
        out.extend_from_slice(a);
    }
    out
}

/// `module` (a Wasm binary) with `args` appended as an [`SECTION`] custom section. Custom
/// sections may follow any section, so appending keeps the module valid.
pub fn append_to_module<A: AsRef<[u8]>>(module: &[u8], args: &[A]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(SECTION.len(), &mut payload);
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(&encode(args));
    let mut out = module.to_vec();
    out.push(0); // custom section id
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Why a section payload was refused; `offset` is the byte where decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than 4 bytes left for a length prefix.
    TruncatedLength { offset: usize },
    /// The length runs past the end of the section.
    TruncatedArgument { offset: usize, len: u32 },
    /// An argument contains a NUL byte (WASI's argv cannot carry it).
    Nul { offset: usize },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TruncatedLength { offset } => {
                write!(f, "truncated length prefix at byte {offset}")
            }
            Self::TruncatedArgument { offset, len } => {
                write!(
                    f,
                    "argument of {len} bytes at byte {offset} runs past the end"
                )
            }
            Self::Nul { offset } => write!(f, "NUL inside an argument at byte {offset}"),
        }
    }
}

/// The arguments of a section payload.
pub fn decode(mut data: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut args = Vec::new();
    let mut offset = 0usize;
    while !data.is_empty() {
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            return Err(DecodeError::TruncatedLength { offset });
        };
        let len = u32::from_le_bytes(*len);
        let Some((arg, rest)) = usize::try_from(len)
            .ok()
            .and_then(|n| (n <= rest.len()).then(|| rest.split_at(n)))
        else {
            return Err(DecodeError::TruncatedArgument { offset, len });
        };
        if let Some(i) = arg.iter().position(|b| *b == 0) {
            return Err(DecodeError::Nul {
                offset: offset + 4 + i,
            });
        }
        args.push(arg);
        offset += 4 + arg.len();
        data = rest;
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_including_empty_arguments() {
        let args: [&[u8]; 4] = [b"llm-proxy", b"", b"--inject", b"x-api-key: {secret}"];
        let enc = encode(&args);
        assert_eq!(decode(&enc).unwrap(), args);
        assert_eq!(decode(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn malformed_payloads_name_the_byte() {
        assert_eq!(
            decode(&[1, 0, 0]),
            Err(DecodeError::TruncatedLength { offset: 0 })
        );
        let mut enc = encode(&[b"ab".as_slice()]);
        enc.extend_from_slice(&[5, 0, 0, 0, b'x']);
        assert_eq!(
            decode(&enc),
            Err(DecodeError::TruncatedArgument { offset: 6, len: 5 })
        );
        assert_eq!(
            decode(&[u32::MAX.to_le_bytes().as_slice(), b"x"].concat()),
            Err(DecodeError::TruncatedArgument {
                offset: 0,
                len: u32::MAX
            })
        );
        assert_eq!(
            decode(&encode(&[b"a\0b".as_slice()])),
            Err(DecodeError::Nul { offset: 5 })
        );
    }
}
