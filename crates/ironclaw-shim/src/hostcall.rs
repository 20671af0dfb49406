//! Shim side of the hypercall buffer (minimal bring-up version).
use core::ptr;
use ironclaw_abi::{call, layout, output, port, ExitKind, RequestHeader, DATA_OFFSET, REQUEST_MAGIC};

fn buf() -> *mut u8 {
    layout::SHARED_BUF_ADDR as *mut u8
}

fn send(h: &RequestHeader) {
    let bytes = h.encode();
    // SAFETY: the shared buffer is identity-mapped, writable, SHARED_BUF_SIZE bytes long and
    // owned by this single-threaded shim; the header fits at offset 0.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buf(), bytes.len()) };
    crate::cpu::out8(port::HYPERCALL, 0);
}

pub fn write_output(stream: u8, bytes: &[u8]) {
    let hdr = output::encode_header(stream, bytes.len() as u32);
    // SAFETY: as in `send`; the caller keeps bytes small in this bring-up version.
    unsafe {
        ptr::copy_nonoverlapping(hdr.as_ptr(), buf().add(DATA_OFFSET), hdr.len());
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf().add(DATA_OFFSET + 8), bytes.len());
    }
    send(&RequestHeader {
        magic: REQUEST_MAGIC,
        call: call::FLUSH,
        output_len: (8 + bytes.len()) as u32,
        payload_len: 0,
        args: [0; 4],
    });
}

pub fn exit(kind: ExitKind, code: u32, _msg: &[u8]) -> ! {
    loop {
        send(&RequestHeader {
            magic: REQUEST_MAGIC,
            call: call::EXIT,
            output_len: 0,
            payload_len: 0,
            args: [kind as u64, u64::from(code), 0, 0],
        });
    }
}
