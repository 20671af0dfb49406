//! `linux.memoryPolicy`: the NUMA memory policy of every container process
//! (set_mempolicy(2)), checked before anything is created and applied in `finish.rs` by the
//! init and by each `exec`'d process. The policy is inherited across fork and kept by execve,
//! so the workload and everything it starts allocate under it.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

/// Node ids above this are refused: the kernel's MAX_NUMNODES is at most 1024 (NODES_SHIFT 10).
pub const MAX_NODES: usize = 1024;

const WORD_BITS: usize = usize::BITS as usize;

#[derive(Debug, thiserror::Error)]
pub enum MemoryPolicyError {
    #[error("linux.memoryPolicy.nodes: {0}")]
    Nodes(String),
    #[error("linux.memoryPolicy.nodes: mode {mode} takes no nodes")]
    NodesNotAllowed { mode: String },
    #[error("linux.memoryPolicy.nodes: mode {mode} needs at least one node")]
    NodesRequired { mode: String },
    #[error("linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")]
    ExclusiveFlags,
    #[error("linux.memoryPolicy.flags: mode {mode} takes no flags")]
    FlagsNotAllowed { mode: String },
    #[error("linux.memoryPolicy: set_mempolicy({mode}, nodes {nodes:?}): {source}")]
    Apply {
        mode: String,
        nodes: String,
        source: nix::Error,
    },
}

/// A validated policy: the mode word (mode | flags) and the node mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicyPlan {
    mode: i32,
    mask: Vec<usize>,
    /// For error messages.
    mode_name: String,
    nodes: String,
}

fn mode_number(mode: MemoryPolicyModeType) -> i32 {
    // <linux/mempolicy.h> enum order.
    match mode {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    }
}

fn flag_bits(flag: MemoryPolicyFlagType) -> i32 {
    match flag {
        MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
        MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
    }
}

/// Parses a node list as the spec writes it ("0-3,7"): ids and inclusive ranges, each below
/// [`MAX_NODES`]. Returns the bitmask as set_mempolicy takes it.
pub fn parse_nodes(text: &str) -> Result<Vec<usize>, MemoryPolicyError> {
    let mut mask = vec![0usize; MAX_NODES / WORD_BITS];
    let bad = |what: String| MemoryPolicyError::Nodes(what);
    let number = |s: &str, at: &str| -> Result<usize, MemoryPolicyError> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{at:?} is not a node id or range")));
        }
        let n: usize = s
            .parse()
            .map_err(|_| bad(format!("{at:?}: node id out of range")))?;
        if n >= MAX_NODES {
            return Err(bad(format!("{at:?}: node {n} is not below {MAX_NODES}")));
        }
        Ok(n)
    };
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (number(a, part)?, number(b, part)?),
            None => {
                let n = number(part, part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad(format!("{part:?}: range runs backwards")));
        }
        for n in lo..=hi {
            mask[n / WORD_BITS] |= 1 << (n % WORD_BITS);
        }
    }
    Ok(mask)
}

/// Checks `linux.memoryPolicy` the way the kernel will judge it, so a bad policy is refused
/// with its field before anything exists.
pub fn plan(
    policy: Option<&LinuxMemoryPolicy>,
) -> Result<Option<MemoryPolicyPlan>, MemoryPolicyError> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    let mode = policy.mode();
    let mode_name = mode.to_string();
    let nodes = policy.nodes().as_deref().unwrap_or("").trim().to_owned();
    let flags = policy.flags().as_deref().unwrap_or_default();
    let mask = if nodes.is_empty() {
        Vec::new()
    } else {
        parse_nodes(&nodes)?
    };
    let any_node = mask.iter().any(|w| *w != 0);
    match mode {
        MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal => {
            if any_node {
                return Err(MemoryPolicyError::NodesNotAllowed { mode: mode_name });
            }
            if !flags.is_empty() {
                return Err(MemoryPolicyError::FlagsNotAllowed { mode: mode_name });
            }
        }
        // An empty MPOL_PREFERRED is "local allocation".
        MemoryPolicyModeType::MpolPreferred => {}
        MemoryPolicyModeType::MpolBind
        | MemoryPolicyModeType::MpolInterleave
        | MemoryPolicyModeType::MpolWeightedInterleave
        | MemoryPolicyModeType::MpolPreferredMany => {
            if !any_node {
                return Err(MemoryPolicyError::NodesRequired { mode: mode_name });
            }
        }
    }
    if flags.contains(&MemoryPolicyFlagType::MpolFStaticNodes)
        && flags.contains(&MemoryPolicyFlagType::MpolFRelativeNodes)
    {
        return Err(MemoryPolicyError::ExclusiveFlags);
    }
    let mode = flags
        .iter()
        .fold(mode_number(mode), |m, f| m | flag_bits(*f));
    Ok(Some(MemoryPolicyPlan {
        mode,
        mask,
        mode_name,
        nodes,
    }))
}

impl MemoryPolicyPlan {
    /// set_mempolicy for the calling process; kept across fork and execve. The kernel still
    /// judges the nodes against the host (a node that does not exist or is not allowed by
    /// the cpuset is EINVAL), and that error names the field.
    pub fn apply(&self) -> Result<(), MemoryPolicyError> {
        let (ptr, maxnode) = if self.mask.is_empty() {
            (std::ptr::null(), 0usize)
        } else {
            // The kernel reads maxnode - 1 bits.
            (self.mask.as_ptr(), self.mask.len() * WORD_BITS + 1)
        };
        // SAFETY: `ptr` is null with maxnode 0, or points to `mask`, which holds
        // mask.len() * WORD_BITS bits = maxnode - 1, the most the kernel reads; it lives
        // until the call returns. The kernel copies the mask and keeps no pointer.
        let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, self.mode, ptr, maxnode) };
        nix::errno::Errno::result(r)
            .map(drop)
            .map_err(|source| MemoryPolicyError::Apply {
                mode: self.mode_name.clone(),
                nodes: self.nodes.clone(),
                source,
            })
    }
}

/// The modes and flags `nanoclaw features` advertises: all of them (the kernel decides per
/// host whether a node or a newer mode is available, and that error names the field).
pub const MODES: &[&str] = &[
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];
pub const FLAGS: &[&str] = &[
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn node_lists_parse_into_the_mask() {
        let m = parse_nodes("0-2,5").unwrap();
        assert_eq!(m[0], 0b100111);
        let m = parse_nodes("64").unwrap();
        assert_eq!(m[1], 1);
        for bad in [
            "",
            "a",
            "1-",
            "3-1",
            "1024",
            "0,,1",
            "-1",
            "99999999999999999999999",
        ] {
            let e = parse_nodes(bad).unwrap_err().to_string();
            assert!(e.starts_with("linux.memoryPolicy.nodes"), "{bad}: {e}");
        }
    }

    #[test]
    fn modes_are_checked_against_their_nodes_and_flags() {
        let ok = plan(Some(&policy(
            r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES"]}"#,
        )))
        .unwrap()
        .unwrap();
        assert_eq!(ok.mode, 2 | (1 << 15));
        for (json, want) in [
            (r#"{"mode":"MPOL_BIND"}"#, "needs at least one node"),
            (r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#, "takes no nodes"),
            (
                r#"{"mode":"MPOL_LOCAL","flags":["MPOL_F_STATIC_NODES"]}"#,
                "takes no flags",
            ),
            (
                r#"{"mode":"MPOL_INTERLEAVE","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#,
                "exclude each other",
            ),
        ] {
            let e = plan(Some(&policy(json))).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.starts_with("linux.memoryPolicy"),
                "{json}: {e}"
            );
        }
        assert!(plan(Some(&policy(r#"{"mode":"MPOL_PREFERRED"}"#)))
            .unwrap()
            .is_some());
    }
}
