//! Attestation benchmark, one process, one run:
//! - from inside a fresh enclave: `secret-hmac hmac default/key/bench` (auth -> attest ->
//!   fetch through the shim's KBS client, broker on 127.0.0.1 over HTTPS), with the
//!   host-observed breakdown per step, next to the anchor: the same HMAC workload
//!   without attestation (`hmac-stdin KEY`), interleaved;
//! - broker throughput: 16 concurrent clients on loopback each doing full
//!   auth + attest + fetch sessions (kvm evidence), next to the anchor: the same
//!   clients doing one TLS keep-alive request that the broker answers 404.
//!
//! Usage: attest_bench [LAUNCHES=50] [SECONDS=5]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw::attest::EnclaveServices;
use ironclaw::hypercall::RunIo;
use ironclaw::{LaunchConfig, LaunchInputs, LaunchMeasurement};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::KbsClient;
use ironclaw_enclave::tee::TeeKind;
use ironclaw_verifier::kvm::{KvmClaims, LaunchValue};

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let launches: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let tmp = std::env::temp_dir().join(format!("ironclaw-attest-bench-{}", std::process::id()));
    let (broker_dir, host_dir) = (tmp.join("broker"), tmp.join("host"));

    let broker = Arc::new(Broker::open(&broker_dir, BrokerConfig::default()).expect("broker"));
    let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).expect("tls");
    let server = ironclaw_broker::http::start(broker, "127.0.0.1:0", tls).expect("listen");
    let roots = ironclaw_broker::tls::load_certs(&broker_dir.join("tls.crt")).expect("cert");

    let examples = Path::new(ironclaw::shim::EXAMPLES_DIR);
    let module = std::fs::read(examples.join("secret-hmac.wasm")).expect("secret-hmac.wasm");
    let anchor = std::fs::read(examples.join("hmac-stdin.wasm")).expect("hmac-stdin.wasm");
    let config = LaunchConfig::default();
    let platform =
        ironclaw::platform_key::PlatformKey::load_or_create(&host_dir).expect("platform key");
    let LaunchMeasurement(m) = LaunchMeasurement::of_launch(&module, &config);
    let bench_key = p384::ecdsa::SigningKey::from_slice(&[5u8; 48]).expect("key");
    let policy = serde_json::json!({
        "trusted_platform_keys": [platform.public_jwk(), ironclaw_verifier::kvm::public_jwk(bench_key.verifying_key())],
        "rules": [{"resources": ["default/key/*"], "tee": ["kvm"], "measurements": [hex(&m), hex(&[0x77; 48])]}],
    });
    for req in [
        AdminRequest::PolicySet { policy },
        AdminRequest::SecretPut {
            path: "default/key/bench".into(),
            value_b64: "YmVuY2gta2V5".into(),
        },
    ] {
        assert!(admin::call(&broker_dir, req).expect("admin").ok);
    }

    println!("# {} launches, {} s throughput per side", launches, seconds);
    println!(
        "\n## From inside a fresh enclave (median / p90 over {launches} launches, interleaved)\n"
    );
    let mut steps: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let (mut with_att, mut without) = (Vec::new(), Vec::new());
    for _ in 0..launches {
        let client = KbsHttpClient::new(&server.url(), &roots).expect("client");
        let mut services = EnclaveServices::new(&module, &config)
            .with_state_dir(host_dir.clone())
            .with_broker(client);
        let inputs = LaunchInputs {
            args: vec![
                "secret-hmac".into(),
                "hmac".into(),
                "default/key/bench".into(),
            ],
            env: vec![],
        };
        let (mut i, mut o, mut e) = (Cursor::new(b"message".to_vec()), Vec::new(), Vec::new());
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
        with_att.push(t.elapsed());
        assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&e));
        for (label, d) in services.timings {
            steps.entry(label).or_default().push(d);
        }

        let inputs = LaunchInputs {
            args: vec!["hmac-stdin".into(), "bench-key".into()],
            env: vec![],
        };
        let (mut i, mut o, mut e) = (Cursor::new(b"message".to_vec()), Vec::new(), Vec::new());
        let t = Instant::now();
        ironclaw::run(
            &anchor,
            &inputs,
            &config,
            RunIo {
                stdin: &mut i,
                stdout: &mut o,
                stderr: &mut e,
            },
            None,
        )
        .expect("anchor");
        without.push(t.elapsed());
    }
    println!("| step (host-observed) | median | p90 |\n|---|---|---|");
    for (label, mut v) in steps {
        println!("| {label} | {} | {} |", us(median(&mut v)), us(p90(&mut v)));
    }
    let (mw, mo) = (median(&mut with_att), median(&mut without));
    println!(
        "| whole run, secret-hmac (launch + auth + attest + fetch + HMAC + exit) | {} | {} |",
        us(mw),
        us(p90(&mut with_att))
    );
    println!(
        "| anchor: whole run, hmac-stdin with the key as argument | {} | {} |",
        us(mo),
        us(p90(&mut without))
    );
    println!(
        "\nattestation adds {} per launch (ratio {:.2})",
        us(mw.saturating_sub(mo)),
        mw.as_secs_f64() / mo.as_secs_f64()
    );

    println!("\n## Broker throughput, 16 concurrent clients on loopback, {seconds} s each\n");
    let url = server.url();
    let run_clients = |full: bool| -> (u64, Vec<Duration>) {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for t in 0..16u8 {
            let (stop, count, url, roots) =
                (stop.clone(), count.clone(), url.clone(), roots.clone());
            let key = bench_key.clone();
            handles.push(std::thread::spawn(move || {
                let mut http = KbsHttpClient::new(&url, &roots).expect("client");
                let mut lat = Vec::new();
                let mut launch_config = BTreeMap::new();
                launch_config.insert("memory_mib".to_string(), LaunchValue::Uint(u64::from(t)));
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    if full {
                        let mut kbs = KbsClient::new(TeeKind::KVM, &mut ironclaw_broker::rng());
                        let r = http
                            .request("POST", "/kbs/v0/auth", None, &kbs.auth_request().unwrap())
                            .unwrap();
                        let rd = kbs
                            .on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
                            .unwrap();
                        let claims = KvmClaims {
                            measurement: [0x77; 48],
                            report_data: rd,
                            debug: false,
                            launch_config: launch_config.clone(),
                        };
                        let ev = ironclaw_verifier::kvm::sign(&claims, &key).unwrap();
                        let body = kbs
                            .attest_request(ironclaw_enclave::kbs_client::kvm_primary_evidence(&ev))
                            .unwrap();
                        let cookie = kbs.cookie_header();
                        let r = http
                            .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
                            .unwrap();
                        kbs.on_attest_response(r.status, &r.body).unwrap();
                        let r = http
                            .request(
                                "GET",
                                "/kbs/v0/resource/default/key/bench",
                                cookie.as_deref(),
                                b"",
                            )
                            .unwrap();
                        assert_eq!(
                            kbs.on_resource_response(r.status, &r.body).unwrap(),
                            b"bench-key"
                        );
                    } else {
                        let r = http.request("GET", "/anchor", None, b"").unwrap();
                        assert_eq!(r.status, 404);
                    }
                    lat.push(start.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                lat
            }));
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let lat = handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect();
        (count.load(Ordering::Relaxed), lat)
    };
    let (n_anchor, mut lat_anchor) = run_clients(false);
    let (n_full, mut lat_full) = run_clients(true);
    println!("| load | completed/s | median latency | p90 latency |\n|---|---|---|---|");
    println!(
        "| full session: auth + attest (kvm evidence: COSE verify, policy, JWT) + fetch (JWE) | {:.0} | {} | {} |",
        n_full as f64 / seconds as f64,
        us(median(&mut lat_full)),
        us(p90(&mut lat_full))
    );
    println!(
        "| anchor: one keep-alive HTTPS request answered 404 | {:.0} | {} | {} |",
        n_anchor as f64 / seconds as f64,
        us(median(&mut lat_anchor)),
        us(p90(&mut lat_anchor))
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(&tmp);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
