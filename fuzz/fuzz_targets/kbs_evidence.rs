//! Evidence JSON of every kind the broker accepts (kvm, sample, the hardware
//! kinds in trustee's shapes and in the broker's wrapper), verified end to end.
#![no_main]
use ironclaw_broker::collateral::CollateralStore;
use ironclaw_broker::evidence::{self, VerifyEnv};
use ironclaw_broker::policy::Policy;
use ironclaw_enclave::tee::TeeKind;
use ironclaw_verifier::VerifyTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let name = ["kvm", "sample", "nitro", "snp", "tdx", "sgx"][usize::from(sel) % 6];
    let Ok(tee) = serde_json::from_value::<TeeKind>(serde_json::Value::from(name)) else {
        return;
    };
    let policy = Policy {
        allow_sample: true,
        ..Default::default()
    };
    // No collateral directory: DCAP quotes are verified without TCB evaluation.
    let store = CollateralStore::new(std::path::Path::new(
        "/nonexistent/claw-fuzz/dcap-collateral",
    ));
    let env = VerifyEnv {
        at: VerifyTime::from_unix(1_751_624_191),
        collateral: &store,
    };
    let _ = evidence::verify(tee, &value, &[0u8; 48], &policy, &env);
});
