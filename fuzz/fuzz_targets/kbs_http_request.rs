//! The broker's HTTP request parser: any bytes from a TCP peer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ironclaw_broker::http::parse_request(data) {
        // Every refusal is a 4xx with a JSON body.
        assert!((400..500).contains(&e.status()));
        assert!(!e.body().is_empty());
    }
});
