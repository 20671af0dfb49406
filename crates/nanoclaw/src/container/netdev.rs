//! `linux.netDevices`: host network links moved into the container's network namespace
//! (renamed to `name` when given) during `create` (runtime-spec 1.3 config-linux "Network
//! Devices"; runc 1.3 and youki do the same).
//!
//! - Checked before anything exists ([`validate`]): the container must have a network
//!   namespace of its own (new or joined), every name must be a valid interface name, names
//!   in the container must be unique (a `%d` template lets the kernel number them), and every
//!   host link must exist.
//! - `create` ([`move_in`]): the link's permanent addresses of global scope are read, then one
//!   RTM_NEWLINK per link with `IFLA_NET_NS_FD` and `IFLA_IFNAME` moves and renames it in one
//!   step (a name already taken in the container is the kernel's EEXIST, reported with the
//!   field); inside the container the addresses are added back and the link is set up.
//! - `delete` leaves the links alone: the spec says the runtime MUST NOT move them out of the
//!   namespace, whose owner manages them; when the namespace is freed the kernel moves
//!   physical links back to the initial namespace and destroys virtual ones. Only a `create`
//!   that fails after moving them moves them back ([`move_back`], set down first), so a
//!   refused container leaves the host as it found it.
//!
//! Netlink messages come from `netlink-packet-route` over a blocking `netlink-sys` socket; the
//! steps inside the container run on a thread that entered its network namespace (setns
//! affects only the calling thread for CLONE_NEWNET).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
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
    #[error("linux.netDevices[{key:?}].name: a device named {name:?} already exists in the container's network namespace")]
    Taken { key: String, name: String },
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
        if !d.container.contains('%') && !seen.insert(d.container.clone()) {
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

/// Sends one request and collects the kernel's answers until its acknowledgement (or, for a
/// dump, the end of it).
fn request(
    sock: &Socket,
    payload: RouteNetlinkMessage,
    flags: u16,
) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut answers = Vec::new();
    let mut reply: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        reply.clear();
        let n = sock.recv(&mut reply, 0)?;
        let mut off = 0usize;
        while off < n {
            let Some(rest) = reply.get(off..n) else { break };
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            let len = usize::try_from(parsed.header.length).unwrap_or(0);
            match parsed.payload {
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(answers),
                        Some(_) => Err(e.to_io()),
                    }
                }
                NetlinkPayload::Done(_) => return Ok(answers),
                NetlinkPayload::InnerMessage(m) => answers.push(m),
                _ => {}
            }
            if len == 0 {
                break;
            }
            off = off.saturating_add((len + 3) & !3);
        }
    }
}

/// Sends one RTM_NEWLINK for `link` and waits for the kernel's acknowledgement.
fn set_link(sock: &Socket, link: LinkMessage) -> std::io::Result<()> {
    request(
        sock,
        RouteNetlinkMessage::NewLink(link),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map(drop)
}

/// The addresses the spec says a moved link keeps: permanent, of global scope.
fn kept_addresses(sock: &Socket, index: u32) -> std::io::Result<Vec<AddressMessage>> {
    let all = request(
        sock,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(all
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })
        .filter(|a| a.header.index == index && a.header.scope == AddressScope::Universe)
        .filter(|a| {
            a.header.flags.contains(AddressHeaderFlags::Permanent)
                || a.attributes.iter().any(|x| {
                    matches!(x, AddressAttribute::Flags(f) if f.contains(AddressFlags::Permanent))
                })
        })
        .collect())
}

/// Adds `addr` (as read on the host) to the link `index` of this thread's namespace. The
/// label is left out: it carries the host name of the link.
fn add_address(sock: &Socket, index: u32, addr: &AddressMessage) -> std::io::Result<()> {
    let mut m = AddressMessage::default();
    m.header.family = addr.header.family;
    m.header.prefix_len = addr.header.prefix_len;
    m.header.scope = AddressScope::Universe;
    m.header.index = index;
    m.attributes = addr
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                AddressAttribute::Address(_)
                    | AddressAttribute::Local(_)
                    | AddressAttribute::Broadcast(_)
            )
        })
        .cloned()
        .collect();
    request(
        sock,
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
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
    set_up_index(sock, index, up)
}

fn set_up_index(sock: &Socket, index: u32, up: bool) -> std::io::Result<()> {
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

/// `create`: moves every link into the network namespace `netns` under its container name
/// (a name ending in `%d` lets the kernel pick the number), gives it back its permanent
/// global addresses (the move drops them) and sets it up there. On error the links already
/// moved are moved back.
pub fn move_in(devs: &[NetDevice], netns: BorrowedFd<'_>) -> Result<(), NetDeviceError> {
    let sock = socket().map_err(|source| NetDeviceError::Netlink {
        key: devs.first().map(|d| d.host.clone()).unwrap_or_default(),
        what: "route netlink socket".into(),
        source,
    })?;
    // A name already taken in the container is an error (spec), found before anything moves:
    // the kernel would move the link under its host name and only then refuse the rename.
    in_netns(netns, || {
        for d in devs.iter().filter(|d| !d.container.contains('%')) {
            if ifindex(&d.container).is_ok() {
                return Err(NetDeviceError::Taken {
                    key: d.host.clone(),
                    name: d.container.clone(),
                });
            }
        }
        Ok(())
    })?;
    let mut moved: Vec<(NetDevice, u32, Vec<AddressMessage>)> = Vec::new();
    for d in devs {
        let step = || -> Result<(u32, Vec<AddressMessage>), (String, std::io::Error)> {
            let index = ifindex(&d.host).map_err(|e| ("looking it up".to_string(), e.into()))?;
            let addrs = kept_addresses(&sock, index)
                .map_err(|e| ("reading its addresses".to_string(), e))?;
            move_link(&sock, &d.host, &d.container, netns).map_err(|e| {
                (
                    format!("moving it into the container as {:?}", d.container),
                    e,
                )
            })?;
            Ok((index, addrs))
        };
        match step() {
            Ok((index, addrs)) => moved.push((d.clone(), index, addrs)),
            Err((what, source)) => {
                let mut back: Vec<NetDevice> = moved.iter().map(|(d, _, _)| d.clone()).collect();
                // Moved but not renamed (the kernel does the rename after the move).
                if ifindex(&d.host).is_err() {
                    back.push(NetDevice {
                        host: d.host.clone(),
                        container: d.host.clone(),
                    });
                }
                let _ = move_back(&back, netns);
                return Err(NetDeviceError::Netlink {
                    key: d.host.clone(),
                    what,
                    source,
                });
            }
        }
    }
    let up = in_netns(netns, || {
        let sock = socket().map_err(|source| NetDeviceError::Netlink {
            key: String::new(),
            what: "route netlink socket in the container".into(),
            source,
        })?;
        for (d, old_index, addrs) in &moved {
            let err = |what: String| {
                move |source| NetDeviceError::Netlink {
                    key: d.host.clone(),
                    what,
                    source,
                }
            };
            let index = container_index(d, *old_index).map_err(|e| {
                err(format!("finding {:?} in the container", d.container))(e.into())
            })?;
            for a in addrs {
                add_address(&sock, index, a)
                    .map_err(err(format!("restoring an address on {:?}", d.container)))?;
            }
            set_up_index(&sock, index, true).map_err(err(format!(
                "setting {:?} up in the container",
                d.container
            )))?;
        }
        Ok(())
    });
    if up.is_err() {
        let _ = move_back(devs, netns);
    }
    up
}

/// The index of a moved link in the container's namespace (this thread's): by name, or for a
/// `%d` template by its index, which the kernel keeps across the move when it is free.
fn container_index(d: &NetDevice, old_index: u32) -> Result<u32, nix::Error> {
    if !d.container.contains('%') {
        return ifindex(&d.container);
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes (NUL included) into `buf`.
    let p = unsafe { libc::if_indextoname(old_index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(nix::Error::last());
    }
    Ok(old_index)
}

/// Unwind of a failed `create`: sets each link down and moves it back to the runtime's
/// network namespace under its host name. A link no longer in the container (the workload deleted
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
