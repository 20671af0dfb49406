//! `linux.netDevices`: host network links moved into the container's network namespace
//! (renamed to `name` when given) during `create`, and moved back under their original name
//! during `delete` (runtime-spec config-linux "Network Devices").
//!
//! - Checked before anything exists ([`validate`]): the container must have a network
//!   namespace of its own (new or joined), every name must be a valid interface name, names
//!   in the container must be unique, and every host link must exist.
//! - `create` ([`move_in`]): one RTM_NEWLINK per link, from the runtime's network namespace,
//!   with `IFLA_NET_NS_FD` and `IFLA_IFNAME` (move and rename in one step, so a clash can
//!   never leave a half-moved link), then the link is set up inside the container.
//! - `delete` and the unwind of a failed `create` ([`move_back`]): each link is set down and
//!   moved back under its host name, from a thread that entered the container's network
//!   namespace (setns affects only the calling thread for CLONE_NEWNET). Once the container's
//!   network namespace is gone (its init exited and nothing else holds it), the kernel has
//!   already moved physical links back and destroyed virtual ones: nothing is left to do.
//!
//! Netlink messages come from `netlink-packet-route` over a blocking `netlink-sys` socket.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNetDevice;

use crate::spec::NamespacePlan;

#[derive(Debug, thiserror::Error)]
pub enum NetDeviceError {
    #[error("linux.netDevices: the container has no network namespace of its own (add a \"network\" namespace); moving a link would not change where it is")]
    NoNetworkNamespace,
    #[error("linux.netDevices[{key:?}]{field}: {name:?} is not a valid interface name ({why})")]
    BadName {
        key: String,
        field: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("linux.netDevices[{key:?}].name: {name:?} is also the name of another device in the container")]
    Duplicate { key: String, name: String },
    #[error("linux.netDevices[{key:?}]: no network device {key:?} on the host: {source}")]
    Missing { key: String, source: nix::Error },
    #[error("linux.netDevices[{key:?}]: {what}: {source}")]
    Netlink {
        key: String,
        what: String,
        source: std::io::Error,
    },
    #[error("linux.netDevices: {what}: {source}")]
    Sys { what: String, source: nix::Error },
}

/// One link to move: its name on the host and in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    pub host: String,
    pub container: String,
}

/// The kernel's dev_valid_name: 1..IFNAMSIZ-1 bytes, not "." or "..", no '/', ':' or
/// whitespace.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return Some("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Some("\".\" and \"..\" are reserved");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Some("'/', ':', NUL and whitespace are not allowed");
    }
    None
}

/// The links of a config, sorted by host name (a stable order for moves and errors).
pub fn devices(map: Option<&HashMap<String, LinuxNetDevice>>) -> Vec<NetDevice> {
    let mut v: Vec<NetDevice> = map
        .into_iter()
        .flatten()
        .map(|(host, d)| NetDevice {
            host: host.clone(),
            container: d
                .name()
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(host)
                .to_owned(),
        })
        .collect();
    v.sort_by(|a, b| a.host.cmp(&b.host));
    v
}

/// Everything that can be checked before `create` touches the host.
pub fn validate(
    map: Option<&HashMap<String, LinuxNetDevice>>,
    ns: &NamespacePlan,
) -> Result<(), NetDeviceError> {
    let devs = devices(map);
    if devs.is_empty() {
        return Ok(());
    }
    let net = CloneFlags::CLONE_NEWNET;
    if !ns.creates(net) && !ns.joins(net) {
        return Err(NetDeviceError::NoNetworkNamespace);
    }
    let mut seen = std::collections::HashSet::new();
    for d in &devs {
        for (field, name) in [("", &d.host), (".name", &d.container)] {
            if let Some(why) = name_problem(name) {
                return Err(NetDeviceError::BadName {
                    key: d.host.clone(),
                    field,
                    name: name.clone(),
                    why,
                });
            }
        }
        if !seen.insert(d.container.clone()) {
            return Err(NetDeviceError::Duplicate {
                key: d.host.clone(),
                name: d.container.clone(),
            });
        }
        ifindex(&d.host).map_err(|source| NetDeviceError::Missing {
            key: d.host.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The index of a link in the calling thread's network namespace.
fn ifindex(name: &str) -> Result<u32, nix::Error> {
    let c = CString::new(name).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string, which outlives the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(nix::Error::last()),
        i => Ok(i),
    }
}

/// A route netlink socket in the calling thread's network namespace.
fn socket() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

/// Sends one RTM_NEWLINK for `link` and waits for the kernel's acknowledgement.
fn set_link(sock: &Socket, link: LinkMessage) -> std::io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut reply: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        reply.clear();
        let n = sock.recv(&mut reply, 0)?;
        let mut off = 0usize;
        while off < n {
            let Some(rest) = reply.get(off..n) else { break };
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            if let NetlinkPayload::Error(e) = &parsed.payload {
                return match e.code {
                    None => Ok(()),
                    Some(_) => Err(e.to_io()),
                };
            }
            let len = usize::try_from(parsed.header.length).unwrap_or(0);
            if len == 0 {
                break;
            }
            off = off.saturating_add((len + 3) & !3);
        }
    }
}

fn link(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

/// Moves (and renames) one link of this thread's network namespace into `target`.
fn move_link(sock: &Socket, from: &str, to: &str, target: BorrowedFd<'_>) -> std::io::Result<()> {
    let index = ifindex(from).map_err(std::io::Error::from)?;
    let mut m = link(index);
    m.attributes
        .push(LinkAttribute::NetNsFd(target.as_raw_fd()));
    m.attributes.push(LinkAttribute::IfName(to.to_owned()));
    set_link(sock, m)
}

fn set_up(sock: &Socket, name: &str, up: bool) -> std::io::Result<()> {
    let index = ifindex(name).map_err(std::io::Error::from)?;
    let mut m = link(index);
    m.header.change_mask = LinkFlags::Up;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    set_link(sock, m)
}

/// Runs `f` on a thread that entered the network namespace `netns` (only that thread
/// changes namespace; the runtime itself stays where it is).
fn in_netns<T: Send>(
    netns: BorrowedFd<'_>,
    f: impl FnOnce() -> Result<T, NetDeviceError> + Send,
) -> Result<T, NetDeviceError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(|source| {
                NetDeviceError::Sys {
                    what: "setns into the container's network namespace".into(),
                    source,
                }
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetDeviceError::Sys {
                what: "network device thread panicked".into(),
                source: nix::Error::EIO,
            })
        })
    })
}

/// `create`: moves every link into the network namespace `netns` under its container name,
/// then sets it up there. On error the links already moved are moved back.
pub fn move_in(devs: &[NetDevice], netns: BorrowedFd<'_>) -> Result<(), NetDeviceError> {
    let sock = socket().map_err(|source| NetDeviceError::Netlink {
        key: devs.first().map(|d| d.host.clone()).unwrap_or_default(),
        what: "route netlink socket".into(),
        source,
    })?;
    for (i, d) in devs.iter().enumerate() {
        if let Err(source) = move_link(&sock, &d.host, &d.container, netns) {
            let _ = move_back(&devs[..i], netns);
            return Err(NetDeviceError::Netlink {
                key: d.host.clone(),
                what: format!("moving it into the container as {:?}", d.container),
                source,
            });
        }
    }
    let up = in_netns(netns, || {
        let sock = socket().map_err(|source| NetDeviceError::Netlink {
            key: String::new(),
            what: "route netlink socket in the container".into(),
            source,
        })?;
        for d in devs {
            set_up(&sock, &d.container, true).map_err(|source| NetDeviceError::Netlink {
                key: d.host.clone(),
                what: format!("setting {:?} up in the container", d.container),
                source,
            })?;
        }
        Ok(())
    });
    if up.is_err() {
        let _ = move_back(devs, netns);
    }
    up
}

/// `delete` / unwind: sets each link down and moves it back to the runtime's network
/// namespace under its host name. A link no longer in the container (the workload deleted
/// or renamed it) is skipped; every other failure is reported after trying the rest.
pub fn move_back(devs: &[NetDevice], netns: BorrowedFd<'_>) -> Result<(), NetDeviceError> {
    if devs.is_empty() {
        return Ok(());
    }
    let home = open_ns("/proc/thread-self/ns/net")?;
    in_netns(netns, || {
        let sock = socket().map_err(|source| NetDeviceError::Netlink {
            key: String::new(),
            what: "route netlink socket in the container".into(),
            source,
        })?;
        let mut first_err = None;
        for d in devs {
            if ifindex(&d.container).is_err() {
                continue;
            }
            let r = set_up(&sock, &d.container, false)
                .and_then(|()| move_link(&sock, &d.container, &d.host, home.as_fd()));
            if let Err(source) = r {
                first_err.get_or_insert(NetDeviceError::Netlink {
                    key: d.host.clone(),
                    what: format!("moving {:?} back to the host", d.container),
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

/// Opens a network namespace file.
pub fn open_ns(path: &str) -> Result<OwnedFd, NetDeviceError> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| NetDeviceError::Sys {
        what: format!("open {path}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        for ok in ["eth0", "a", "dummy-1.2", "fifteen_chars_x"] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen_chars_xx"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn container_name_defaults_to_the_host_name() {
        let map: HashMap<String, LinuxNetDevice> =
            serde_json::from_str(r#"{"b0":{},"a0":{"name":"ctr0"},"c0":{"name":""}}"#).unwrap();
        let d = devices(Some(&map));
        let pairs: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.host.as_str(), d.container.as_str()))
            .collect();
        assert_eq!(pairs, [("a0", "ctr0"), ("b0", "b0"), ("c0", "c0")]);
    }
}
