//! End-to-end launches: the example workloads inside the enclave, and every way a run can
//! end, each with its own error and exit code.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{example_bytes, launch, launch_image, raw_image};
use hmac::{Hmac, KeyInit, Mac};
use ironclaw::{exit_code, LaunchConfig, LaunchError};
use sha2::Sha256;

fn kvm(test: &str) -> bool {
    claw_testsupport::require_kvm(test)
}

fn native_hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn rust_example_output_in_the_enclave_equals_native_hmac() {
    if !kvm("rust_example_output_in_the_enclave_equals_native_hmac") {
        return;
    }
    let module = example_bytes("hmac-stdin.wasm");
    // Longer than one stdin read round trip would need to be, and binary.
    let message: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + 3) as u8).collect();
    for (key, msg) in [
        ("k3y", &b"hello enclave"[..]),
        ("another key", &message[..]),
        ("empty", &b""[..]),
    ] {
        let ran = launch(&module, &["hmac-stdin", key], msg, &LaunchConfig::default());
        let report = ran.result.unwrap_or_else(|e| panic!("launch failed: {e}"));
        assert_eq!(report.exit_code, 0);
        assert_eq!(
            String::from_utf8(ran.stdout).unwrap(),
            format!("{}\n", native_hmac_hex(key.as_bytes(), msg))
        );
        assert!(
            ran.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
}

#[test]
fn rust_example_without_key_exits_2_with_usage_on_stderr() {
    if !kvm("rust_example_without_key_exits_2_with_usage_on_stderr") {
        return;
    }
    let ran = launch(
        &example_bytes("hmac-stdin.wasm"),
        &["hmac-stdin"],
        b"",
        &LaunchConfig::default(),
    );
    assert_eq!(ran.result.unwrap().exit_code, 2);
    assert!(String::from_utf8_lossy(&ran.stderr).contains("usage: hmac-stdin KEY"));
    assert!(ran.stdout.is_empty());
}

#[test]
fn trivial_module_prints_and_proc_exit_code_passes_through() {
    if !kvm("trivial_module_prints_and_proc_exit_code_passes_through") {
        return;
    }
    let ran = launch(
        &example_bytes("hello.wasm"),
        &["hello"],
        b"",
        &LaunchConfig::default(),
    );
    assert_eq!(ran.result.unwrap().exit_code, 0);
    assert_eq!(ran.stdout, b"hello from wasm\n");
    let ran = launch(
        &example_bytes("exit-code.wasm"),
        &["x"],
        b"",
        &LaunchConfig::default(),
    );
    assert_eq!(ran.result.unwrap().exit_code, 42);
}

/// Runs one misbehaving workload and returns its error (asserting the run did fail).
fn failing(module: &str, config: &LaunchConfig) -> LaunchError {
    let ran = launch(&example_bytes(module), &[module], b"", config);
    match ran.result {
        Ok(r) => panic!("{module}: expected failure, exited {}", r.exit_code),
        Err(e) => e,
    }
}

#[test]
fn every_misbehaving_workload_ends_with_its_own_error_and_exit_code() {
    if !kvm("every_misbehaving_workload_ends_with_its_own_error_and_exit_code") {
        return;
    }
    let mut codes = BTreeSet::new();

    let e = failing("trap.wasm", &LaunchConfig::default());
    assert!(
        matches!(&e, LaunchError::Trap { message } if message.contains("unreachable")),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit_code::TRAP);
    codes.insert(e.exit_code());

    let fuel = LaunchConfig {
        fuel: Some(1_000_000),
        ..Default::default()
    };
    let e = failing("infinite-loop.wasm", &fuel);
    assert!(
        matches!(e, LaunchError::FuelExhausted { fuel: 1_000_000 }),
        "{e}"
    );
    assert!(e.to_string().contains("fuel"));
    assert_eq!(e.exit_code(), exit_code::FUEL);
    codes.insert(e.exit_code());

    let timeout = LaunchConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let started = Instant::now();
    let e = failing("infinite-loop.wasm", &timeout);
    let took = started.elapsed();
    assert!(matches!(e, LaunchError::Timeout { .. }), "{e}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(e.exit_code(), exit_code::TIMEOUT);
    codes.insert(e.exit_code());

    let e = failing(
        "memory-bomb.wasm",
        &LaunchConfig {
            max_wasm_memory_bytes: 4 << 20,
            ..Default::default()
        },
    );
    assert!(
        matches!(&e, LaunchError::MemoryLimit { message } if message.contains("cap of 4194304 bytes")),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit_code::MEMORY);
    codes.insert(e.exit_code());

    let e = failing("unknown-import.wasm", &LaunchConfig::default());
    assert!(
        matches!(&e, LaunchError::Link { message } if message.contains("env::launch_missiles")),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit_code::LINK);
    codes.insert(e.exit_code());

    let e = failing("invalid.invalid.wasm", &LaunchConfig::default());
    assert!(
        matches!(&e, LaunchError::InvalidModule { message } if message.contains("magic")),
        "{e}"
    );
    assert_eq!(e.exit_code(), exit_code::INVALID_MODULE);
    codes.insert(e.exit_code());

    let limit = 100_000;
    let ran = launch(
        &example_bytes("output-flood.wasm"),
        &["flood"],
        b"",
        &LaunchConfig {
            max_output_bytes: limit,
            ..Default::default()
        },
    );
    let e = ran.result.expect_err("output flood must fail");
    assert!(
        matches!(e, LaunchError::OutputLimit { limit: 100_000 }),
        "{e}"
    );
    assert_eq!(
        ran.stdout.len() as u64,
        limit,
        "exactly the allowed bytes reach stdout"
    );
    assert_eq!(e.exit_code(), exit_code::OUTPUT);
    codes.insert(e.exit_code());

    // ud2 at CPL3: the guest's #UD is reported precisely.
    let ran = launch_image(
        &raw_image(&[0x0F, 0x0B]),
        b"",
        &[],
        b"",
        &LaunchConfig::default(),
    );
    let e = ran.result.expect_err("ud2 must fault");
    match &e {
        LaunchError::GuestFault(f) => {
            assert_eq!(f.vector, 6);
            assert_eq!(f.rip, ironclaw_abi::layout::SHIM_BASE);
        }
        other => panic!("expected a guest fault, got {other}"),
    }
    assert_eq!(e.exit_code(), exit_code::GUEST_FAULT);
    codes.insert(e.exit_code());

    assert_eq!(codes.len(), 8, "exit codes must be distinct: {codes:?}");
    assert!(!codes.contains(&0));
}

#[test]
fn guest_page_faults_report_the_address() {
    if !kvm("guest_page_faults_report_the_address") {
        return;
    }
    // mov byte [0], al — a null write.
    let ran = launch_image(
        &raw_image(&[0x88, 0x04, 0x25, 0, 0, 0, 0]),
        b"",
        &[],
        b"",
        &LaunchConfig::default(),
    );
    match ran.result {
        Err(LaunchError::GuestFault(f)) => {
            assert_eq!((f.vector, f.address), (14, 0));
            assert_eq!(
                f.error_code & 0b110,
                0b110,
                "user-mode write: {:#x}",
                f.error_code
            );
            assert!(f.to_string().contains("null pointer"));
        }
        other => panic!("expected #PF, got {other:?}"),
    }
    // call $ — recursion until the stack guard: reported as a shim stack overflow.
    let ran = launch_image(
        &raw_image(&[0xE8, 0xFB, 0xFF, 0xFF, 0xFF]),
        b"",
        &[],
        b"",
        &LaunchConfig::default(),
    );
    match ran.result {
        Err(LaunchError::GuestFault(f)) => {
            assert_eq!(f.vector, 14);
            assert!(f.to_string().contains("shim stack overflow"), "{f}");
        }
        other => panic!("expected #PF in the stack guard, got {other:?}"),
    }
    // Writing the boot block (user, read-only) is a protection fault, not a silent write.
    let boot = ironclaw_abi::layout::BOOT_INFO_ADDR as u32;
    let code: &'static [u8] = Box::leak(Box::new({
        let a = boot.to_le_bytes();
        [0x88, 0x04, 0x25, a[0], a[1], a[2], a[3]]
    }));
    let ran = launch_image(&raw_image(code), b"", &[], b"", &LaunchConfig::default());
    match ran.result {
        Err(LaunchError::GuestFault(f)) => assert_eq!(
            (f.vector, f.address, f.error_code & 1),
            (14, u64::from(boot), 1)
        ),
        other => panic!("expected a protection #PF, got {other:?}"),
    }
}

#[test]
fn wasi_environment_and_arguments_reach_the_module() {
    if !kvm("wasi_environment_and_arguments_reach_the_module") {
        return;
    }
    // The HMAC example reads argv[1]; a key with spaces and UTF-8 must arrive intact.
    let key = "schlüssel mit leerzeichen";
    let ran = launch(
        &example_bytes("hmac-stdin.wasm"),
        &["hmac-stdin", key],
        b"m",
        &LaunchConfig::default(),
    );
    assert_eq!(ran.result.unwrap().exit_code, 0);
    assert_eq!(
        String::from_utf8(ran.stdout).unwrap(),
        format!("{}\n", native_hmac_hex(key.as_bytes(), b"m"))
    );
}

#[test]
fn bad_configuration_is_refused_before_any_vm_exists() {
    for (config, field) in [
        (
            LaunchConfig {
                memory_mib: 3,
                ..Default::default()
            },
            "memory",
        ),
        (
            LaunchConfig {
                memory_mib: 4096,
                ..Default::default()
            },
            "memory",
        ),
        (
            LaunchConfig {
                max_wasm_memory_bytes: 1 << 30,
                ..Default::default()
            },
            "max Wasm memory",
        ),
        (
            LaunchConfig {
                timeout: Duration::ZERO,
                ..Default::default()
            },
            "timeout",
        ),
        (
            LaunchConfig {
                max_hypercalls: 0,
                ..Default::default()
            },
            "max hypercalls",
        ),
    ] {
        let ran = launch(b"\0asm\x01\0\0\0", &["x"], b"", &config);
        let e = ran.result.expect_err("must be refused");
        assert!(matches!(e, LaunchError::Config(_)), "{e}");
        assert!(e.to_string().contains(field), "{e} should name {field}");
        assert_eq!(e.exit_code(), exit_code::INTERNAL);
    }
}

#[test]
fn a_timeout_shorter_than_vm_creation_still_stops_the_run() {
    if !kvm("a_timeout_shorter_than_vm_creation_still_stops_the_run") {
        return;
    }
    // 1 ms is usually spent before the vCPU first runs: the watchdog must fire at once
    // rather than be armed with zero (which would disarm it and hang on the loop).
    let config = LaunchConfig {
        timeout: Duration::from_millis(1),
        ..Default::default()
    };
    let started = Instant::now();
    let e = failing("infinite-loop.wasm", &config);
    assert!(matches!(e, LaunchError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_module_with_measured_argv_runs_only_with_that_argv() {
    if !kvm("a_module_with_measured_argv_runs_only_with_that_argv") {
        return;
    }
    let key = "measured key";
    let module = ironclaw_abi::measured_argv::append_to_module(
        &example_bytes("hmac-stdin.wasm"),
        &["hmac-stdin", key],
    );
    // The host passes the same argv: the module runs and sees it.
    let ran = launch(
        &module,
        &["hmac-stdin", key],
        b"m",
        &LaunchConfig::default(),
    );
    assert_eq!(ran.result.unwrap().exit_code, 0);
    assert_eq!(
        String::from_utf8(ran.stdout).unwrap(),
        format!("{}\n", native_hmac_hex(key.as_bytes(), b"m"))
    );
    // A host that hands the measured module other arguments (another key, one more, one
    // fewer) is refused before the module runs: no output at all.
    for host_args in [
        &["hmac-stdin", "host's key"][..],
        &["hmac-stdin", key, "extra"][..],
        &["hmac-stdin"][..],
    ] {
        let ran = launch(&module, host_args, b"m", &LaunchConfig::default());
        let err = match ran.result {
            Err(e) => e.to_string(),
            Ok(r) => panic!("{host_args:?}: ran with exit code {}", r.exit_code),
        };
        assert!(
            err.contains("differs from the module's measured `ironclaw.argv` section"),
            "{host_args:?}: {err}"
        );
        assert!(ran.stdout.is_empty(), "{host_args:?}");
    }
    // A malformed section is refused naming the byte.
    let mut bad = example_bytes("hmac-stdin.wasm");
    bad.extend_from_slice(&[0, 18, 13]);
    bad.extend_from_slice(b"ironclaw.argv");
    bad.extend_from_slice(&[9, 0, 0, 0]);
    let ran = launch(&bad, &["x"], b"", &LaunchConfig::default());
    let err = ran.result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("truncated length prefix") || err.contains("runs past the end"),
        "{err}"
    );
}
