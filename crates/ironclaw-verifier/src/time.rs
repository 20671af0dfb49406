//! The verification instant. Always an input: results are reproducible, and
//! evidence whose chain was valid at another time can be checked at that time.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::VerifyError;

/// An instant, in whole seconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifyTime(i64);

impl VerifyTime {
    /// From seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        VerifyTime(secs)
    }

    /// Parse RFC 3339 (`2025-06-01T00:00:00Z`, fractional seconds allowed and truncated).
    pub fn parse_rfc3339(s: &str) -> Result<Self, VerifyError> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|d| VerifyTime(d.with_timezone(&Utc).timestamp()))
            .map_err(|e| VerifyError::Input {
                what: format!("verification instant {s:?}"),
                reason: format!("not RFC 3339: {e}"),
            })
    }

    /// The wall clock. Only the CLI uses this, as the default of `--at`.
    pub fn now() -> Self {
        VerifyTime(Utc::now().timestamp())
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC, second precision.
    pub fn to_rfc3339(self) -> String {
        unix_to_rfc3339(self.0)
    }
}

/// Format seconds since the epoch as RFC 3339 (UTC).
pub fn unix_to_rfc3339(secs: i64) -> String {
    match DateTime::<Utc>::from_timestamp(secs, 0) {
        Some(d) => d.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => format!("@{secs}"),
    }
}
