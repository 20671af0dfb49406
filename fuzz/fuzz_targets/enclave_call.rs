//! IronClaw call requests from the guest (ATTEST, SEAL_KEY, KBS_HTTP) as the host parses them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let number = 0x100 + u32::from(data[0] % 4);
    let args = [u64::from(data[1]), u64::from(data[2]), 0, 0];
    let _ = ironclaw::attest::EnclaveCall::parse(number, args, &data[10..]);
});
