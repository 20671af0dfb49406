//! Is this runtime rootless? Not only "euid != 0": rootless podman runs the runtime as uid 0
//! of its own user namespace (the host user mapped to 0, subordinate ids above), where it holds
//! capabilities over that namespace only. As runc decides ("auto"): rootless when the euid is
//! not 0, or when euid 0 is not the initial user namespace's root (`/proc/self/uid_map` is not
//! the identity map `0 0 4294967295`). Not podman's `_CONTAINERS_USERNS_CONFIGURED`: rootful
//! podman sets it too (on `create` only), which would split one container's state between two
//! roots.
//!
//! A rootless runtime keeps its state under `$XDG_RUNTIME_DIR/nanoclaw` (podman sets it to a
//! directory the user owns) and creates cgroups only where it can (see `nanoclaw-cgroups`: a
//! v1 hierarchy it cannot write is skipped when no limit needs it).

use std::path::PathBuf;

/// The uid map of the initial user namespace: every id maps to itself.
const IDENTITY: (u64, u64, u64) = (0, 0, 4_294_967_295);

/// The mappings of `/proc/self/uid_map` (inside, outside, count); `None` if unreadable.
fn uid_map() -> Option<Vec<(u64, u64, u64)>> {
    let text = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    parse_id_map(&text)
}

/// Parses an id map (`inside outside count` per line); `None` on a malformed line.
pub fn parse_id_map(text: &str) -> Option<Vec<(u64, u64, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            match (f.next()??, f.next()??, f.next()??, f.next()) {
                (a, b, c, None) => Some((a, b, c)),
                _ => None,
            }
        })
        .collect()
}

/// True when this process is not in the initial user namespace (runc's `RunningInUserNS`).
/// An unreadable map counts as the initial namespace, as in runc.
pub fn in_user_namespace() -> bool {
    uid_map().is_some_and(|m| m.as_slice() != [IDENTITY])
}

/// runc's rootless "auto": not root, or root of a user namespace other than the initial one.
pub fn is_rootless() -> bool {
    nix::unistd::geteuid().as_raw() != 0 || in_user_namespace()
}

/// The host uid this process's uid 0 stands for in a user namespace (from uid_map), else the
/// euid: names the per-user fallback state directory.
fn host_uid() -> u64 {
    let euid = u64::from(nix::unistd::geteuid().as_raw());
    uid_map()
        .and_then(|m| {
            m.iter()
                .find(|(inside, _, count)| euid >= *inside && euid - inside < *count)
                .map(|(inside, outside, _)| outside + (euid - inside))
        })
        .unwrap_or(euid)
}

/// Default `--root`: /run/nanoclaw for real root. Rootless: `$XDG_RUNTIME_DIR/nanoclaw` when
/// it is set (for uid 0 of a user namespace only if `$USER` is not `root`, as runc decides),
/// else `/tmp/nanoclaw-<host uid>`.
pub fn default_root() -> PathBuf {
    if !is_rootless() {
        return PathBuf::from("/run/nanoclaw");
    }
    let honor_xdg = nix::unistd::geteuid().as_raw() != 0
        || std::env::var_os("USER").is_none_or(|u| u != "root");
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && honor_xdg => PathBuf::from(d).join("nanoclaw"),
        _ => PathBuf::from(format!("/tmp/nanoclaw-{}", host_uid())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps() {
        assert_eq!(
            parse_id_map("         0          0 4294967295\n"),
            Some(vec![IDENTITY])
        );
        assert_eq!(
            parse_id_map("0 1001 1\n1 100000 65536\n"),
            Some(vec![(0, 1001, 1), (1, 100000, 65536)])
        );
        assert_eq!(parse_id_map("0 1001\n"), None);
        assert_eq!(parse_id_map("0 1001 1 7\n"), None);
        assert_eq!(parse_id_map("x 1 1\n"), None);
    }
}
