//! Device access control: `linux.resources.devices` as the v1 `devices` controller's allow/deny
//! lists, or, on cgroup v2, as a `BPF_PROG_TYPE_CGROUP_DEVICE` program (see [`crate::bpf`]).
//!
//! Semantics are the v1 kernel's, which both backends reproduce: the rules are applied in order
//! on top of "allow everything"; a rule with type `a`, wildcard numbers and access `rwm` resets to
//! allow-all or deny-all; otherwise the last rule that matches a request decides.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Result;
use crate::fs;

/// Access bits, as the BPF context encodes them (BPF_DEVCG_ACC_*).
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device kinds, as the BPF context encodes them (BPF_DEVCG_DEV_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    All,
    Block,
    Char,
}

/// One normalized rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    /// `None` is the wildcard `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

impl Rule {
    /// A rule that matches every device and every access: it resets the list.
    pub fn is_reset(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// The v1 `devices.allow`/`devices.deny` line ("c 1:3 rwm", or "a" for a reset).
    pub fn v1_line(&self) -> String {
        if self.is_reset() {
            return "a".to_string();
        }
        let t = match self.kind {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let mut acc = String::new();
        for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(ch);
            }
        }
        format!("{t} {}:{} {acc}", num(self.major), num(self.minor))
    }
}

/// Normalizes OCI rules (validated already: numbers in range, access in "rwm"). Type `a` with
/// specific numbers or partial access becomes a `b` and a `c` rule, since the v1 kernel reads a
/// leading `a` as "everything"; fifo rules (`p`) are dropped, as no cgroup controls fifos.
pub fn normalize(rules: &[LinuxDeviceCgroup]) -> Vec<Rule> {
    let mut out = Vec::new();
    for r in rules {
        let access = match r.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(a) => a.chars().fold(0, |acc, c| {
                acc | match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => 0,
                }
            }),
        };
        let num = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
        let base = Rule {
            allow: r.allow(),
            kind: Kind::All,
            major: num(r.major()),
            minor: num(r.minor()),
            access,
        };
        match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {
                if base.is_reset() {
                    out.push(base);
                } else {
                    out.push(Rule {
                        kind: Kind::Block,
                        ..base.clone()
                    });
                    out.push(Rule {
                        kind: Kind::Char,
                        ..base
                    });
                }
            }
            LinuxDeviceType::B => out.push(Rule {
                kind: Kind::Block,
                ..base
            }),
            LinuxDeviceType::C | LinuxDeviceType::U => out.push(Rule {
                kind: Kind::Char,
                ..base
            }),
            LinuxDeviceType::P => {}
        }
    }
    out
}

/// Applies the rules to a v1 `devices` cgroup, in order.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(dir, file, r.v1_line())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        let v: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        normalize(&v)
    }

    #[test]
    fn v1_lines() {
        let r = rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},
                {"allow":true,"type":"b","major":8,"access":"m"},
                {"allow":true,"type":"a","major":5,"minor":1,"access":"r"},
                {"allow":true,"type":"p","major":0,"minor":0}]"#,
        );
        let lines: Vec<String> = r.iter().map(Rule::v1_line).collect();
        assert_eq!(
            lines,
            vec!["a", "c 1:3 rw", "b 8:* m", "b 5:1 r", "c 5:1 r"]
        );
        assert!(!r[0].allow && r[0].is_reset());
    }
}
