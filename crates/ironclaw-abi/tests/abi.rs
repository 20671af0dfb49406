//! The ABI's decoders and validators: round trips, and refusal of hostile values.

use ironclaw_abi::boot::{BootError, BootInfo, BOOT_MAGIC};
use ironclaw_abi::output::{encode_header, records, Record, RecordError, STDERR, STDOUT};
use ironclaw_abi::{RequestHeader, ResponseHeader, ABI_VERSION, REQUEST_MAGIC, RESPONSE_MAGIC};

#[test]
fn headers_round_trip() {
    let r = RequestHeader {
        magic: REQUEST_MAGIC,
        call: 0x101,
        output_len: 7,
        payload_len: 9,
        args: [1, u64::MAX, 3, 4],
    };
    assert_eq!(RequestHeader::decode(&r.encode()), r);
    let s = ResponseHeader {
        magic: RESPONSE_MAGIC,
        status: 2,
        payload_len: 5,
        reserved: 0,
        values: [9, 8],
    };
    assert_eq!(ResponseHeader::decode(&s.encode()), s);
}

#[test]
fn records_decode_in_order_and_stop_at_the_first_bad_one() {
    let mut area = encode_header(STDOUT, 3).to_vec();
    area.extend_from_slice(b"abc");
    area.extend_from_slice(&encode_header(STDERR, 0));
    area.extend_from_slice(&[STDOUT, 0, 0]); // truncated header
    let got: Vec<_> = records(&area).collect();
    assert_eq!(
        got[0],
        Ok(Record {
            stream: STDOUT,
            bytes: b"abc"
        })
    );
    assert_eq!(
        got[1],
        Ok(Record {
            stream: STDERR,
            bytes: b""
        })
    );
    assert_eq!(got[2], Err(RecordError::TruncatedHeader { offset: 19 }));
    assert_eq!(got.len(), 3);
    let mut reserved = encode_header(STDOUT, 0);
    reserved[2] = 1;
    assert_eq!(
        records(&reserved).next(),
        Some(Err(RecordError::ReservedNotZero { offset: 0 }))
    );
    let huge = encode_header(STDOUT, u32::MAX);
    assert!(matches!(
        records(&huge).next(),
        Some(Err(RecordError::TruncatedBody { len: u32::MAX, .. }))
    ));
}

fn valid_boot() -> BootInfo {
    let mib = 1u64 << 20;
    BootInfo {
        magic: BOOT_MAGIC,
        abi_version: ABI_VERSION,
        memory_size: 64 * mib,
        module_addr: 4 * mib,
        module_len: 100,
        args_addr: 4 * mib + 4096,
        args_len: 10,
        argc: 1,
        env_addr: 4 * mib + 8192,
        env_len: 0,
        envc: 0,
        heap_start: 5 * mib,
        heap_end: 64 * mib,
        ..Default::default()
    }
}

#[test]
fn boot_block_round_trips_and_validates() {
    let b = valid_boot();
    assert_eq!(BootInfo::decode(&b.encode()), b);
    assert_eq!(b.validate(3 << 20), Ok(()));
}

#[test]
fn hostile_boot_blocks_are_refused() {
    let image_end = 3u64 << 20;
    let cases: [(BootInfo, BootError); 7] = [
        (
            BootInfo {
                magic: 0,
                ..valid_boot()
            },
            BootError::BadMagic,
        ),
        (
            BootInfo {
                abi_version: 99,
                ..valid_boot()
            },
            BootError::BadVersion(99),
        ),
        (
            BootInfo {
                memory_size: 5 << 20,
                ..valid_boot()
            },
            BootError::BadMemorySize,
        ),
        // The module overlapping the shim image.
        (
            BootInfo {
                module_addr: 2 << 20,
                ..valid_boot()
            },
            BootError::BadRegion("module"),
        ),
        // A region that wraps around the address space.
        (
            BootInfo {
                args_addr: u64::MAX - 4,
                args_len: 10,
                ..valid_boot()
            },
            BootError::BadRegion("args"),
        ),
        // The heap past the end of memory.
        (
            BootInfo {
                heap_end: 65 << 20,
                ..valid_boot()
            },
            BootError::BadRegion("heap"),
        ),
        // The heap overlapping the module.
        (
            BootInfo {
                heap_start: 4 << 20,
                ..valid_boot()
            },
            BootError::BadRegion("heap"),
        ),
    ];
    for (b, expected) in cases {
        assert_eq!(b.validate(image_end), Err(expected), "{b:?}");
    }
}
