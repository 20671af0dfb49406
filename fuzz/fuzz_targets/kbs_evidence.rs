//! Evidence JSON of every kind the broker accepts (kvm, sample, hardware shapes).
#![no_main]
use ironclaw_broker::evidence;
use ironclaw_broker::policy::Policy;
use ironclaw_enclave::tee::TeeKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let tee: TeeKind = match sel % 3 {
        0 => TeeKind::KVM,
        1 => TeeKind::SAMPLE,
        _ => TeeKind::NITRO,
    };
    let policy = Policy {
        allow_sample: true,
        ..Default::default()
    };
    let _ = evidence::verify(tee, &value, &[0u8; 48], &policy);
});
