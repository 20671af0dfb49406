//! Untrusted input files: evidence encodings (raw bytes, hex text, base64 text).

/// How an evidence file was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Hex,
    Base64,
}

fn is_text_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Decode an evidence file: hex text and base64 text are recognised (whitespace
/// ignored); anything else is taken as raw bytes.
pub fn decode_evidence(bytes: &[u8]) -> (Vec<u8>, Encoding) {
    let compact: Vec<u8> = bytes.iter().copied().filter(|b| !is_text_ws(*b)).collect();
    let hex_body = compact
        .strip_prefix(b"0x")
        .or_else(|| compact.strip_prefix(b"0X"))
        .unwrap_or(&compact);
    if !hex_body.is_empty()
        && hex_body.len().is_multiple_of(2)
        && hex_body.iter().all(u8::is_ascii_hexdigit)
    {
        if let Ok(v) = hex::decode(hex_body) {
            return (v, Encoding::Hex);
        }
    }
    if compact.len() >= 4
        && compact
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
    {
        use base64::Engine;
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for e in engines {
            if let Ok(v) = e.decode(&compact) {
                return (v, Encoding::Base64);
            }
        }
    }
    (bytes.to_vec(), Encoding::Raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_is_decoded() {
        assert_eq!(
            decode_evidence(b"0a0B\n ff\n"),
            (vec![0x0a, 0x0b, 0xff], Encoding::Hex)
        );
    }

    #[test]
    fn base64_text_is_decoded() {
        assert_eq!(
            decode_evidence(b"hEShATgi\n"),
            (vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22], Encoding::Base64)
        );
    }

    #[test]
    fn binary_is_raw() {
        let raw = [0x02u8, 0, 0, 0, 0xff];
        assert_eq!(decode_evidence(&raw), (raw.to_vec(), Encoding::Raw));
    }
}
