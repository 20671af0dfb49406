//! The enclave's native AEAD calls (`ironclaw.aead_seal` / `ironclaw.aead_open`) as a module
//! sees them: published test vectors, tampered records, hostile pointers and lengths, and
//! the fuel they are charged. `examples/wasm/aead-driver.wat` makes each call with the raw
//! arguments given here and prints the result and the buffer after it.

mod common;

use common::{example_bytes, launch};
use ironclaw::{LaunchConfig, LaunchError};

/// Where the driver copies stdin; the requests start 4 bytes later.
const BASE: u32 = 1024;
/// Where the data of the requests starts (after room for 85 requests).
const DATA: u32 = BASE + 4096;
/// The driver's memory is exactly two pages.
const MEM_END: u32 = 2 * 65536;

const CHACHA: u32 = 1;
const AES128: u32 = 2;
const AES256: u32 = 3;

const E_FAULT: i32 = -1;
const E_TOO_SMALL: i32 = -2;
const E_AUTH: i32 = -6;
const E_INVALID: i32 = -7;

fn kvm(test: &str) -> bool {
    claw_testsupport::require_kvm(test)
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// A region in the driver's memory: (pointer, length).
type Region = (u32, u32);

/// A batch of calls for the driver.
#[derive(Default)]
struct Calls {
    requests: Vec<[u32; 12]>,
    data: Vec<u8>,
}

impl Calls {
    /// Places `bytes` followed by `room` spare bytes in memory; returns their region.
    fn put_with_room(&mut self, bytes: &[u8], room: usize) -> Region {
        let at = DATA + self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.data.resize(self.data.len() + room, 0);
        (at, bytes.len() as u32)
    }

    fn put(&mut self, bytes: &[u8]) -> Region {
        self.put_with_room(bytes, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        op: u32,
        alg: u32,
        key: Region,
        nonce: Region,
        aad: Region,
        buf: Region,
        cap: u32,
        echo: u32,
    ) {
        self.requests.push([
            op, alg, key.0, key.1, nonce.0, nonce.1, aad.0, aad.1, buf.0, buf.1, cap, echo,
        ]);
    }

    /// `aead_seal`; the driver prints `echo` bytes from `buf.0` afterwards.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &mut self,
        alg: u32,
        key: Region,
        nonce: Region,
        aad: Region,
        buf: Region,
        cap: u32,
        echo: u32,
    ) {
        self.call(1, alg, key, nonce, aad, buf, cap, echo);
    }

    /// `aead_open`; the driver prints `echo` bytes from `buf.0` afterwards.
    fn open(&mut self, alg: u32, key: Region, nonce: Region, aad: Region, buf: Region, echo: u32) {
        self.call(2, alg, key, nonce, aad, buf, 0, echo);
    }

    fn stdin(&self) -> Vec<u8> {
        assert!(self.requests.len() * 48 + 4 <= (DATA - BASE) as usize);
        let mut s = (self.requests.len() as u32).to_le_bytes().to_vec();
        for r in &self.requests {
            s.extend(r.iter().flat_map(|v| v.to_le_bytes()));
        }
        s.resize((DATA - BASE) as usize, 0);
        s.extend_from_slice(&self.data);
        assert!(
            s.len() <= (MEM_END - BASE) as usize,
            "data past the driver's memory"
        );
        s
    }

    /// Runs the batch in the enclave: each call's result and echoed bytes.
    fn run(&self) -> Vec<(i32, Vec<u8>)> {
        self.run_with(&LaunchConfig::default())
    }

    fn run_with(&self, config: &LaunchConfig) -> Vec<(i32, Vec<u8>)> {
        let ran = launch(
            &example_bytes("aead-driver.wasm"),
            &["aead-driver"],
            &self.stdin(),
            config,
        );
        let report = ran.result.unwrap_or_else(|e| {
            panic!(
                "launch failed: {e}; stderr: {}",
                String::from_utf8_lossy(&ran.stderr)
            )
        });
        assert_eq!(report.exit_code, 0);
        let mut out = &ran.stdout[..];
        let mut results = Vec::new();
        for r in &self.requests {
            let (code, rest) = out.split_at(4);
            let (echo, rest) = rest.split_at(r[11] as usize);
            results.push((i32::from_le_bytes(code.try_into().unwrap()), echo.to_vec()));
            out = rest;
        }
        assert!(out.is_empty(), "driver printed {} extra bytes", out.len());
        results
    }
}

/// RFC 8439 §2.8.2.
const RFC8439_PT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const RFC8439_NONCE: &str = "070000004041424344454647";
const RFC8439_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const RFC8439_CT_TAG: &str = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116\
1ae10b594f09e26a7e902ecbd0600691";

fn rfc8439_key() -> Vec<u8> {
    (0x80..=0x9f).collect()
}

/// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 4 and 16.
const GCM_KEY: &str = "feffe9928665731c6d6a8f9467308308";
const GCM_PT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
const GCM_AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
const GCM_IV: &str = "cafebabefacedbaddecaf888";
const GCM_128_CT_TAG: &str = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091\
5bc94fbc3221a5db94fae95ae7121a47";
const GCM_256_CT_TAG: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
76fc6ece0f4e1768cddf8853bb2d551b";

#[test]
fn chacha20_poly1305_in_the_enclave_gives_the_rfc_8439_vector_and_opens_it() {
    if !kvm("chacha20_poly1305_in_the_enclave_gives_the_rfc_8439_vector_and_opens_it") {
        return;
    }
    let mut c = Calls::default();
    let key = c.put(&rfc8439_key());
    let nonce = c.put(&hex(RFC8439_NONCE));
    let aad = c.put(&hex(RFC8439_AAD));
    let buf = c.put_with_room(RFC8439_PT, 16);
    let n = RFC8439_PT.len() as u32;
    c.seal(CHACHA, key, nonce, aad, buf, n + 16, n + 16);
    c.open(CHACHA, key, nonce, aad, (buf.0, n + 16), n);
    let r = c.run();
    assert_eq!(r[0], (n as i32 + 16, hex(RFC8439_CT_TAG)));
    assert_eq!(r[1], (n as i32, RFC8439_PT.to_vec()));
}

#[test]
fn aes_gcm_in_the_enclave_gives_the_mcgrew_viega_vectors_and_opens_them() {
    if !kvm("aes_gcm_in_the_enclave_gives_the_mcgrew_viega_vectors_and_opens_them") {
        return;
    }
    let pt = hex(GCM_PT);
    let n = pt.len() as u32;
    let mut c = Calls::default();
    let key128 = c.put(&hex(GCM_KEY));
    let key256 = c.put(&hex(&GCM_KEY.repeat(2)));
    let nonce = c.put(&hex(GCM_IV));
    let aad = c.put(&hex(GCM_AAD));
    for key in [key128, key256] {
        let alg = if key.1 == 16 { AES128 } else { AES256 };
        let buf = c.put_with_room(&pt, 16);
        c.seal(alg, key, nonce, aad, buf, n + 16, n + 16);
        c.open(alg, key, nonce, aad, (buf.0, n + 16), n);
    }
    let r = c.run();
    assert_eq!(r[0], (n as i32 + 16, hex(GCM_128_CT_TAG)), "test case 4");
    assert_eq!(r[1], (n as i32, pt.clone()));
    assert_eq!(r[2], (n as i32 + 16, hex(GCM_256_CT_TAG)), "test case 16");
    assert_eq!(r[3], (n as i32, pt));
}

#[test]
fn a_tampered_record_gives_the_auth_error_and_stays_as_it_was() {
    if !kvm("a_tampered_record_gives_the_auth_error_and_stays_as_it_was") {
        return;
    }
    let mut c = Calls::default();
    let chacha_key = c.put(&rfc8439_key());
    let chacha_nonce = c.put(&hex(RFC8439_NONCE));
    let chacha_aad = c.put(&hex(RFC8439_AAD));
    let gcm_key = c.put(&hex(GCM_KEY));
    let gcm_nonce = c.put(&hex(GCM_IV));
    let gcm_aad = c.put(&hex(GCM_AAD));
    let other_aad = c.put(b"another header");
    let mut expected = Vec::new();
    for (alg, key, nonce, aad, sealed) in [
        (
            CHACHA,
            chacha_key,
            chacha_nonce,
            chacha_aad,
            hex(RFC8439_CT_TAG),
        ),
        (AES128, gcm_key, gcm_nonce, gcm_aad, hex(GCM_128_CT_TAG)),
    ] {
        let last = sealed.len() - 1;
        let mut bad_tag = sealed.clone();
        bad_tag[last] ^= 0x01;
        let mut bad_body = sealed.clone();
        bad_body[3] ^= 0x80;
        for (record, aad) in [(&bad_tag, aad), (&bad_body, aad), (&sealed, other_aad)] {
            let buf = c.put(record);
            c.open(alg, key, nonce, aad, buf, buf.1);
            expected.push((E_AUTH, record.clone()));
        }
    }
    assert_eq!(c.run(), expected);
}

#[test]
fn pointers_outside_the_module_memory_are_refused_before_anything_is_written() {
    if !kvm("pointers_outside_the_module_memory_are_refused_before_anything_is_written") {
        return;
    }
    let mut c = Calls::default();
    let key = c.put(&rfc8439_key());
    let nonce = c.put(&hex(RFC8439_NONCE));
    let aad = c.put(&hex(RFC8439_AAD));
    let pt = c.put_with_room(RFC8439_PT, 16);
    let n = pt.1;
    let wrap = u32::MAX - 7; // ptr + len overflows u32
    let cases: Vec<(Region, Region, Region, Region, u32)> = vec![
        ((MEM_END - 16, 32), nonce, aad, pt, n + 16), // key across the end
        ((wrap, 32), nonce, aad, pt, n + 16),         // key wrapping around
        (key, (MEM_END, 12), aad, pt, n + 16),        // nonce just past the end
        (key, nonce, (wrap, 12), pt, n + 16),         // aad wrapping around
        (key, nonce, aad, (MEM_END - 8, 8), 24),      // room for the tag past the end
        (key, nonce, aad, (pt.0, n), u32::MAX),       // cap as -1
        (key, nonce, aad, (wrap, 16), 32),            // buf wrapping around
    ];
    for (key, nonce, aad, buf, cap) in cases {
        c.seal(CHACHA, key, nonce, aad, buf, cap, 0);
    }
    // Open: the record as a negative length, and a record running past the end.
    c.open(CHACHA, key, nonce, aad, (pt.0, u32::MAX), 0);
    c.open(CHACHA, key, nonce, aad, (MEM_END - 20, 40), 0);
    // After all that the plaintext is untouched; then a good call still works.
    c.seal(CHACHA, key, (nonce.0, 12), aad, (pt.0, 0), 0, n);
    let r = c.run();
    let faults = r.len() - 1;
    for (i, (code, _)) in r[..faults].iter().enumerate() {
        assert_eq!(*code, E_FAULT, "case {i}");
    }
    // The last call (an empty message with no room for its tag) is E_TOO_SMALL, and the
    // echo shows the plaintext no earlier call may have touched.
    assert_eq!(r[faults], (E_TOO_SMALL, RFC8439_PT.to_vec()));
}

#[test]
fn bad_ids_key_nonce_aad_and_lengths_are_invalid_arguments() {
    if !kvm("bad_ids_key_nonce_aad_and_lengths_are_invalid_arguments") {
        return;
    }
    let mut c = Calls::default();
    let key = c.put(&[7; 32]);
    let nonce = c.put(&[9; 12]);
    let big_aad = c.put(&[1; 1025]);
    let buf = c.put_with_room(&[0x33; 64], 16);
    let short_key = (key.0, 16);
    c.seal(0, key, nonce, (0, 0), buf, 80, 0);
    c.seal(4, key, nonce, (0, 0), buf, 80, 0);
    c.seal(CHACHA, short_key, nonce, (0, 0), buf, 80, 0);
    c.seal(AES128, key, nonce, (0, 0), buf, 80, 0);
    c.seal(AES256, key, (nonce.0, 8), (0, 0), buf, 80, 0);
    c.seal(AES256, key, nonce, big_aad, buf, 80, 0);
    c.open(AES256, key, nonce, (0, 0), (buf.0, 15), 0);
    c.seal(CHACHA, key, nonce, (0, 0), buf, 79, 64);
    let r = c.run();
    let codes: Vec<i32> = r.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            E_INVALID,
            E_INVALID,
            E_INVALID,
            E_INVALID,
            E_INVALID,
            E_INVALID,
            E_INVALID,
            E_TOO_SMALL
        ]
    );
    assert_eq!(r[7].1, vec![0x33; 64], "a refused seal changed the buffer");
}

#[test]
fn aead_calls_are_charged_to_the_fuel_budget() {
    if !kvm("aead_calls_are_charged_to_the_fuel_budget") {
        return;
    }
    let batch = |count: usize| {
        let mut c = Calls::default();
        let key = c.put(&[7; 32]);
        let nonce = c.put(&[9; 12]);
        let buf = c.put_with_room(&[0; 60_000], 16);
        for _ in 0..count {
            c.seal(CHACHA, key, nonce, (0, 0), buf, 60_016, 0);
        }
        c.stdin()
    };
    let fuel = LaunchConfig {
        fuel: Some(500_000),
        ..LaunchConfig::default()
    };
    let module = example_bytes("aead-driver.wasm");
    // Three ChaCha20 calls (180 kB at 2 fuel per byte) fit the budget: the driver itself
    // needs little fuel.
    let ran = launch(&module, &["aead-driver"], &batch(3), &fuel);
    assert_eq!(ran.result.expect("3 seals within the budget").exit_code, 0);
    // Twenty (1.2 MB) do not, although the interpreter runs about as many instructions.
    let ran = launch(&module, &["aead-driver"], &batch(20), &fuel);
    assert!(
        matches!(
            ran.result,
            Err(LaunchError::FuelExhausted { fuel: 500_000 })
        ),
        "{:?}",
        ran.result.map(|r| r.exit_code)
    );
    // A wild length is refused, not charged as gigabytes of work.
    let mut c = Calls::default();
    let key = c.put(&[7; 32]);
    let nonce = c.put(&[9; 12]);
    c.open(CHACHA, key, nonce, (0, 0), (DATA, u32::MAX - 64), 0);
    c.seal(
        CHACHA,
        key,
        nonce,
        (0, 0),
        (DATA, u32::MAX - 64),
        u32::MAX,
        0,
    );
    // Charged at most what lies in memory from the offset (2 × 2 fuel × < 128 KiB), far below
    // the 8 G fuel of four gigabytes.
    let fuel = LaunchConfig {
        fuel: Some(2_000_000),
        ..LaunchConfig::default()
    };
    let codes: Vec<i32> = c.run_with(&fuel).iter().map(|r| r.0).collect();
    assert_eq!(codes, [E_FAULT, E_FAULT]);
}
