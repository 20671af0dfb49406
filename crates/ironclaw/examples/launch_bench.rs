//! Launch benchmark (run by `bench/ironclaw-launch`): the bare KVM floor and IronClaw
//! launches of a trivial module and of the Rust HMAC example, interleaved in one process,
//! medians and ratios printed as a Markdown table.
//!
//! Usage: `launch_bench [ITERATIONS]` (default 200).

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use ironclaw::hypercall::RunIo;
use ironclaw::vmm::Vm;
use ironclaw::{LaunchConfig, LaunchInputs, Timings};
use ironclaw_abi::layout;

/// The floor: create VM + memory + vCPU (same long-mode CPL3 setup), run a guest whose
/// first instruction exits to the host, tear down.
fn floor() -> (Duration, Duration) {
    // mov dx, HYPERCALL; out dx, al
    let p = ironclaw_abi::port::HYPERCALL.to_le_bytes();
    let code = [0x66, 0xBA, p[0], p[1], 0xEE];
    let start = Instant::now();
    let mut vm =
        Vm::create(LaunchConfig::default().memory_bytes(), layout::SHIM_BASE).expect("create VM");
    vm.write(layout::SHIM_BASE, &code, "floor guest")
        .expect("write guest");
    let exit = vm.run().expect("run");
    let first_exit = start.elapsed();
    assert!(
        matches!(exit, ironclaw::vmm::Exit::Hypercall),
        "floor guest: {exit:?}"
    );
    drop(vm);
    (first_exit, start.elapsed())
}

fn launch(module: &[u8], args: &[&str], stdin: &[u8]) -> Timings {
    let inputs = LaunchInputs {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
    };
    let (mut i, mut o, mut e) = (Cursor::new(stdin.to_vec()), Vec::new(), Vec::new());
    let io = RunIo {
        stdin: &mut i,
        stdout: &mut o,
        stderr: &mut e,
    };
    let report =
        ironclaw::run(module, &inputs, &LaunchConfig::default(), io, None).expect("launch");
    assert_eq!(report.exit_code, 0);
    assert!(!o.is_empty(), "module printed nothing");
    report.timings
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = std::path::Path::new(ironclaw::shim::EXAMPLES_DIR);
    let hello = std::fs::read(dir.join("hello.wasm")).expect("hello.wasm (built by build.rs)");
    let hmac =
        std::fs::read(dir.join("hmac-stdin.wasm")).expect("hmac-stdin.wasm (built by build.rs)");
    // Warm-up: opens /dev/kvm, caches CPUID and the shim digest, faults in the binary.
    for _ in 0..5 {
        floor();
        launch(&hello, &["hello"], b"");
        launch(&hmac, &["hmac", "key"], b"message");
    }
    let (mut f_exit, mut f_total) = (vec![], vec![]);
    let mut runs: [Vec<Timings>; 2] = [vec![], vec![]];
    for _ in 0..n {
        let (a, b) = floor();
        f_exit.push(a);
        f_total.push(b);
        runs[0].push(launch(&hello, &["hello"], b""));
        runs[1].push(launch(&hmac, &["hmac", "key"], b"the quick brown fox"));
    }
    let floor_exit = median(f_exit);
    let floor_total = median(f_total);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "iterations: {n} (medians, microseconds)\n");
    let _ = writeln!(out, "| workload | first output | exit | total (torn down) | first output / floor | total / floor total |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| KVM floor (create VM + vCPU, run to first exit) | {} | {} | {} | 1.00 | 1.00 |",
        us(floor_exit),
        us(floor_exit),
        us(floor_total)
    );
    for (name, t) in [
        ("trivial module (hello.wat)", &runs[0]),
        ("Rust HMAC example (hmac-stdin.wasm)", &runs[1]),
    ] {
        let first = median(
            t.iter()
                .map(|t| t.first_output.unwrap_or(t.to_exit))
                .collect(),
        );
        let exit = median(t.iter().map(|t| t.to_exit).collect());
        let total = median(t.iter().map(|t| t.total).collect());
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.2} | {:.2} |",
            us(first),
            us(exit),
            us(total),
            first.as_secs_f64() / floor_exit.as_secs_f64(),
            total.as_secs_f64() / floor_total.as_secs_f64()
        );
    }
    let _ = writeln!(out, "\nbreakdown (medians, microseconds):\n");
    let _ = writeln!(
        out,
        "| workload | VM create | load | measure | shim start | compile | run | teardown |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (name, t) in [
        ("trivial module", &runs[0]),
        ("Rust HMAC example", &runs[1]),
    ] {
        let m = |f: fn(&Timings) -> Duration| us(median(t.iter().map(f).collect()));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            m(|t| t.vm_create),
            m(|t| t.load),
            m(|t| t.measure),
            m(|t| t.shim_start),
            m(|t| t.compile),
            m(|t| t.run),
            m(|t| t.teardown)
        );
    }
}
