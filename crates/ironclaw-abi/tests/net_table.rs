//! The enclave's socket table against honest and lying hosts.

use ironclaw_abi::net::{self, encode_header, errno};
use ironclaw_abi::net_table::SocketTable;

const W: u64 = 4096;

fn ev(kind: u32, handle: u32, value: u32, data: &[u8]) -> Vec<u8> {
    let mut v = encode_header(kind, handle, value, data.len() as u32).to_vec();
    v.extend_from_slice(data);
    v
}

/// A table with one listener (fd 3, handle 0) and one accepted connection (handle 1) on fd 4.
fn with_conn() -> SocketTable {
    let mut t = SocketTable::new(1, W, 4, 64 * 1024);
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 1, &[]), 0);
    assert_eq!(t.accept(3, false), Ok(4));
    t
}

fn ops(t: &mut SocketTable) -> Vec<(u32, u32, u32, Vec<u8>)> {
    let bytes = t.take_ops();
    net::records(&bytes)
        .map(|r| {
            let (_, r) = r.expect("well-formed ops");
            (r.kind, r.handle, r.value, r.data.to_vec())
        })
        .collect()
}

#[test]
fn accept_receive_and_return_credit() {
    let mut t = with_conn();
    assert_eq!(
        t.recv(4, &mut [&mut [0u8; 8][..]], false),
        Err(errno::AGAIN)
    );
    t.apply_events(&ev(net::EV_DATA, 1, 0, b"hello"), 0);
    let r = t.readiness(4).unwrap();
    assert!(r.readable && r.writable && !r.hangup);
    assert_eq!(r.nbytes, 5);
    let mut a = [0u8; 3];
    let mut b = [0u8; 8];
    assert_eq!(t.recv(4, &mut [&mut a[..], &mut b[..]], false), Ok(5));
    assert_eq!((&a, &b[..2]), (b"hel", &b"lo"[..]));
    assert_eq!(ops(&mut t), vec![(net::OP_WINDOW, 1, 5, vec![])]);
    t.apply_events(&ev(net::EV_EOF, 1, 0, &[]), 0);
    assert_eq!(t.recv(4, &mut [&mut a[..]], false), Ok(0));
    assert_eq!(t.violations, 0);
}

#[test]
fn data_beyond_the_granted_credit_is_an_io_error() {
    let mut t = with_conn();
    let big = vec![7u8; W as usize + 1];
    t.apply_events(&ev(net::EV_DATA, 1, 0, &big), 0);
    assert_eq!(t.violations, 1);
    assert_eq!(t.recv(4, &mut [&mut [0u8; 8][..]], false), Err(errno::IO));
    // Exactly the window is fine on a fresh connection.
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 2, &[]), 0);
    let fd = t.accept(3, false).unwrap();
    t.apply_events(&ev(net::EV_DATA, 2, 0, &big[..W as usize]), 0);
    assert_eq!(t.readiness(fd).unwrap().nbytes, W);
    // ... and one byte more before credit returns is refused.
    t.apply_events(&ev(net::EV_DATA, 2, 0, b"x"), 0);
    assert_eq!(t.violations, 2);
    assert_eq!(t.recv(fd, &mut [&mut [0u8; 8][..]], false), Err(errno::IO));
}

#[test]
fn unknown_reused_and_malformed_answers_change_nothing() {
    let mut t = with_conn();
    // Reused handle 1, a handle below it, a listener handle as a connection.
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 1, &[]), 0);
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 0, &[]), 0);
    // Unknown listener, data for an unknown handle, an unknown kind.
    t.apply_events(&ev(net::EV_ACCEPTED, 9, 5, &[]), 0);
    t.apply_events(&ev(net::EV_DATA, 77, 0, b"x"), 0);
    t.apply_events(&ev(99, 1, 0, &[]), 0);
    // A record claiming more bytes than the payload holds, and a torn header.
    let mut torn = encode_header(net::EV_DATA, 1, 0, 1000).to_vec();
    torn.extend_from_slice(b"abc");
    t.apply_events(&torn, 0);
    t.apply_events(&[1, 2, 3], 0);
    assert_eq!(t.violations, 7);
    assert_eq!(t.accept(3, true), Err(errno::AGAIN));
    assert_eq!(t.connections(), 1);
    assert_eq!(
        t.recv(4, &mut [&mut [0u8; 8][..]], false),
        Err(errno::AGAIN)
    );
    // Events after the module closed a connection are ignored, not delivered to a new fd.
    t.close(4).unwrap();
    t.apply_events(&ev(net::EV_DATA, 1, 0, b"late"), 0);
    assert_eq!(t.violations, 8);
    assert!(!t.is_socket(4));
}

#[test]
fn a_lying_host_cannot_exceed_the_connection_limit() {
    let mut t = SocketTable::new(1, W, 2, 64 * 1024);
    let mut evs = Vec::new();
    for h in 1..=5 {
        evs.extend(ev(net::EV_ACCEPTED, 0, h, &[]));
    }
    t.apply_events(&evs, 0);
    assert_eq!(t.connections(), 2);
    assert_eq!(t.violations, 3);
}

#[test]
fn send_credit_is_bounded_and_returned_by_acks() {
    let mut t = with_conn();
    let data = vec![1u8; W as usize + 100];
    assert_eq!(t.send(4, &data), Ok(W as usize));
    assert_eq!(t.send(4, b"more"), Err(errno::AGAIN));
    assert!(!t.readiness(4).unwrap().writable);
    let o = ops(&mut t);
    assert_eq!(o.len(), 1);
    assert_eq!(
        (o[0].0, o[0].1, o[0].3.len()),
        (net::OP_SEND, 1, W as usize)
    );
    // An ack of more than is in flight is a lie: the socket fails.
    t.apply_events(&ev(net::EV_TXACK, 1, W as u32 + 1, &[]), 0);
    assert_eq!(t.violations, 1);
    assert_eq!(t.send(4, b"x"), Err(errno::IO));

    let mut t = with_conn();
    t.send(4, &data).unwrap();
    t.take_ops();
    t.apply_events(&ev(net::EV_TXACK, 1, 10, &[]), 0);
    assert_eq!(t.send(4, &data), Ok(10));
    // Consecutive sends on one connection travel as one record.
    let mut t = with_conn();
    t.send(4, b"ab").unwrap();
    t.send(4, b"cd").unwrap();
    assert_eq!(ops(&mut t), vec![(net::OP_SEND, 1, 0, b"abcd".to_vec())]);
}

#[test]
fn connect_answers_must_match_the_pending_token() {
    let mut t = SocketTable::new(0, W, 4, 64 * 1024);
    let token = t.connect_begin(b"example.org:443").unwrap();
    assert_eq!(
        ops(&mut t),
        vec![(net::OP_CONNECT, token, 0, b"example.org:443".to_vec())]
    );
    // Answer for another token: ignored; the connect fails with EIO.
    t.apply_events(&ev(net::EV_CONNECTED, token + 1, 10, &[]), 0);
    assert_eq!(t.connect_finish(token), Err(errno::IO));
    assert_eq!(t.violations, 2);

    let token = t.connect_begin(b"example.org:443").unwrap();
    t.apply_events(&ev(net::EV_REFUSED, token, errno::NOTCAPABLE, &[]), 0);
    assert_eq!(t.connect_finish(token), Err(errno::NOTCAPABLE));

    let token = t.connect_begin(b"example.org:443").unwrap();
    // An errno outside the relayed set becomes EIO.
    t.apply_events(&ev(net::EV_REFUSED, token, 1234, &[]), 0);
    assert_eq!(t.connect_finish(token), Err(errno::IO));

    let token = t.connect_begin(b"example.org:443").unwrap();
    t.apply_events(&ev(net::EV_CONNECTED, token, 10, &[]), 0);
    assert_eq!(t.connect_finish(token), Ok(3));
    t.apply_events(&ev(net::EV_ERROR, 10, errno::CONNREFUSED, &[]), 0);
    assert_eq!(t.send(3, b"x"), Err(errno::CONNREFUSED));
}

#[test]
fn listener_close_and_termination() {
    let mut t = with_conn();
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 2, &[]), 0);
    t.apply_events(
        &ev(net::EV_LISTENER_CLOSED, 0, 0, &[]),
        net::FLAG_TERMINATING,
    );
    assert!(t.terminating());
    // The queued connection is still handed out, then the listener reports its closure.
    assert_eq!(t.accept(3, true), Ok(5));
    assert_eq!(t.accept(3, true), Err(errno::CONNABORTED));
    assert!(t.readiness(3).unwrap().hangup);
    // Closing a listener closes its queued connections too.
    let mut t = SocketTable::new(1, W, 4, 64 * 1024);
    t.apply_events(&ev(net::EV_ACCEPTED, 0, 1, &[]), 0);
    t.close(3).unwrap();
    assert_eq!(t.connections(), 0);
    assert_eq!(
        ops(&mut t),
        vec![(net::OP_CLOSE, 1, 0, vec![]), (net::OP_CLOSE, 0, 0, vec![])]
    );
}

/// A small deterministic generator (no dependency) for the randomized test below.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

#[test]
fn random_host_answers_never_break_the_table_invariants() {
    let mut rng = Lcg(0x5eed);
    for round in 0..300 {
        let mut t = SocketTable::new(2, W, 6, 64 * 1024);
        for _ in 0..40 {
            let mut evs = Vec::new();
            for _ in 0..(rng.next() % 6) {
                let kind = 1 + rng.next() % 9;
                let handle = rng.next() % 12;
                let value = match rng.next() % 3 {
                    0 => rng.next() % 12,
                    1 => rng.next() % (W as u32 * 2),
                    _ => rng.next(),
                };
                let len = if rng.next().is_multiple_of(4) {
                    (rng.next() % 5000) as usize
                } else {
                    0
                };
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                evs.extend(ev(kind, handle, value, &data));
            }
            if rng.next().is_multiple_of(10) {
                evs.truncate(evs.len().saturating_sub((rng.next() % 20) as usize));
            }
            t.apply_events(&evs, u64::from(rng.next() % 2));
            assert!(t.connections() <= 6, "round {round}");
            for fd in 3..14u32 {
                if let Some(r) = t.readiness(fd) {
                    if !t.is_listener(fd) {
                        assert!(r.nbytes <= W, "round {round}: {} buffered", r.nbytes);
                    }
                }
                let _ = t.accept(fd, true);
                let mut buf = [0u8; 700];
                let _ = t.recv(fd, &mut [&mut buf[..]], rng.next().is_multiple_of(3));
                let _ = t.send(fd, &buf[..(rng.next() % 700) as usize]);
                if rng.next().is_multiple_of(17) {
                    let _ = t.close(fd);
                }
            }
            // Whatever happened, the operations are well-formed records.
            let ops = t.take_ops();
            for r in net::records(&ops) {
                r.expect("well-formed ops");
            }
        }
    }
}

#[test]
fn shutdown_directions() {
    let mut t = with_conn();
    t.apply_events(&ev(net::EV_DATA, 1, 0, b"unread"), 0);
    assert_eq!(t.shutdown(4, 0), Err(errno::INVAL));
    assert_eq!(t.shutdown(4, 4), Err(errno::INVAL));
    t.shutdown(4, net::SHUT_RD).unwrap();
    // Buffered bytes are dropped and their credit returned; reads see end of stream.
    assert_eq!(t.recv(4, &mut [&mut [0u8; 8][..]], false), Ok(0));
    assert_eq!(
        ops(&mut t),
        vec![
            (net::OP_SHUTDOWN, 1, net::SHUT_RD, vec![]),
            (net::OP_WINDOW, 1, 6, vec![])
        ]
    );
    // Data the host sends after a read shutdown is discarded, credit flows back.
    t.apply_events(&ev(net::EV_DATA, 1, 0, b"late"), 0);
    assert_eq!(ops(&mut t), vec![(net::OP_WINDOW, 1, 4, vec![])]);
    t.shutdown(4, net::SHUT_WR).unwrap();
    assert_eq!(t.send(4, b"x"), Err(errno::PIPE));
    assert!(
        t.readiness(4).unwrap().writable,
        "a shut-down writer does not block"
    );
    assert_eq!(t.shutdown(3, net::SHUT_WR), Err(errno::NOTCONN));
    assert_eq!(t.shutdown(9, net::SHUT_WR), Err(errno::BADF));
    assert_eq!(t.violations, 0);
}
