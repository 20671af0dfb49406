//! The kernel's cpu/mem list syntax ("0-3,5,7-8"), parsed strictly: `linux.resources.cpu.cpus`
//! and `mems` come from the untrusted config, and a bad string must be refused before anything
//! is created, naming what is wrong.

use std::collections::BTreeSet;

/// Largest CPU or memory-node number accepted (the kernel's NR_CPUS ceiling).
pub const MAX_ID: u32 = 8191;

/// Parses a list; an empty (or all-blank) string is the empty set.
pub fn parse_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    for (i, part) in s.split(',').enumerate() {
        let num = |t: &str| -> Result<u32, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "element {} ({part:?}): {t:?} is not a number",
                    i + 1
                ));
            }
            let v: u32 = t
                .parse()
                .map_err(|_| format!("element {} ({part:?}): {t:?} is out of range", i + 1))?;
            if v > MAX_ID {
                return Err(format!(
                    "element {} ({part:?}): {v} is above {MAX_ID}",
                    i + 1
                ));
            }
            Ok(v)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!(
                        "element {} ({part:?}): range runs backwards",
                        i + 1
                    ));
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(num(part)?);
            }
        }
    }
    Ok(out)
}

/// Formats a set back into the kernel's syntax (used for stats and tests).
pub fn format_list(set: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!(
            parse_list("0-2,5").unwrap().into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 5]
        );
        assert!(parse_list("").unwrap().is_empty());
        assert_eq!(format_list(&parse_list("3,0-1,2,7").unwrap()), "0-3,7");
    }

    #[test]
    fn refuses_bad_lists() {
        for bad in [
            "a", "1-", "-1", "3-1", "1,,2", "1 2", "99999", "0x1", "1-2-3",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }
}
