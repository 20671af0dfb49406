//! `linux.resources` → systemd unit properties, runc's cgroup v2 table
//! (runc docs/systemd.md): what systemd owns on the unit's cgroup must be a unit property, or
//! systemd would write its own value back on the next reload. Everything is *also* written to
//! the delegated cgroup by the cgroupfs code afterwards (as runc does), which applies the exact
//! values (systemd rounds CPU quotas to 10 ms/s) and the fields systemd has no property for
//! (hugetlb, rdma, io throttles, other `unified` keys).
//!
//! Device rules go both ways. The BPF filter nanoclaw attaches to the delegated cgroup is the
//! exact rule list (denies, wildcard majors, order). systemd attaches its own filter for
//! `DevicePolicy`/`DeviceAllow` again on every reload, and the kernel grants an access only when
//! every attached filter does: so the properties must never deny what the rules allow. Rules
//! systemd can express exactly (deny-all, then only allows) become `DevicePolicy=strict` with
//! runc's `DeviceAllow` syntax; anything else (a deny after an allow, a wildcard major with a
//! fixed minor, an allow-all base) becomes `DevicePolicy=auto` with no entries, systemd's
//! "no filter", and nanoclaw's own filter alone decides.

use oci_spec::runtime::LinuxResources;

use super::dbus::Value;
use crate::cpuset;
use crate::devices::{self, Kind, Rule, ACC_MKNOD, ACC_READ, ACC_WRITE};
use crate::error::Result;
use crate::v2::{shares_to_weight, swap_v2};
use crate::validate::ValidationError;

/// The kernel's default CFS period (µs).
const DEFAULT_PERIOD: u64 = 100_000;

/// A unit property as StartTransientUnit/SetUnitProperties take it.
pub type Property = (String, Value);

fn prop(name: &str, v: Value) -> Property {
    (name.to_string(), v)
}

/// -1 (unlimited) → systemd's infinity.
fn limit(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> crate::error::CgroupError {
    ValidationError {
        field: field.to_string(),
        reason: reason.into(),
    }
    .into()
}

/// The properties of a new unit that do not come from the resources.
pub fn base(unit: &super::unit::UnitSpec, pid: Option<u32>, description: &str) -> Vec<Property> {
    let mut p = vec![prop("Description", Value::Str(description.to_string()))];
    if unit.is_slice() {
        p.push(prop(
            "Wants",
            Value::Array("s".into(), vec![Value::Str(unit.slice.clone())]),
        ));
    } else {
        p.push(prop("Slice", Value::Str(unit.slice.clone())));
        p.push(prop("Delegate", Value::Bool(true)));
        if let Some(pid) = pid {
            p.push(prop(
                "PIDs",
                Value::Array("u".into(), vec![Value::U32(pid)]),
            ));
        }
    }
    for acct in [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "TasksAccounting",
    ] {
        p.push(prop(acct, Value::Bool(true)));
    }
    p.push(prop("DefaultDependencies", Value::Bool(false)));
    p
}

/// runc's CPU quota translation: CPUQuotaPerSecUSec is µs of CPU per second, rounded up to
/// systemd's 1 % granularity (so the cgroupfs value written afterwards is never above it).
fn cpu_quota(props: &mut Vec<Property>, quota: i64, period: u64, version: u32) {
    if period != 0 && version >= 242 {
        props.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    if quota != 0 || period != 0 {
        let mut per_sec = u64::MAX;
        if quota > 0 {
            let period = if period == 0 { DEFAULT_PERIOD } else { period };
            per_sec = (quota as u64).saturating_mul(1_000_000) / period;
            if per_sec % 10_000 != 0 {
                per_sec = (per_sec / 10_000 + 1) * 10_000;
            }
        }
        props.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
    }
}

/// A cpuset list as systemd's CPU/NUMA bitmask (`ay`, bit n of byte n/8 = CPU n).
fn bitmask(field: &str, list: &str) -> Result<Value> {
    let set = cpuset::parse_list(list).map_err(|r| invalid(field, r))?;
    let mut bytes = Vec::new();
    for n in set {
        let i = (n / 8) as usize;
        if bytes.len() <= i {
            bytes.resize(i + 1, 0u8);
        }
        bytes[i] |= 1 << (n % 8);
    }
    Ok(Value::Array(
        "y".into(),
        bytes.into_iter().map(Value::Byte).collect(),
    ))
}

fn parse_max(field: &str, v: &str) -> Result<u64> {
    let v = v.trim();
    if v == "max" {
        return Ok(u64::MAX);
    }
    v.parse()
        .map_err(|_| invalid(field, format!("{v:?} is not a number or \"max\"")))
}

/// The first systemd that reads `/dev/char/M:m` and `char-M` without looking the device up
/// (older ones stat the path or want a /proc/devices group name).
const DEVICE_NUMBERS_SINCE: u32 = 240;

/// One `DeviceAllow` entry in systemd's syntax, or `None` when systemd cannot express the
/// rule (a wildcard major with a fixed minor; numbers on systemd older than 240).
fn device_allow_entry(rule: &Rule, version: u32) -> Option<Value> {
    let group = match rule.kind {
        Kind::Char => "char",
        Kind::Block => "block",
        Kind::All => return None,
    };
    let path = match (rule.major, rule.minor) {
        (None, None) => format!("{group}-*"),
        (None, Some(_)) => return None,
        _ if version < DEVICE_NUMBERS_SINCE => return None,
        (Some(major), None) => format!("{group}-{major}"),
        (Some(major), Some(minor)) => format!("/dev/{group}/{major}:{minor}"),
    };
    let mut perms = String::new();
    for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if rule.access & bit != 0 {
            perms.push(ch);
        }
    }
    Some(Value::Struct(vec![Value::Str(path), Value::Str(perms)]))
}

/// `DevicePolicy` and `DeviceAllow` for the normalized `rules` (module doc: never narrower
/// than the rules). `DeviceAllow` is sent empty first, which clears the unit's list on update.
pub fn device_properties(rules: &[Rule], version: u32) -> Vec<Property> {
    let empty = || Value::Array("(ss)".into(), Vec::new());
    let no_filter = || {
        vec![
            prop("DevicePolicy", Value::Str("auto".into())),
            prop("DeviceAllow", empty()),
        ]
    };
    // Only what follows the last reset matters; it must be a reset to deny-all, and
    // everything after it an allow, for an allow list to say the same.
    let Some(last_reset) = rules.iter().rposition(Rule::is_reset) else {
        return no_filter();
    };
    if rules[last_reset].allow {
        return no_filter();
    }
    let mut entries = Vec::new();
    for rule in &rules[last_reset + 1..] {
        if !rule.allow {
            return no_filter();
        }
        if rule.access == 0 {
            continue;
        }
        match device_allow_entry(rule, version) {
            Some(e) => entries.push(e),
            None => return no_filter(),
        }
    }
    vec![
        prop("DevicePolicy", Value::Str("strict".into())),
        prop("DeviceAllow", empty()),
        prop("DeviceAllow", Value::Array("(ss)".into(), entries)),
    ]
}

/// Translates the resources for systemd `version` (AllowedCPUs/AllowedMemoryNodes need 244,
/// CPUQuotaPeriodUSec 242; older systemd gets those through cgroupfs only, as with runc).
pub fn resources(r: &LinuxResources, version: u32) -> Result<Vec<Property>> {
    let mut p = Vec::new();
    if let Some(rules) = r.devices() {
        p.extend(device_properties(&devices::normalize(rules), version));
    }
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            p.push(prop("MemoryMax", Value::U64(limit(l))));
        }
        if let Some(res) = m.reservation().filter(|r| *r != 0) {
            p.push(prop("MemoryLow", Value::U64(limit(res))));
        }
        if let Some(swap) = m.swap() {
            match swap_v2(swap, m.limit().unwrap_or(0)) {
                Ok(Some(v)) => p.push(prop(
                    "MemorySwapMax",
                    Value::U64(parse_max("memory.swap", &v)?),
                )),
                Ok(None) => {}
                Err(reason) => return Err(invalid("memory.swap", reason)),
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            p.push(prop("CPUWeight", Value::U64(shares_to_weight(s))));
        }
        cpu_quota(
            &mut p,
            c.quota().unwrap_or(0),
            c.period().unwrap_or(0),
            version,
        );
        if version >= 244 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                p.push(prop("AllowedCPUs", bitmask("cpu.cpus", cpus)?));
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                p.push(prop("AllowedMemoryNodes", bitmask("cpu.mems", mems)?));
            }
        }
    }
    if let Some(pids) = r.pids() {
        let l = pids.limit();
        if l > 0 || l == -1 {
            p.push(prop("TasksMax", Value::U64(limit(l))));
        }
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            let v = u[k].trim();
            let field = format!("unified[{k:?}]");
            match k.as_str() {
                "cpu.max" => {
                    let f: Vec<&str> = v.split_whitespace().collect();
                    if f.is_empty() || f.len() > 2 {
                        return Err(invalid(&field, format!("{v:?} is not \"quota [period]\"")));
                    }
                    let quota = if f[0] == "max" {
                        0
                    } else {
                        f[0].parse::<i64>()
                            .map_err(|_| invalid(&field, format!("quota {:?}", f[0])))?
                    };
                    let period = match f.get(1) {
                        Some(s) => s
                            .parse::<u64>()
                            .map_err(|_| invalid(&field, format!("period {s:?}")))?,
                        None => DEFAULT_PERIOD,
                    };
                    cpu_quota(&mut p, quota, period, version);
                }
                "cpu.weight" => {
                    let w = v
                        .parse::<u64>()
                        .map_err(|_| invalid(&field, format!("{v:?} is not a number")))?;
                    p.push(prop("CPUWeight", Value::U64(w)));
                }
                "cpuset.cpus" if version >= 244 => p.push(prop("AllowedCPUs", bitmask(&field, v)?)),
                "cpuset.mems" if version >= 244 => {
                    p.push(prop("AllowedMemoryNodes", bitmask(&field, v)?))
                }
                "memory.high" | "memory.low" | "memory.min" | "memory.max" | "memory.swap.max" => {
                    let name = match k.as_str() {
                        "memory.high" => "MemoryHigh",
                        "memory.low" => "MemoryLow",
                        "memory.min" => "MemoryMin",
                        "memory.max" => "MemoryMax",
                        _ => "MemorySwapMax",
                    };
                    p.push(prop(name, Value::U64(parse_max(&field, v)?)));
                }
                "pids.max" => p.push(prop("TasksMax", Value::U64(parse_max(&field, v)?))),
                // No systemd property: written to the delegated cgroup only.
                _ => {}
            }
        }
    }
    Ok(p)
}

/// systemd's version number from its `Version` property ("252.38-1~deb12u1", "v245.4-1.fc32").
pub fn parse_version(s: &str) -> u32 {
    let s = s.trim_start_matches(['"', 'v']);
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::unit::{Instance, UnitSpec};

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get<'a>(p: &'a [Property], name: &str) -> Option<&'a Value> {
        p.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn runcs_v2_table() {
        let r = res(r#"{
            "memory": {"limit": 268435456, "reservation": 134217728, "swap": 536870912},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-2,9", "mems": "0"},
            "pids": {"limit": 64}
        }"#);
        let p = resources(&r, 252).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&Value::U64(268435456)));
        assert_eq!(get(&p, "MemoryLow"), Some(&Value::U64(134217728)));
        // OCI memory+swap 512M with memory 256M = 256M of swap on cgroup v2.
        assert_eq!(get(&p, "MemorySwapMax"), Some(&Value::U64(268435456)));
        assert_eq!(get(&p, "CPUWeight"), Some(&Value::U64(39)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(100000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500000)));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::U64(64)));
        assert_eq!(
            get(&p, "AllowedCPUs"),
            Some(&Value::Array(
                "y".into(),
                vec![Value::Byte(0b0000_0111), Value::Byte(0b0000_0010)]
            ))
        );
        assert_eq!(
            get(&p, "AllowedMemoryNodes"),
            Some(&Value::Array("y".into(), vec![Value::Byte(1)]))
        );
    }

    #[test]
    fn unlimited_and_rounding() {
        let r = res(
            r#"{"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1},
                        "cpu": {"quota": 12345, "period": 100000}}"#,
        );
        let p = resources(&r, 252).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::U64(u64::MAX)));
        // 123450 µs/s rounds up to systemd's 1 % step.
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(130000)));
        let r = res(r#"{"cpu": {"quota": -1}}"#);
        let p = resources(&r, 252).unwrap();
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(u64::MAX)));
    }

    #[test]
    fn unified_keys() {
        let r = res(
            r#"{"unified": {"cpu.max": "max 50000", "memory.high": "1048576",
                        "pids.max": "max", "cpu.weight": "200", "hugetlb.2MB.max": "0",
                        "cpuset.cpus": "1"}}"#,
        );
        let p = resources(&r, 252).unwrap();
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(50000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "MemoryHigh"), Some(&Value::U64(1048576)));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUWeight"), Some(&Value::U64(200)));
        assert_eq!(
            get(&p, "AllowedCPUs"),
            Some(&Value::Array("y".into(), vec![Value::Byte(2)]))
        );
        // hugetlb has no property: cgroupfs only.
        assert!(!p.iter().any(|(n, _)| n.contains("uge")));
        let e = resources(&res(r#"{"unified": {"memory.max": "lots"}}"#), 252).unwrap_err();
        assert!(e.to_string().contains(r#"unified["memory.max"]"#), "{e}");
    }

    #[test]
    fn old_systemd_gets_no_cpuset_or_period_properties() {
        let r = res(r#"{"cpu": {"cpus": "0", "period": 20000, "quota": 10000}}"#);
        let p = resources(&r, 241).unwrap();
        assert!(get(&p, "AllowedCPUs").is_none());
        assert!(get(&p, "CPUQuotaPeriodUSec").is_none());
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500000)));
    }

    #[test]
    fn base_properties_of_a_scope_and_a_slice() {
        let u = UnitSpec::parse(Some("system.slice:nanoclaw:c1"), "c1", Instance::System).unwrap();
        let p = base(&u, Some(4242), "nanoclaw container c1");
        assert_eq!(get(&p, "Slice"), Some(&Value::Str("system.slice".into())));
        assert_eq!(get(&p, "Delegate"), Some(&Value::Bool(true)));
        assert_eq!(get(&p, "DefaultDependencies"), Some(&Value::Bool(false)));
        assert_eq!(
            get(&p, "PIDs"),
            Some(&Value::Array("u".into(), vec![Value::U32(4242)]))
        );
        assert_eq!(get(&p, "TasksAccounting"), Some(&Value::Bool(true)));
        let s = UnitSpec::parse(
            Some("system.slice:x:system-c1.slice"),
            "c1",
            Instance::System,
        )
        .unwrap();
        let p = base(&s, Some(1), "d");
        assert!(get(&p, "PIDs").is_none() && get(&p, "Delegate").is_none());
        assert!(get(&p, "Wants").is_some());
    }

    /// The `DevicePolicy` value and the entries of the last `DeviceAllow` of `p`.
    fn device_props(p: &[Property]) -> (String, Vec<(String, String)>) {
        let policy = match get(p, "DevicePolicy") {
            Some(Value::Str(s)) => s.clone(),
            other => panic!("DevicePolicy {other:?}"),
        };
        let last = p.iter().rev().find(|(n, _)| n == "DeviceAllow");
        let Some((_, Value::Array(sig, items))) = last else {
            panic!("no DeviceAllow in {p:?}");
        };
        assert_eq!(sig, "(ss)");
        let entries = items
            .iter()
            .map(|v| match v {
                Value::Struct(f) => match (&f[0], &f[1]) {
                    (Value::Str(a), Value::Str(b)) => (a.clone(), b.clone()),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        (policy, entries)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn deny_all_then_allows_is_runcs_strict_allow_list() {
        let r = res(r#"{"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rw"},
            {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "r"},
            {"allow": true, "type": "a", "major": 10, "minor": 200, "access": "rw"}
        ]}"#);
        let p = resources(&r, 252).unwrap();
        let (policy, entries) = device_props(&p);
        assert_eq!(policy, "strict");
        assert_eq!(
            entries,
            pairs(&[
                ("char-*", "m"),
                ("block-*", "m"),
                ("/dev/char/1:3", "rwm"),
                ("char-136", "rw"),
                ("/dev/block/8:0", "r"),
                ("/dev/block/10:200", "rw"),
                ("/dev/char/10:200", "rw"),
            ])
        );
        // The list is cleared first, so an update replaces rather than appends.
        let n = p.iter().filter(|(n, _)| n == "DeviceAllow").count();
        assert_eq!(n, 2);
        // Rules before the last reset do not count.
        let r = res(r#"{"devices": [
            {"allow": true, "type": "c", "major": 4, "minor": 1, "access": "rwm"},
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
        ]}"#);
        let (policy, entries) = device_props(&resources(&r, 252).unwrap());
        assert_eq!(policy, "strict");
        assert_eq!(entries, pairs(&[("/dev/char/1:5", "r")]));
    }

    #[test]
    fn rules_systemd_cannot_express_leave_the_filter_to_nanoclaw() {
        for (why, json) in [
            (
                "allow-all base",
                r#"[{"allow": false, "type": "c", "major": 1, "minor": 3}]"#,
            ),
            ("no rules", "[]"),
            (
                "reset to allow-all",
                r#"[{"allow": false, "access": "rwm"}, {"allow": true, "access": "rwm"}]"#,
            ),
            (
                "deny after an allow",
                r#"[{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "access": "rwm"},
                    {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "w"}]"#,
            ),
            (
                "wildcard major, fixed minor",
                r#"[{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "minor": 3, "access": "rwm"}]"#,
            ),
        ] {
            let r = res(&format!(r#"{{"devices": {json}}}"#));
            let (policy, entries) = device_props(&resources(&r, 252).unwrap());
            assert_eq!((policy.as_str(), entries.len()), ("auto", 0), "{why}");
        }
        // systemd before 240 looks numbers up: only the type wildcards are exact there.
        let r = res(r#"{"devices": [{"allow": false, "access": "rwm"},
                                    {"allow": true, "type": "c", "access": "m"}]}"#);
        assert_eq!(device_props(&resources(&r, 239).unwrap()).0, "strict");
        let r = res(r#"{"devices": [{"allow": false, "access": "rwm"},
                                    {"allow": true, "type": "c", "major": 1, "minor": 3}]}"#);
        assert_eq!(device_props(&resources(&r, 239).unwrap()).0, "auto");
        // No device field: the unit's device settings are left alone.
        let p = resources(&res(r#"{"pids": {"limit": 5}}"#), 252).unwrap();
        assert!(get(&p, "DevicePolicy").is_none() && get(&p, "DeviceAllow").is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("252.38-1~deb12u1"), 252);
        assert_eq!(parse_version("v245.4-1.fc32"), 245);
        assert_eq!(parse_version("\"249\""), 249);
        assert_eq!(parse_version("junk"), 0);
    }
}

/// The annotation prefix runc reads unit properties from (`org.systemd.property.TimeoutStopUSec`
/// = `"uint64 123456789"`), under the systemd driver only.
pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// The `org.systemd.property.*` annotations as unit properties, as runc applies them: the value
/// in GVariant text form — the subset runc's users write: `uint64|int64|uint32|int32 N`,
/// `boolean true|false`, `true`/`false`, a bare integer (int32, as GVariant reads it), a quoted
/// string. A name ending in `Sec` (not `USec`) takes seconds and becomes `…USec` in µs, as
/// runc does. Anything else is refused naming the annotation: `Err((key, reason))`.
pub fn from_annotations<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> std::result::Result<Vec<Property>, (String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<_> = annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    sorted.sort();
    for (key, raw) in sorted {
        let name = &key[ANNOTATION_PREFIX.len()..];
        let bad = |r: String| (key.clone(), r);
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_uppercase())
            || !chars.all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad(format!("{name:?} is not a systemd property name")));
        }
        let value = parse_gvariant(raw.trim()).map_err(bad)?;
        if let Some(base) = name.strip_suffix("Sec").filter(|b| !b.ends_with('U')) {
            let secs = match value {
                Value::U64(n) => n,
                Value::U32(n) => u64::from(n),
                Value::I64(n) if n >= 0 => n as u64,
                Value::I32(n) if n >= 0 => n as u64,
                _ => {
                    return Err(bad(format!(
                        "{name} takes a non-negative number of seconds"
                    )))
                }
            };
            let usec = secs
                .checked_mul(1_000_000)
                .ok_or_else(|| bad(format!("{secs} seconds overflow {base}USec")))?;
            out.push(prop(&format!("{base}USec"), Value::U64(usec)));
        } else {
            out.push(prop(name, value));
        }
    }
    Ok(out)
}

fn parse_gvariant(s: &str) -> std::result::Result<Value, String> {
    let num_err = |t: &str, v: &str| format!("{v:?} is not a valid {t}");
    if let Some((t, v)) = s.split_once(' ') {
        let v = v.trim();
        return match t {
            "uint64" => v.parse().map(Value::U64).map_err(|_| num_err(t, v)),
            "int64" => v.parse().map(Value::I64).map_err(|_| num_err(t, v)),
            "uint32" => v.parse().map(Value::U32).map_err(|_| num_err(t, v)),
            "int32" => v.parse().map(Value::I32).map_err(|_| num_err(t, v)),
            "boolean" => match v {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(num_err(t, v)),
            },
            _ => Err(format!(
                "unsupported GVariant value {s:?} (use uint64/int64/uint32/int32/boolean N, true/false, a number or a quoted string)"
            )),
        };
    }
    match s {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Ok(n) = s.parse::<i32>() {
        return Ok(Value::I32(n));
    }
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            if inner.contains(q) || inner.contains('\\') {
                return Err(format!("{s:?}: escapes in strings are not supported"));
            }
            return Ok(Value::Str(inner.to_string()));
        }
    }
    Err(format!(
        "unsupported GVariant value {s:?} (use uint64/int64/uint32/int32/boolean N, true/false, a number or a quoted string)"
    ))
}

#[cfg(test)]
mod annotation_tests {
    use super::*;
    use std::collections::HashMap;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn runcs_examples() {
        let a = ann(&[
            ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
            ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
            ("org.systemd.property.TimeoutStopSec", "uint64 3"),
            ("org.systemd.property.IgnoreSIGPIPE", "false"),
            ("io.podman.other", "x"),
        ]);
        let p = from_annotations(&a).unwrap();
        assert_eq!(
            p,
            vec![
                prop("CollectMode", Value::Str("inactive-or-failed".into())),
                prop("IgnoreSIGPIPE", Value::Bool(false)),
                prop("TimeoutStopUSec", Value::U64(3_000_000)),
                prop("TimeoutStopUSec", Value::U64(123456789)),
            ]
        );
    }

    #[test]
    fn refused_naming_the_annotation() {
        for (k, v) in [
            ("org.systemd.property.lowercase", "true"),
            ("org.systemd.property.A-B", "true"),
            ("org.systemd.property.X", "uint64 -1"),
            ("org.systemd.property.X", "[1, 2]"),
            ("org.systemd.property.X", "'it\\'s'"),
            ("org.systemd.property.TimeoutSec", "'soon'"),
        ] {
            let (key, reason) = from_annotations(&ann(&[(k, v)])).unwrap_err();
            assert_eq!(key, k, "{reason}");
        }
    }
}
