//! The enclave's KBS client fed hostile replies (the host relays them): the auth
//! challenge, the attest reply and the resource JWE.
#![no_main]
use ironclaw_enclave::kbs_client::KbsClient;
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

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
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
