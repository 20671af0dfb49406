//! Network helpers: connecting from a chosen local address.
//!
//! Load and flood tests simulate several peers on one host: all of 127.0.0.0/8
//! is loopback on Linux, so binding the client socket to 127.0.0.N before
//! connecting makes the server see peer 127.0.0.N.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};

/// A TCP connection to `dst` from `src` (any free port), blocking.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    // SAFETY: socket(2) with constant arguments; it returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and is owned by
    // nothing else: the OwnedFd closes it exactly once, on every path below.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let local = sin(SocketAddrV4::new(src, 0));
    let remote = sin(dst);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `local` is a valid, initialized sockaddr_in that outlives the
    // call, and `len` is its size; `fd` is an open socket.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as for bind: a valid sockaddr_in of the stated size, an open socket.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpStream::from(owned))
}

/// [`connect_from`] for `dst` given as `HOST:PORT` text naming an IPv4 address.
pub fn connect_from_str(src: Ipv4Addr, dst: &str) -> io::Result<TcpStream> {
    match dst.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(d)) => connect_from(src, d),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{dst}: not an IPv4 address and port"),
        )),
    }
}
