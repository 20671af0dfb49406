//! The enclave's KBS client fed hostile replies (the host relays them): the auth
//! challenge, the attest reply and the resource JWE; and the session cache
//! (`KbsSession`) driven through several `get_resource` calls by a relay whose
//! statuses, `Set-Cookie` headers, bodies and clock all come from the input. The
//! session must never loop: at most one handshake and two resource requests per call.
#![no_main]
use ironclaw_enclave::kbs_client::{self, KbsClient};
use ironclaw_enclave::kbs_session::{KbsIo, KbsSession, Method, Reply, Value};
use ironclaw_enclave::tee::TeeKind;
use libfuzzer_sys::fuzz_target;

/// A deterministic RNG (fuzzing only): reproducible runs.
struct Counter(u64);
impl rand_core::TryRng for Counter {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Counter {}

/// A relay whose answers are read from the fuzz input. With `wellformed` set, auth and
/// attest replies are valid (so the input steers the resource replies and the clock,
/// reaching session reuse and renewal); otherwise every reply is input bytes.
struct Hostile<'a> {
    data: &'a [u8],
    wellformed: bool,
    sessions: u32,
    now: u64,
}

const GONE: &[u8] = br#"{"type":"urn:ironclaw:kbs:error:SessionExpired","detail":"x"}"#;

impl Hostile<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
}

impl KbsIo for Hostile<'_> {
    type Error = ();
    fn request(
        &mut self,
        method: Method,
        path: &str,
        _cookie: Option<&str>,
        _body: &[u8],
    ) -> Result<Reply, ()> {
        let sel = self.byte();
        self.now = self.now.saturating_add(u64::from(sel & 0x0f) * 500);
        if sel == 0xff {
            return Err(());
        }
        let status = [200u16, 401, 403, 404, 500][usize::from(sel % 5)];
        if self.wellformed && method == Method::Post {
            self.sessions += 1;
            let (set_cookie, body) = if path.ends_with("/auth") {
                (
                    Some(format!(
                        "kbs-session-id=s{}; Max-Age={}",
                        self.sessions,
                        sel >> 4
                    )),
                    br#"{"nonce":"n","extra-params":{}}"#.to_vec(),
                )
            } else {
                (None, br#"{"token":"t"}"#.to_vec())
            };
            return Ok(Reply {
                status: 200,
                set_cookie,
                body,
            });
        }
        let cookie_len = usize::from(self.byte() % 64);
        let set_cookie = String::from_utf8_lossy(self.take(cookie_len)).into_owned();
        let body_len = usize::from(self.byte());
        let body = if body_len == 0 {
            GONE.to_vec()
        } else {
            self.take(body_len).to_vec()
        };
        Ok(Reply {
            status,
            set_cookie: (sel & 0x80 != 0).then_some(set_cookie),
            body,
        })
    }
    fn evidence(&mut self, _report_data: &[u8; 64]) -> Result<Value, ()> {
        Ok(serde_json::json!({}))
    }
    fn now_ms(&self) -> Option<u64> {
        (self.now % 7 != 3).then_some(self.now)
    }
}

fn session(wellformed: bool, data: &[u8]) {
    let _ = kbs_client::max_age_from_set_cookie(&String::from_utf8_lossy(data));
    let mut io = Hostile {
        data,
        wellformed,
        sessions: 0,
        now: 0,
    };
    let mut s = KbsSession::new(TeeKind::KVM);
    let mut rng = Counter(11);
    for _ in 0..6 {
        let before = s.stats();
        let _ = s.get_resource(&mut io, &mut rng, "default", "key", "k");
        let after = s.stats();
        assert!(after.handshakes - before.handshakes <= 1);
        assert!(after.resource_requests - before.resource_requests <= 2);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel >= 0xf0 {
        session(sel & 1 == 1, rest);
        return;
    }
    let mut c = KbsClient::new(TeeKind::KVM, &mut Counter(7));
    let _ = c.auth_request();
    if sel % 2 == 0 {
        let _ = c.on_auth_response(200, Some("kbs-session-id=s"), rest);
        return;
    }
    let _ = c.on_auth_response(
        200,
        Some("kbs-session-id=s"),
        br#"{"nonce":"n","extra-params":{}}"#,
    );
    let _ = c.attest_request(serde_json::json!({}));
    if sel % 4 == 1 {
        let _ = c.on_attest_response(200, rest);
        return;
    }
    let _ = c.on_attest_response(200, br#"{"token":"t"}"#);
    let _ = c.on_resource_response(200, rest);
});
