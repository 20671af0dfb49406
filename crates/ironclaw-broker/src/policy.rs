//! Release policy: default deny.
//!
//! A policy is JSON:
//! ```json
//! {
//!   "allow_sample": false,
//!   "trusted_platform_keys": [ { "kty": "EC", "crv": "P-384", "x": "...", "y": "..." } ],
//!   "rules": [
//!     { "resources": ["default/key/*"], "tee": ["kvm"],
//!       "measurements": ["<96 hex chars>"], "allow_debug": false,
//!       "tcb_status": ["UpToDate"] }
//!   ]
//! }
//! ```
//! Evidence is admitted (at `/attest`) only when some rule names its TEE kind,
//! lists its measurement (or `"*"`, explicitly any), allows its debug setting and,
//! when `tcb_status` is given, its TCB status. A resource is released only when an
//! admitting rule also matches the resource path (`repository/type/tag`, where a
//! component `*` matches any one component). `kvm` evidence is only ever verified
//! against `trusted_platform_keys`; the `sample` kind is refused unless
//! `allow_sample` is true. With no rules nothing is released.

use serde::{Deserialize, Serialize};

use ironclaw_enclave::kbs_client::check_component;
use ironclaw_verifier::TcbStatus;

use crate::evidence::Claims;

/// The TEE kinds a rule may name.
pub const KNOWN_TEES: [&str; 6] = ["kvm", "snp", "tdx", "sgx", "nitro", "sample"];

/// A policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accept trustee's test-only `sample` evidence.
    #[serde(default)]
    pub allow_sample: bool,
    /// Platform keys (P-384 JWKs, as `ironclaw platform-key` prints) whose `kvm` evidence is verified.
    #[serde(default)]
    pub trusted_platform_keys: Vec<serde_json::Value>,
    /// Release rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One release rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Resource path patterns (`repository/type/tag`, `*` per component).
    pub resources: Vec<String>,
    /// TEE kinds.
    pub tee: Vec<String>,
    /// Accepted primary measurements (lowercase hex), or `"*"`.
    #[serde(default)]
    pub measurements: Vec<String>,
    /// Accept debuggable enclaves.
    #[serde(default)]
    pub allow_debug: bool,
    /// Accepted TCB statuses; absent = not checked.
    #[serde(default)]
    pub tcb_status: Option<Vec<TcbStatus>>,
}

/// Why a policy is invalid.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    /// Not valid policy JSON.
    #[error("policy: {0}")]
    Json(String),
    /// A field is invalid.
    #[error("policy: rules[{rule}].{field}: {reason}")]
    Rule {
        /// Rule index.
        rule: usize,
        /// Field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A trusted key is invalid.
    #[error("policy: trusted_platform_keys[{index}]: {reason}")]
    Key {
        /// Index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Why the policy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny(pub String);

fn pattern_ok(p: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split('/').collect();
    if parts.len() != 3 {
        return Err(format!("{p:?} must be repository/type/tag"));
    }
    for c in parts {
        if c != "*" {
            check_component(c).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut r = path.split('/');
    loop {
        match (p.next(), r.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

impl Policy {
    /// Parses and validates policy JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyError> {
        let p: Policy =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (index, k) in self.trusted_platform_keys.iter().enumerate() {
            ironclaw_verifier::kvm::parse_public_jwk(k).map_err(|e| PolicyError::Key {
                index,
                reason: e.to_string(),
            })?;
        }
        for (i, r) in self.rules.iter().enumerate() {
            let err = |field, reason: String| PolicyError::Rule {
                rule: i,
                field,
                reason,
            };
            if r.resources.is_empty() {
                return Err(err("resources", "empty".into()));
            }
            for p in &r.resources {
                pattern_ok(p).map_err(|e| err("resources", e))?;
            }
            if r.tee.is_empty() {
                return Err(err("tee", "empty".into()));
            }
            for t in &r.tee {
                if !KNOWN_TEES.contains(&t.as_str()) {
                    return Err(err(
                        "tee",
                        format!("unknown TEE kind {t:?} (known: {})", KNOWN_TEES.join(", ")),
                    ));
                }
            }
            for m in &r.measurements {
                if m != "*"
                    && (hex::decode(m).is_err()
                        || m.chars().any(|c| c.is_ascii_uppercase())
                        || m.is_empty())
                {
                    return Err(err(
                        "measurements",
                        format!("{m:?} is neither lowercase hex nor \"*\""),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The trusted platform keys, parsed.
    pub fn platform_keys(&self) -> Vec<p384::ecdsa::VerifyingKey> {
        self.trusted_platform_keys
            .iter()
            .filter_map(|k| ironclaw_verifier::kvm::parse_public_jwk(k).ok())
            .collect()
    }

    fn admitting<'a>(&'a self, c: &Claims) -> Result<Vec<&'a Rule>, Deny> {
        let by_tee: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.tee.iter().any(|t| t == c.tee))
            .collect();
        if by_tee.is_empty() {
            return Err(Deny(format!("no rule admits TEE kind {}", c.tee)));
        }
        let m = c.measurement.as_deref().map(hex::encode);
        let by_m: Vec<&Rule> = by_tee
            .into_iter()
            .filter(|r| {
                r.measurements
                    .iter()
                    .any(|x| x == "*" || Some(x) == m.as_ref())
            })
            .collect();
        if by_m.is_empty() {
            return Err(Deny(format!(
                "measurement {} is not allowed for TEE kind {}",
                m.as_deref().unwrap_or("(none)"),
                c.tee
            )));
        }
        let by_debug: Vec<&Rule> = by_m
            .into_iter()
            .filter(|r| r.allow_debug || !c.debug)
            .collect();
        if by_debug.is_empty() {
            return Err(Deny(
                "the enclave runs in debug mode and no matching rule allows debug".into(),
            ));
        }
        let by_tcb: Vec<&Rule> = by_debug
            .into_iter()
            .filter(|r| match (&r.tcb_status, c.tcb) {
                (None, _) => true,
                (Some(list), Some(s)) => list.contains(&s),
                (Some(_), None) => false,
            })
            .collect();
        if by_tcb.is_empty() {
            return Err(Deny(format!(
                "TCB status {:?} is not accepted by any matching rule",
                c.tcb
            )));
        }
        Ok(by_tcb)
    }

    /// Whether verified evidence is admitted at all (checked at `/attest`).
    pub fn admits(&self, c: &Claims) -> Result<(), Deny> {
        self.admitting(c).map(|_| ())
    }

    /// Whether `resource` (`repository/type/tag`) may be released to `c`.
    pub fn grants(&self, c: &Claims, resource: &str) -> Result<(), Deny> {
        let rules = self.admitting(c)?;
        if rules
            .iter()
            .any(|r| r.resources.iter().any(|p| pattern_matches(p, resource)))
        {
            Ok(())
        } else {
            Err(Deny(format!("no rule grants {resource} to this enclave")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tee: &'static str, m: &[u8], debug: bool) -> Claims {
        Claims {
            tee,
            measurement: Some(m.to_vec()),
            debug,
            tcb: None,
            result: None,
        }
    }

    fn policy() -> Policy {
        Policy::from_json(
            br#"{"rules":[{"resources":["default/key/*"],"tee":["kvm"],"measurements":["abcd"]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn default_policy_denies_everything() {
        let p = Policy::default();
        assert!(p.admits(&claims("kvm", &[0xab, 0xcd], false)).is_err());
    }

    #[test]
    fn rule_binds_kind_measurement_debug_and_path() {
        let p = policy();
        let ok = claims("kvm", &[0xab, 0xcd], false);
        assert!(p.grants(&ok, "default/key/k1").is_ok());
        assert!(p
            .grants(&ok, "default/cert/k1")
            .unwrap_err()
            .0
            .contains("no rule grants"));
        assert!(p
            .admits(&claims("kvm", &[0xab, 0xce], false))
            .unwrap_err()
            .0
            .contains("measurement abce"));
        assert!(p
            .admits(&claims("snp", &[0xab, 0xcd], false))
            .unwrap_err()
            .0
            .contains("TEE kind snp"));
        assert!(p
            .admits(&claims("kvm", &[0xab, 0xcd], true))
            .unwrap_err()
            .0
            .contains("debug"));
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let e =
            Policy::from_json(br#"{"rules":[{"resources":["a/b"],"tee":["kvm"]}]}"#).unwrap_err();
        assert!(matches!(
            e,
            PolicyError::Rule {
                rule: 0,
                field: "resources",
                ..
            }
        ));
        let e = Policy::from_json(br#"{"rules":[{"resources":["a/b/c"],"tee":["vmware"]}]}"#)
            .unwrap_err();
        assert!(matches!(e, PolicyError::Rule { field: "tee", .. }));
        let e = Policy::from_json(
            br#"{"rules":[{"resources":["a/b/c"],"tee":["kvm"],"measurements":["XY"]}]}"#,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            PolicyError::Rule {
                field: "measurements",
                ..
            }
        ));
        assert!(matches!(
            Policy::from_json(br#"{"bogus":1}"#),
            Err(PolicyError::Json(_))
        ));
        let e = Policy::from_json(br#"{"trusted_platform_keys":[{"kty":"EC"}]}"#).unwrap_err();
        assert!(matches!(e, PolicyError::Key { index: 0, .. }));
    }
}
