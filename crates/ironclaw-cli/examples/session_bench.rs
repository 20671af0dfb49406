//! KBS session reuse benchmark, one process, one run: a fresh enclave runs
//! `secret-hmac hmac-lines` over three requests (secrets a, b, a) against a broker on
//! 127.0.0.1 (HTTPS). The module times each `get_secret` with the guest clock
//! (`SECRET_HMAC_TIMING=1`). The first call pays auth → attest → fetch, which is what
//! every call cost before the shim kept its session: it is the anchor, measured in the
//! same launches as the reused-session calls. Also reported: whole-run time for one
//! and for three secrets (interleaved), and the hypercalls the host relayed per launch.
//!
//! Usage: session_bench [LAUNCHES=30]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw::attest::EnclaveServices;
use ironclaw::hypercall::RunIo;
use ironclaw::{LaunchConfig, LaunchInputs, LaunchMeasurement};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::{Broker, BrokerConfig};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `get_secret PATH: N us` lines from the module's stderr, in order.
fn call_times(stderr: &[u8]) -> Vec<Duration> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("get_secret "))
        .filter_map(|l| l.rsplit_once(": "))
        .filter_map(|(_, n)| n.strip_suffix(" us")?.parse().ok())
        .map(Duration::from_micros)
        .collect()
}

fn main() {
    let launches: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let tmp = std::env::temp_dir().join(format!("ironclaw-session-bench-{}", std::process::id()));
    let (broker_dir, host_dir) = (tmp.join("broker"), tmp.join("host"));
    let broker = Arc::new(Broker::open(&broker_dir, BrokerConfig::default()).expect("broker"));
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).expect("tls");
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).expect("listen");
    let roots = ironclaw_broker::tls::load_certs(&broker_dir.join("tls.crt")).expect("cert");

    let examples = Path::new(ironclaw::shim::EXAMPLES_DIR);
    let module = std::fs::read(examples.join("secret-hmac.wasm")).expect("secret-hmac.wasm");
    let config = LaunchConfig::default();
    let platform =
        ironclaw::platform_key::PlatformKey::load_or_create(&host_dir).expect("platform key");
    let LaunchMeasurement(m) = LaunchMeasurement::of_launch(&module, &config);
    let policy = serde_json::json!({
        "trusted_platform_keys": [platform.public_jwk()],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [hex(&m)]}],
    });
    for req in [
        AdminRequest::PolicySet { policy },
        AdminRequest::SecretPut {
            path: "default/key/a".into(),
            value_b64: "YmVuY2gta2V5LWE=".into(),
        },
        AdminRequest::SecretPut {
            path: "default/key/b".into(),
            value_b64: "YmVuY2gta2V5LWI=".into(),
        },
    ] {
        assert!(admin::call(&broker_dir, req).expect("admin").ok);
    }

    let run = |stdin: &[u8]| {
        let client = KbsHttpClient::new(&server.url(), &roots).expect("client");
        let mut services = EnclaveServices::new(&module, &config)
            .with_state_dir(host_dir.clone())
            .with_broker(client);
        let inputs = LaunchInputs {
            args: vec!["secret-hmac".into(), "hmac-lines".into()],
            env: vec!["SECRET_HMAC_TIMING=1".into()],
        };
        let (mut i, mut o, mut e) = (Cursor::new(stdin.to_vec()), Vec::new(), Vec::new());
        let t = Instant::now();
        let r = ironclaw::run(
            &module,
            &inputs,
            &config,
            RunIo {
                stdin: &mut i,
                stdout: &mut o,
                stderr: &mut e,
            },
            Some(&mut services),
        )
        .expect("launch");
        let whole = t.elapsed();
        assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&e));
        (whole, call_times(&e), services.timings)
    };

    println!(
        "# {launches} launches each side, interleaved; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut calls: [Vec<Duration>; 3] = Default::default();
    let (mut whole1, mut whole3) = (Vec::new(), Vec::new());
    let mut relayed: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..launches {
        let (w, times, _) = run(b"default/key/a one\n");
        assert_eq!(times.len(), 1);
        whole1.push(w);
        let (w, times, host_calls) =
            run(b"default/key/a one\ndefault/key/b two\ndefault/key/a three\n");
        assert_eq!(times.len(), 3);
        whole3.push(w);
        for (slot, t) in calls.iter_mut().zip(times) {
            slot.push(t);
        }
        for (label, _) in host_calls {
            *relayed.entry(label).or_default() += 1;
        }
    }

    println!("\n## get_secret latency inside the enclave (guest clock), three reads per launch\n");
    println!("| call | median | p90 |\n|---|---|---|");
    let [mut c1, mut c2, mut c3] = calls;
    let (m1, m2, m3) = (median(&mut c1), median(&mut c2), median(&mut c3));
    println!(
        "| anchor: 1st get_secret (auth + evidence + attest + fetch; every call before session reuse) | {} | {} |",
        us(m1),
        us(p90(&mut c1))
    );
    println!(
        "| 2nd get_secret, other secret, same session (fetch only) | {} | {} |",
        us(m2),
        us(p90(&mut c2))
    );
    println!(
        "| 3rd get_secret, same session (fetch only) | {} | {} |",
        us(m3),
        us(p90(&mut c3))
    );
    println!(
        "\nreused-session call: {:.2}x the first call's latency (median 2nd / median 1st)",
        m2.as_secs_f64() / m1.as_secs_f64()
    );

    println!("\n## Whole run (launch + reads + HMAC + exit)\n");
    println!("| run | median | p90 |\n|---|---|---|");
    let (w1, w3) = (median(&mut whole1), median(&mut whole3));
    println!("| one secret | {} | {} |", us(w1), us(p90(&mut whole1)));
    println!("| three secrets | {} | {} |", us(w3), us(p90(&mut whole3)));
    println!(
        "\ntwo more secrets cost {} per launch",
        us(w3.saturating_sub(w1))
    );

    println!("\n## Host calls per three-secret launch (mean)\n");
    println!("| call | per launch |\n|---|---|");
    for (label, n) in relayed {
        println!("| {label} | {:.1} |", n as f64 / launches as f64);
    }
    server.shutdown();
    let _ = std::fs::remove_dir_all(&tmp);
}
