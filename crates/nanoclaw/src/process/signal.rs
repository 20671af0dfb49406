//! Signal names and numbers as `nanoclaw kill` accepts them (runc's rules): a decimal number, or
//! a name with or without the `SIG` prefix, in any case (`9`, `KILL`, `SIGKILL`, `sigterm`), and
//! real-time signals as `RTMIN+n` / `RTMAX-n`.

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("signal {0:?}: unknown signal name")]
    UnknownName(String),
    #[error("signal {0}: not a valid signal number (1..={max})", max = libc::SIGRTMAX())]
    BadNumber(i64),
}

/// Parses a signal as given on the command line into its number.
pub fn parse_signal(s: &str) -> Result<i32, SignalError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return check_number(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt_offset(rest, libc::SIGRTMIN(), 1)
            .ok_or_else(|| SignalError::UnknownName(s.to_string()));
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt_offset(rest, libc::SIGRTMAX(), -1)
            .ok_or_else(|| SignalError::UnknownName(s.to_string()));
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| SignalError::UnknownName(s.to_string()))
}

fn check_number(n: i64) -> Result<i32, SignalError> {
    match i32::try_from(n) {
        Ok(v) if (1..=libc::SIGRTMAX()).contains(&v) => Ok(v),
        _ => Err(SignalError::BadNumber(n)),
    }
}

/// `""` → base; `"+n"`/`"-n"` → base ± n when the sign matches `dir` and the result is in the
/// real-time range.
fn rt_offset(rest: &str, base: i32, dir: i32) -> Option<i32> {
    if rest.is_empty() {
        return Some(base);
    }
    // strip_prefix, not split_at(1): the rest may start with a multi-byte character (found by
    // the nanoclaw_lifecycle_inputs fuzz target).
    let digits = rest.strip_prefix(if dir > 0 { '+' } else { '-' })?;
    let n: i32 = digits.parse().ok()?;
    let v = base.checked_add(dir.checked_mul(n)?)?;
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&v)
        .then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("sigusr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("hup"), Ok(1));
        assert_eq!(parse_signal("RTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse_signal("SIGRTMIN+2"), Ok(libc::SIGRTMIN() + 2));
        assert_eq!(parse_signal("RTMAX-1"), Ok(libc::SIGRTMAX() - 1));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(parse_signal("0"), Err(SignalError::BadNumber(0)));
        assert_eq!(parse_signal("-9"), Err(SignalError::BadNumber(-9)));
        assert_eq!(
            parse_signal("99999999999"),
            Err(SignalError::BadNumber(99_999_999_999))
        );
        assert_eq!(
            parse_signal("FOO"),
            Err(SignalError::UnknownName("FOO".into()))
        );
        assert_eq!(
            parse_signal("RTMIN+99"),
            Err(SignalError::UnknownName("RTMIN+99".into()))
        );
        assert_eq!(
            parse_signal("RTMIN-1"),
            Err(SignalError::UnknownName("RTMIN-1".into()))
        );
        // A multi-byte character right after the prefix.
        assert_eq!(
            parse_signal(" RTMIN\u{fe05}(2"),
            Err(SignalError::UnknownName("RTMIN\u{fe05}(2".into()))
        );
    }
}
