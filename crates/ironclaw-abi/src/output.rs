//! Batched output records carried at the start of every request's data area.
//!
//! Each record is an 8-byte header — `stream: u8` (1 = stdout, 2 = stderr), three zero bytes,
//! `len: u32` little-endian — followed by `len` bytes. Records are packed back to back with
//! no padding; their interleaving is the order the module wrote in.

/// Size of a record header.
pub const RECORD_HEADER: usize = 8;
/// Stream number of stdout.
pub const STDOUT: u8 = 1;
/// Stream number of stderr.
pub const STDERR: u8 = 2;

/// Why a byte string is not a valid sequence of output records. Offsets are from the start
/// of the output area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer than [`RECORD_HEADER`] bytes remain at `offset`.
    TruncatedHeader { offset: usize },
    /// The stream byte at `offset` is neither stdout nor stderr.
    BadStream { offset: usize, stream: u8 },
    /// The reserved bytes of the header at `offset` are not zero.
    ReservedNotZero { offset: usize },
    /// The record at `offset` claims `len` bytes but only `available` remain.
    TruncatedBody {
        offset: usize,
        len: u32,
        available: usize,
    },
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// [`STDOUT`] or [`STDERR`].
    pub stream: u8,
    /// The bytes written.
    pub bytes: &'a [u8],
}

/// Iterates the records of `area`, yielding an error (and then stopping) at the first
/// malformed one. Never panics, whatever `area` holds.
pub fn records(area: &[u8]) -> Records<'_> {
    Records {
        area,
        offset: 0,
        failed: false,
    }
}

/// Iterator returned by [`records`].
pub struct Records<'a> {
    area: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.area.len() {
            return None;
        }
        let offset = self.offset;
        let rest = self.area.get(offset..).unwrap_or(&[]);
        let result = decode_one(rest, offset);
        match result {
            Ok((record, used)) => {
                // `used` <= rest.len(), so this cannot overflow past area.len().
                self.offset = offset.saturating_add(used);
                Some(Ok(record))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn decode_one(rest: &[u8], offset: usize) -> Result<(Record<'_>, usize), RecordError> {
    let header = rest
        .get(..RECORD_HEADER)
        .ok_or(RecordError::TruncatedHeader { offset })?;
    let stream = header[0];
    if stream != STDOUT && stream != STDERR {
        return Err(RecordError::BadStream { offset, stream });
    }
    if header[1..4] != [0, 0, 0] {
        return Err(RecordError::ReservedNotZero { offset });
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body = &rest[RECORD_HEADER..];
    let bytes = usize::try_from(len)
        .ok()
        .and_then(|n| body.get(..n))
        .ok_or(RecordError::TruncatedBody {
            offset,
            len,
            available: body.len(),
        })?;
    Ok((Record { stream, bytes }, RECORD_HEADER + bytes.len()))
}

/// Writes a record header for `len` bytes of `stream` into `out` (8 bytes).
pub fn encode_header(stream: u8, len: u32) -> [u8; RECORD_HEADER] {
    let l = len.to_le_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}
