//! A hostile guest: requests with offsets/lengths past the buffer, unknown call numbers, bad
//! records, exit floods. The host refuses each with a precise error, never a panic or hang.
//! Direct tests of the dispatcher (no KVM needed) plus end-to-end hostile guest images.

mod common;

use std::io::Cursor;

use common::{launch_image, raw_image};
use ironclaw::hypercall::{DispatchError, Dispatcher, RequestError, RunIo, Step};
use ironclaw::{exit_code, LaunchConfig, LaunchError};
use ironclaw_abi::output::{encode_header, RecordError};
use ironclaw_abi::{
    call, layout, status, RequestHeader, ResponseHeader, DATA_CAPACITY, DATA_OFFSET, REQUEST_MAGIC,
    RESPONSE_HEADER_OFFSET,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
}

fn write_request(mem: &GuestMemoryMmap, h: RequestHeader, data: &[u8]) {
    mem.write_slice(&h.encode(), GuestAddress(layout::SHARED_BUF_ADDR))
        .unwrap();
    mem.write_slice(
        data,
        GuestAddress(layout::SHARED_BUF_ADDR + DATA_OFFSET as u64),
    )
    .unwrap();
}

fn header(call: u32, output_len: u32, payload_len: u32, args: [u64; 4]) -> RequestHeader {
    RequestHeader {
        magic: REQUEST_MAGIC,
        call,
        output_len,
        payload_len,
        args,
    }
}

fn response(mem: &GuestMemoryMmap) -> ResponseHeader {
    let mut raw = [0u8; 64];
    mem.read_slice(
        &mut raw,
        GuestAddress(layout::SHARED_BUF_ADDR + RESPONSE_HEADER_OFFSET as u64),
    )
    .unwrap();
    ResponseHeader::decode(&raw)
}

struct Io {
    stdin: Cursor<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Io {
    fn new() -> Self {
        Self {
            stdin: Cursor::new(b"input bytes".to_vec()),
            stdout: vec![],
            stderr: vec![],
        }
    }
    fn run_io(&mut self) -> RunIo<'_> {
        RunIo {
            stdin: &mut self.stdin,
            stdout: &mut self.stdout,
            stderr: &mut self.stderr,
        }
    }
}

#[test]
fn lengths_past_the_buffer_are_refused_without_touching_output() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100);
    for (out_len, payload_len) in [
        (u32::MAX, 0),
        (0, u32::MAX),
        (DATA_CAPACITY as u32, 1),
        (u32::MAX / 2 + 1, u32::MAX / 2 + 1),
    ] {
        write_request(&mem, header(call::FLUSH, out_len, payload_len, [0; 4]), &[]);
        match d.handle(&mem) {
            Err(DispatchError::Protocol(RequestError::DataTooLong { .. })) => {}
            other => panic!("({out_len}, {payload_len}): expected DataTooLong, got {other:?}"),
        }
    }
    drop(d);
    assert!(io.stdout.is_empty() && io.stderr.is_empty());
}

#[test]
fn a_record_claiming_more_than_its_area_is_refused_and_nothing_is_written() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100);
    // First record valid, second claims 1000 bytes of a 16-byte area: nothing may be written.
    let mut data = encode_header(1, 4).to_vec();
    data.extend_from_slice(b"good");
    data.extend_from_slice(&encode_header(2, 1000));
    data.extend_from_slice(b"tail");
    write_request(
        &mem,
        header(call::FLUSH, data.len() as u32, 0, [0; 4]),
        &data,
    );
    match d.handle(&mem) {
        Err(DispatchError::Protocol(RequestError::Output(RecordError::TruncatedBody {
            offset: 12,
            len: 1000,
            ..
        }))) => {}
        other => panic!("expected TruncatedBody, got {other:?}"),
    }
    // A bad stream number.
    let data = encode_header(7, 0);
    write_request(&mem, header(call::FLUSH, 8, 0, [0; 4]), &data);
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::Output(
            RecordError::BadStream { stream: 7, .. }
        )))
    ));
    drop(d);
    assert!(
        io.stdout.is_empty() && io.stderr.is_empty(),
        "validated before any byte is written"
    );
}

#[test]
fn unknown_call_numbers_get_unknown_call_and_the_run_continues() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100);
    for number in [0u32, 5, 0xFF, 0x100, 0x1FF, 0x200, 0xDEAD_BEEF, u32::MAX] {
        write_request(&mem, header(number, 0, 0, [u64::MAX; 4]), &[]);
        assert_eq!(d.handle(&mem).unwrap(), Step::Continue, "call {number:#x}");
        let r = response(&mem);
        assert_eq!(r.status, status::UNKNOWN_CALL, "call {number:#x}");
        assert_eq!(r.payload_len, 0);
    }
    // The socket relay exists only in a service launch.
    write_request(&mem, header(call::NET, 0, 0, [0; 4]), &[]);
    assert_eq!(d.handle(&mem).unwrap(), Step::Continue);
    assert_eq!(response(&mem).status, status::UNAVAILABLE);
}

#[test]
fn bad_scalars_are_refused() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100);
    write_request(&mem, header(call::EXIT, 0, 0, [77, 0, 0, 0]), &[]);
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::BadExitKind(77)))
    ));
    write_request(&mem, header(call::EXIT, 0, 0, [0, 1 << 40, 0, 0]), &[]);
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::BadExitCode(_)))
    ));
    write_request(
        &mem,
        header(call::READ_STDIN, 0, 0, [DATA_CAPACITY as u64 + 1, 0, 0, 0]),
        &[],
    );
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::BadReadLength(_)))
    ));
    write_request(&mem, header(call::EXIT, 0, 5000, [0; 4]), &[b'x'; 5000]);
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::MessageTooLong {
            len: 5000
        }))
    ));
    let mut bad = header(call::FLUSH, 0, 0, [0; 4]);
    bad.magic = 0;
    write_request(&mem, bad, &[]);
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::Protocol(RequestError::BadMagic { found: 0 }))
    ));
}

#[test]
fn stdin_reads_never_exceed_what_the_guest_asked_for() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100);
    write_request(&mem, header(call::READ_STDIN, 0, 0, [5, 0, 0, 0]), &[]);
    assert_eq!(d.handle(&mem).unwrap(), Step::Continue);
    let r = response(&mem);
    assert_eq!((r.status, r.payload_len, r.values[0]), (status::OK, 5, 0));
    let mut got = [0u8; 5];
    mem.read_slice(
        &mut got,
        GuestAddress(layout::SHARED_BUF_ADDR + DATA_OFFSET as u64),
    )
    .unwrap();
    assert_eq!(&got, b"input");
}

#[test]
fn an_exit_flood_is_cut_off_at_the_limit() {
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 50);
    write_request(&mem, header(call::FLUSH, 0, 0, [0; 4]), &[]);
    for _ in 0..50 {
        assert_eq!(d.handle(&mem).unwrap(), Step::Continue);
    }
    assert!(matches!(
        d.handle(&mem),
        Err(DispatchError::ExitFlood { limit: 50 })
    ));
}

/// `mov dword [SHARED_BUF], "ICRQ"; mov dword [SHARED_BUF+4], CALL; mov dx, HYPERCALL;
/// 1: out dx, al; jmp 1b` — a guest that floods valid (or unknown) hypercalls.
fn flood_image(call: u32) -> &'static [u8] {
    let mut code = vec![0xC7, 0x04, 0x25];
    code.extend_from_slice(&(layout::SHARED_BUF_ADDR as u32).to_le_bytes());
    code.extend_from_slice(&REQUEST_MAGIC.to_le_bytes());
    code.extend_from_slice(&[0xC7, 0x04, 0x25]);
    code.extend_from_slice(&(layout::SHARED_BUF_ADDR as u32 + 4).to_le_bytes());
    code.extend_from_slice(&call.to_le_bytes());
    code.extend_from_slice(&[0x66, 0xBA]);
    code.extend_from_slice(&ironclaw_abi::port::HYPERCALL.to_le_bytes());
    code.extend_from_slice(&[0xEE, 0xEB, 0xFD]);
    Box::leak(code.into_boxed_slice())
}

#[test]
fn hostile_guest_images_are_stopped_with_precise_errors() {
    if !claw_testsupport::require_kvm("hostile_guest_images_are_stopped_with_precise_errors") {
        return;
    }
    let config = LaunchConfig {
        max_hypercalls: 500,
        ..Default::default()
    };
    for call in [call::FLUSH, 0xDEAD] {
        let ran = launch_image(&raw_image(flood_image(call)), b"", &[], b"", &config);
        let e = ran.result.expect_err("flood must be stopped");
        assert!(
            matches!(e, LaunchError::ExitFlood { limit: 500 }),
            "call {call:#x}: {e}"
        );
        assert_eq!(e.exit_code(), exit_code::PROTOCOL);
    }
    // A zeroed buffer (no magic) and `out`: a protocol violation, not a crash.
    let mut code = vec![0x66, 0xBA];
    code.extend_from_slice(&ironclaw_abi::port::HYPERCALL.to_le_bytes());
    code.push(0xEE);
    let ran = launch_image(
        &raw_image(Box::leak(code.into_boxed_slice())),
        b"",
        &[],
        b"",
        &config,
    );
    let e = ran.result.expect_err("garbage request");
    assert!(
        matches!(
            &e,
            LaunchError::Dispatch(DispatchError::Protocol(RequestError::BadMagic { .. }))
        ),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit_code::PROTOCOL);
    // `out` to a port other than the hypercall port is not allowed at CPL3: #GP, reported.
    let ran = launch_image(
        &raw_image(&[0x66, 0xBA, 0x80, 0x00, 0xEE]),
        b"",
        &[],
        b"",
        &config,
    );
    match ran.result {
        Err(LaunchError::GuestFault(f)) => assert_eq!(f.vector, 13),
        other => panic!("expected #GP, got {other:?}"),
    }
    // `hlt` at CPL3 is privileged: #GP, reported (never a host hang).
    let ran = launch_image(&raw_image(&[0xF4]), b"", &[], b"", &config);
    match ran.result {
        Err(LaunchError::GuestFault(f)) => assert_eq!(f.vector, 13),
        other => panic!("expected #GP, got {other:?}"),
    }
}

/// A service guest's NET operations against a real relay (no KVM needed): operations that
/// break the protocol end the run with a precise error (exit code 108), valid ones work.
#[test]
fn hostile_net_operations_end_a_service_run() {
    use ironclaw::hypercall::NetCallError;
    use ironclaw::service::relay::Relay;
    use ironclaw::service::ServiceConfig;
    use ironclaw_abi::net::{self, encode_header};

    let cfg = ServiceConfig {
        listen: vec!["tcp:127.0.0.1:0".parse().unwrap()],
        window: 1024,
        ..Default::default()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            encode_header(net::OP_SEND, 77, 0, 2)
                .iter()
                .chain(b"hi")
                .copied()
                .collect(),
            "send on unknown handle 77",
        ),
        (
            encode_header(net::OP_WINDOW, 5, 1, 0).to_vec(),
            "window on unknown handle 5",
        ),
        (
            encode_header(net::OP_SHUTDOWN, 1, 9, 0).to_vec(),
            "field `value` = 9",
        ),
        (encode_header(42, 0, 0, 0).to_vec(), "unknown kind 42"),
        (
            encode_header(net::OP_SEND, 1, 0, 1000).to_vec(),
            "TruncatedData",
        ),
    ];
    for (ops, expect) in cases {
        let mut relay = Relay::bind(&cfg).unwrap();
        let mem = memory();
        let mut io = Io::new();
        let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100).with_net(&mut relay);
        write_request(&mem, header(call::NET, 0, ops.len() as u32, [0; 4]), &ops);
        match d.handle(&mem) {
            Err(e @ DispatchError::Net(NetCallError::Protocol(_))) => {
                let msg = e.to_string();
                assert!(msg.contains(expect), "{msg} should mention {expect}");
                assert_eq!(
                    LaunchError::from(e).exit_code(),
                    exit_code::PROTOCOL,
                    "protocol violations end the run with 108"
                );
            }
            other => panic!("{expect}: expected a protocol error, got {other:?}"),
        }
    }

    // A valid exchange: a client connects, the relay reports it with no wait, the guest's
    // credit return beyond the window is refused.
    let mut relay = Relay::bind(&cfg).unwrap();
    let addr = match &relay.bound()[0] {
        ironclaw::service::ListenAddr::Tcp(a) => *a,
        other => panic!("{other}"),
    };
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut client, b"hello").unwrap();
    let mem = memory();
    let mut io = Io::new();
    let mut d = Dispatcher::new(io.run_io(), 1 << 20, 100).with_net(&mut relay);
    let mut seen = Vec::new();
    for _ in 0..50 {
        write_request(&mem, header(call::NET, 0, 0, [100_000_000, 0, 0, 0]), &[]);
        assert_eq!(d.handle(&mem).unwrap(), Step::Continue);
        let r = response(&mem);
        assert_eq!(r.status, status::OK);
        let mut events = vec![0u8; r.payload_len as usize];
        mem.read_slice(
            &mut events,
            GuestAddress(layout::SHARED_BUF_ADDR + DATA_OFFSET as u64),
        )
        .unwrap();
        seen.extend(events);
        if seen.windows(5).any(|w| w == b"hello") {
            break;
        }
    }
    let kinds: Vec<(u32, u32, u32)> = net::records(&seen)
        .map(|r| {
            let (_, r) = r.unwrap();
            (r.kind, r.handle, r.value)
        })
        .collect();
    assert_eq!(kinds[0], (net::EV_ACCEPTED, 0, 1), "{kinds:?}");
    assert!(kinds.contains(&(net::EV_DATA, 1, 0)), "{kinds:?}");
    // 5 bytes consumed -> credit 1024 again; 6 would exceed the window.
    let ops = encode_header(net::OP_WINDOW, 1, 6, 0);
    write_request(&mem, header(call::NET, 0, 16, [0; 4]), &ops);
    match d.handle(&mem) {
        Err(DispatchError::Net(NetCallError::Protocol(m))) => {
            assert!(m.contains("exceeds the window"), "{m}")
        }
        other => panic!("expected a window violation, got {other:?}"),
    }
}
