//! The `ironclaw` command against the library: `measure` and `run --print-measurement` print
//! the measurement the library computes, and `run` / `check` exit with the documented codes.

use std::path::PathBuf;
use std::process::Command;

use ironclaw::{LaunchConfig, LaunchMeasurement};

/// Path of an example workload built by crates/ironclaw's build.rs.
fn example(name: &str) -> PathBuf {
    PathBuf::from(ironclaw::shim::EXAMPLES_DIR).join(name)
}

fn example_bytes(name: &str) -> Vec<u8> {
    std::fs::read(example(name)).unwrap_or_else(|e| panic!("example {name}: {e}"))
}

fn ironclaw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_measure_and_print_measurement_agree_with_the_library() {
    let path = example("hello.wasm");
    let path = path.to_str().unwrap();
    let module = example_bytes("hello.wasm");
    let out = ironclaw(&["measure", path]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        LaunchMeasurement::of_launch(&module, &LaunchConfig::default()).to_hex()
    );
    let out = ironclaw(&[
        "measure", "--memory", "128", "--fuel", "100000", "--debug", path,
    ]);
    let expected = LaunchConfig {
        memory_mib: 128,
        fuel: Some(100_000),
        debug: true,
        ..Default::default()
    };
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        LaunchMeasurement::of_launch(&module, &expected).to_hex()
    );

    if !claw_testsupport::require_kvm(
        "cli_measure_and_print_measurement_agree_with_the_library (run part)",
    ) {
        return;
    }
    let out = ironclaw(&[
        "run",
        "--print-measurement",
        "--memory",
        "128",
        "--fuel",
        "100000",
        "--debug",
        path,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from wasm\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "measurement: {}",
            LaunchMeasurement::of_launch(&module, &expected).to_hex()
        )),
        "{stderr}"
    );
}

#[test]
fn cli_exit_codes_and_messages() {
    if !claw_testsupport::require_kvm("cli_exit_codes_and_messages") {
        return;
    }
    let trap = example("trap.wasm");
    let out = ironclaw(&["run", trap.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(ironclaw::exit_code::TRAP));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wasm trap"));
    let code = example("exit-code.wasm");
    assert_eq!(
        ironclaw(&["run", code.to_str().unwrap()]).status.code(),
        Some(42)
    );
    let lp = example("infinite-loop.wasm");
    let out = ironclaw(&["run", "--fuel", "100000", lp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(ironclaw::exit_code::FUEL));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fuel limit"));
    let out = ironclaw(&["run", "--timeout", "200ms", lp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(ironclaw::exit_code::TIMEOUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeout"));
    let out = ironclaw(&["run", "/nonexistent/module.wasm"]);
    assert_eq!(out.status.code(), Some(ironclaw::exit_code::INTERNAL));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/module.wasm"));
    let out = ironclaw(&["check"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("kvm: usable"), "{text}");
    assert!(
        ["kvm_pvm", "kvm_intel", "kvm_amd"]
            .iter()
            .any(|b| text.contains(b)),
        "{text}"
    );
}
