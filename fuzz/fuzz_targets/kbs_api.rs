//! The KBS endpoints with arbitrary bodies, paths and cookies: never a panic, never a 5xx.
#![no_main]
use std::sync::OnceLock;

use ironclaw_broker::kbs::ApiRequest;
use ironclaw_broker::{Broker, BrokerConfig};
use libfuzzer_sys::fuzz_target;

fn broker() -> &'static Broker {
    static B: OnceLock<(tempdir::Dir, Broker)> = OnceLock::new();
    &B.get_or_init(|| {
        let dir = tempdir::Dir::new();
        let b = Broker::open(&dir.0, BrokerConfig::default()).expect("broker");
        (dir, b)
    })
    .1
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("claw-fuzz-kbs-{}", std::process::id()));
            Dir(p)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (path, body) = match sel % 4 {
        0 => ("/kbs/v0/auth".to_string(), rest.to_vec()),
        1 => ("/kbs/v0/attest".to_string(), rest.to_vec()),
        2 => (
            format!("/kbs/v0/resource/{}", String::from_utf8_lossy(rest)),
            Vec::new(),
        ),
        _ => (String::from_utf8_lossy(rest).into_owned(), Vec::new()),
    };
    let req = ApiRequest {
        method: if sel % 4 == 2 {
            "GET".into()
        } else {
            "POST".into()
        },
        path,
        session: (sel & 0x80 != 0).then(|| "AAAA".to_string()),
        // Bearer attestation tokens on the resource endpoint.
        authorization: (sel & 0x40 != 0)
            .then(|| format!("Bearer {}", String::from_utf8_lossy(rest))),
        body,
        peer: None,
    };
    let resp = broker().handle(&req);
    assert!(resp.status < 500, "status {}", resp.status);
});
