//! `linux.cgroupsPath` under the systemd driver: `slice:prefix:name`, as runc reads it.
//!
//! - `slice` is the parent slice (`system.slice`, `user-1000.slice`; a `-` in a slice name
//!   denotes nesting, `-.slice` the root slice); empty means `system.slice`, or `user.slice`
//!   for a rootless runtime (its user's systemd instance).
//! - the unit is `<prefix>-<name>.scope` (`<name>.scope` when the prefix is empty), unless
//!   `name` ends in `.slice`: then the unit is that slice itself, placed below `slice`.
//! - an empty cgroupsPath means `:nanoclaw:<container id>`.
//!
//! Everything is checked here, before any unit exists, with systemd's own rules for unit names
//! (`unit_name_is_valid`, `slice_name_is_valid`), so systemd never gets a name it would refuse
//! half-way through a create.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CgroupError, Result};

/// The prefix of a scope when the cgroupsPath names none.
pub const DEFAULT_PREFIX: &str = "nanoclaw";
/// systemd's UNIT_NAME_MAX, including the terminating NUL.
const UNIT_NAME_MAX: usize = 256;

/// Which systemd instance owns the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Instance {
    /// PID 1, over the system bus.
    System,
    /// The user's `systemd --user`, over the session bus (rootless).
    User,
}

/// A parsed and checked systemd cgroupsPath.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// The parent slice, e.g. `system.slice`.
    pub slice: String,
    /// The transient unit, e.g. `nanoclaw-abc.scope` or `machine-abc.slice`.
    pub unit: String,
    pub instance: Instance,
    /// The config's `org.systemd.property.*` annotations (checked), applied after the
    /// properties nanoclaw sets, as runc does.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl UnitSpec {
    /// Parses `linux.cgroupsPath` (`None` or empty: the defaults) for container `id`.
    pub fn parse(cgroups_path: Option<&str>, id: &str, instance: Instance) -> Result<Self> {
        let raw = cgroups_path.unwrap_or("");
        let bad = |reason: String| CgroupError::BadPath {
            path: raw.to_string(),
            reason,
        };
        let (slice, prefix, name) = if raw.is_empty() {
            ("", DEFAULT_PREFIX, id)
        } else {
            let parts: Vec<&str> = raw.split(':').collect();
            let [slice, prefix, name] = parts.as_slice() else {
                return Err(bad(format!(
                    "expected \"slice:prefix:name\" for the systemd cgroup driver (--systemd-cgroup), got {} part(s)",
                    parts.len()
                )));
            };
            (*slice, *prefix, *name)
        };
        let slice = match slice {
            "" if instance == Instance::User => "user.slice",
            "" => "system.slice",
            s => s,
        };
        expand_slice(slice).map_err(|r| bad(format!("slice {slice:?}: {r}")))?;
        if name.is_empty() {
            return Err(bad("the name part is empty".into()));
        }
        let unit = if name.ends_with(".slice") {
            expand_slice(name).map_err(|r| bad(format!("slice {name:?}: {r}")))?;
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        check_unit_name(&unit).map_err(|r| bad(format!("unit name {unit:?}: {r}")))?;
        Ok(UnitSpec {
            slice: slice.to_string(),
            unit,
            instance,
            properties: BTreeMap::new(),
        })
    }

    pub fn is_slice(&self) -> bool {
        self.unit.ends_with(".slice")
    }

    /// The unit's cgroup relative to the cgroup of the systemd instance that owns it
    /// (`/system.slice/nanoclaw-abc.scope`).
    pub fn relative_cgroup(&self) -> String {
        if self.is_slice() {
            // systemd places a slice by its own name (`a-b.slice` below `a.slice`), whatever
            // the parent given; the parent is only a dependency (Wants=).
            return expand_slice(&self.unit).unwrap_or_default();
        }
        let parent = expand_slice(&self.slice).unwrap_or_default();
        format!("{}/{}", parent.trim_end_matches('/'), self.unit)
    }
}

/// systemd's slice naming: `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`; `-.slice`
/// is the root. The reason on error says what systemd would object to.
pub fn expand_slice(slice: &str) -> std::result::Result<String, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err("a slice name must end in \".slice\"".into());
    };
    if base == "-" {
        return Ok("/".into());
    }
    check_unit_name(slice)?;
    if base.is_empty() {
        return Err("empty slice name".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in base.split('-') {
        if component.is_empty() {
            return Err("a slice name may not start or end with \"-\" nor contain \"--\"".into());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(".slice");
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// systemd's `unit_name_is_valid` for plain (non-template) names.
fn check_unit_name(unit: &str) -> std::result::Result<(), String> {
    if unit.len() >= UNIT_NAME_MAX {
        return Err(format!("longer than {} bytes", UNIT_NAME_MAX - 1));
    }
    let Some((prefix, _suffix)) = unit.rsplit_once('.') else {
        return Err("no unit type suffix".into());
    };
    if prefix.is_empty() {
        return Err("empty name before the unit type".into());
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')))
    {
        return Err(format!(
            "character {c:?} is not allowed in a systemd unit name (only A-Z a-z 0-9 : - _ . \\)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<UnitSpec> {
        UnitSpec::parse(Some(s), "id", Instance::System)
    }

    #[test]
    fn defaults_are_runcs_with_our_prefix() {
        let u = UnitSpec::parse(None, "abc", Instance::System).unwrap();
        assert_eq!(u.slice, "system.slice");
        assert_eq!(u.unit, "nanoclaw-abc.scope");
        assert_eq!(u.relative_cgroup(), "/system.slice/nanoclaw-abc.scope");
        let u = UnitSpec::parse(Some(""), "abc", Instance::User).unwrap();
        assert_eq!(u.slice, "user.slice");
        assert_eq!(u.relative_cgroup(), "/user.slice/nanoclaw-abc.scope");
    }

    #[test]
    fn engine_forms() {
        // docker / containerd with SystemdCgroup / podman / kubelet.
        let u = p("system.slice:docker:0123abcd").unwrap();
        assert_eq!(u.unit, "docker-0123abcd.scope");
        let u = p("machine.slice:libpod:deadbeef").unwrap();
        assert_eq!(u.relative_cgroup(), "/machine.slice/libpod-deadbeef.scope");
        let u = p("kubepods-besteffort-pod12.slice:cri-containerd:c1").unwrap();
        assert_eq!(
            u.relative_cgroup(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-c1.scope"
        );
        let u = p(":runc:x").unwrap();
        assert_eq!(u.slice, "system.slice");
        let u = p("-.slice::x").unwrap();
        assert_eq!(u.unit, "x.scope");
        assert_eq!(u.relative_cgroup(), "/x.scope");
    }

    #[test]
    fn a_name_ending_in_slice_is_a_slice() {
        let u = p("system.slice:ignored:system-box.slice").unwrap();
        assert!(u.is_slice());
        assert_eq!(u.unit, "system-box.slice");
        assert_eq!(u.relative_cgroup(), "/system.slice/system-box.slice");
    }

    #[test]
    fn systemd_would_refuse_these() {
        for bad in [
            "/sys/fs/cgroup/x",
            "a:b",
            "a:b:c:d",
            "system:nanoclaw:x",
            "user.slice/user-1000.slice:p:x",
            "-user.slice:p:x",
            "user--x.slice:p:x",
            "user-.slice:p:x",
            ".slice:p:x",
            "system.slice:p:",
            "system.slice:p:a/b",
            "system.slice:p:a b",
            "system.slice:p:a+b",
            "system.slice:p:a@b",
            "system.slice:p:bad--.slice",
        ] {
            let e = p(bad).unwrap_err();
            assert!(matches!(e, CgroupError::BadPath { .. }), "{bad}: {e}");
            assert!(e.to_string().starts_with("linux.cgroupsPath"), "{e}");
        }
        let long = format!("system.slice:p:{}", "x".repeat(250));
        assert!(p(&long).is_err());
    }

    #[test]
    fn expand() {
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert!(expand_slice("a.scope").is_err());
    }
}
