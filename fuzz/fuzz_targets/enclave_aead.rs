//! The module's arguments to `ironclaw.aead_seal` / `aead_open` with its memory, as the shim
//! hands them to `ironclaw_enclave::aead`: whatever the ids, pointers and lengths, no panic;
//! a refused call leaves the memory exactly as it was; a successful one writes only inside
//! its buffer, a sealed record with one bit flipped is refused without a byte written, and
//! the sealed record opens back to its plaintext.
#![no_main]
use ironclaw_enclave::aead::{open_in_place, seal_in_place, AeadError, Args, Region, TAG_LEN};
use libfuzzer_sys::fuzz_target;

/// A pointer or length from a fuzzed word: mostly near the memory (so calls get past the
/// bounds checks), sometimes the raw word (huge, wrapping, "negative").
fn near(word: u32, mem_len: usize) -> u32 {
    if word & 0x8000_0000 != 0 {
        word
    } else {
        word % (mem_len as u32 + 32)
    }
}

fn overlaps(a: Region, b: core::ops::Range<usize>) -> bool {
    let (start, end) = (a.ptr as usize, a.ptr as usize + a.len as usize);
    a.len != 0 && start < b.end && b.start < end
}

fn unchanged_outside(before: &[u8], after: &[u8], inside: core::ops::Range<usize>) {
    assert_eq!(before[..inside.start], after[..inside.start]);
    assert_eq!(before[inside.end..], after[inside.end..]);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 44 {
        return;
    }
    let (head, init) = data.split_at(44);
    let w = |i: usize| u32::from_le_bytes(head[4 * i..4 * i + 4].try_into().unwrap());
    let mut mem = init.to_vec();
    let n = mem.len();
    let region = |i: usize| Region {
        ptr: near(w(i), n),
        len: near(w(i + 1), n),
    };
    let args = Args {
        alg: w(0) % 5,
        key: region(1),
        nonce: region(3),
        aad: region(5),
        buf: region(7),
    };
    let open = w(10) & 1 == 1;
    let before = mem.clone();
    if open {
        match open_in_place(&mut mem, &args) {
            Err(_) => assert_eq!(mem, before, "a refused open wrote to memory"),
            Ok(len) => {
                assert_eq!(len + TAG_LEN, args.buf.len as usize);
                let start = args.buf.ptr as usize;
                unchanged_outside(&before, &mem, start..start + len + TAG_LEN);
            }
        }
        return;
    }
    let cap = near(w(9), n);
    match seal_in_place(&mut mem, &args, cap) {
        Err(_) => assert_eq!(mem, before, "a refused seal wrote to memory"),
        Ok(sealed) => {
            assert_eq!(sealed, args.buf.len as usize + TAG_LEN);
            let start = args.buf.ptr as usize;
            let span = start..start + sealed;
            unchanged_outside(&before, &mem, span.clone());
            // Open it again, unless sealing overwrote its own key, nonce or aad.
            if [args.key, args.nonce, args.aad]
                .iter()
                .any(|r| overlaps(*r, span.clone()))
            {
                return;
            }
            let sealed_args = Args {
                buf: Region {
                    ptr: args.buf.ptr,
                    len: sealed as u32,
                },
                ..args
            };
            // One flipped bit anywhere in the record or tag: refused, nothing written.
            let flip = start + (w(10) >> 1) as usize % sealed;
            mem[flip] ^= 1 << (w(10) >> 24 & 7);
            let tampered = mem.clone();
            assert_eq!(
                open_in_place(&mut mem, &sealed_args),
                Err(AeadError::Authentication)
            );
            assert_eq!(mem, tampered, "a failed open wrote to memory");
            mem[flip] ^= 1 << (w(10) >> 24 & 7);
            assert_eq!(
                open_in_place(&mut mem, &sealed_args),
                Ok(args.buf.len as usize)
            );
            assert_eq!(
                mem[start..start + args.buf.len as usize],
                before[start..start + args.buf.len as usize]
            );
        }
    }
});
