//! Policy JSON given to `ironclaw broker policy set`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ironclaw_broker::policy::Policy::from_json(data);
});
