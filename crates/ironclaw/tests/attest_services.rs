//! The host side of IronClaw's own calls, driven as the dispatcher drives it.

use ironclaw::attest::EnclaveServices;
use ironclaw::hypercall::IronClawCalls;
use ironclaw::platform_key::PlatformKey;
use ironclaw::{LaunchConfig, LaunchMeasurement};
use ironclaw_abi::{call, status};
use std::os::unix::fs::PermissionsExt;

#[test]
fn attest_signs_the_host_computed_measurement_with_the_platform_key() {
    let dir = tempfile::tempdir().unwrap();
    let module = b"\0asm\x01\0\0\0".to_vec();
    let config = LaunchConfig::default();
    let mut svc = EnclaveServices::new(&module, &config).with_state_dir(dir.path().to_path_buf());
    let r = svc.call(call::ATTEST, [0; 4], &[0x42; 64]);
    assert_eq!(r.status, status::OK, "{:?}", svc.last_error);

    // The key was created 0600 and is the one the evidence verifies under.
    let key_file = dir.path().join("platform-key.pem");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = PlatformKey::load_or_create(dir.path()).unwrap();
    let result = ironclaw_verifier::kvm::verify(
        &r.payload,
        &[*key.verifying_key()],
        ironclaw_verifier::VerifyTime::from_unix(0),
    )
    .unwrap();
    let LaunchMeasurement(m) = LaunchMeasurement::of_launch(&module, &config);
    assert_eq!(result.measurements.primary().unwrap().0, m.to_vec());
    assert_eq!(result.report_data.unwrap().0, vec![0x42; 64]);
    assert!(!result.debug);

    // Another module: another measurement in its evidence.
    let mut other = EnclaveServices::new(b"\0asm\x01\0\0\x01", &config)
        .with_state_dir(dir.path().to_path_buf());
    let r2 = other.call(call::ATTEST, [0; 4], &[0x42; 64]);
    let result2 = ironclaw_verifier::kvm::verify(
        &r2.payload,
        &[*key.verifying_key()],
        ironclaw_verifier::VerifyTime::from_unix(0),
    )
    .unwrap();
    assert_ne!(
        result2.measurements.primary(),
        Some(&ironclaw_verifier::Bytes(m.to_vec()))
    );
}

#[test]
fn seal_key_depends_on_the_module_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LaunchConfig::default();
    let key_for = |module: &[u8]| {
        let mut s = EnclaveServices::new(module, &config).with_state_dir(dir.path().to_path_buf());
        let r = s.call(call::SEAL_KEY, [1, 1, 0, 0], &[]);
        assert_eq!(r.status, status::OK, "{:?}", s.last_error);
        r.payload
    };
    let a = key_for(b"module-a");
    assert_eq!(a.len(), 32);
    assert_eq!(a, key_for(b"module-a"));
    assert_ne!(a, key_for(b"module-b"));

    let mut s = EnclaveServices::new(b"m", &config).with_state_dir(dir.path().to_path_buf());
    assert_eq!(
        s.call(call::SEAL_KEY, [2, 1, 0, 0], &[]).status,
        status::BAD_REQUEST
    );
    assert_eq!(
        s.call(call::SEAL_KEY, [1, 0, 0, 0], &[]).status,
        status::BAD_REQUEST
    );
    assert_eq!(
        s.call(call::ATTEST, [0; 4], &[0; 65]).status,
        status::BAD_REQUEST
    );
    assert_eq!(s.call(0x1ff, [0; 4], &[]).status, status::UNKNOWN_CALL);
    // No broker configured: the relay is unavailable, not a crash.
    let mut p = 12u32.to_le_bytes().to_vec();
    p.extend_from_slice(b"/kbs/v0/auth");
    p.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        s.call(call::KBS_HTTP, [2, 0, 0, 0], &p).status,
        status::UNAVAILABLE
    );
}
