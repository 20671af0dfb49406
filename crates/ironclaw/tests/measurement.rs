//! The launch measurement: matches an independent implementation of the documented layout and
//! changes with one byte of the module and with every launch parameter. (That the CLI's
//! `measure` and `run --print-measurement` print the same value is crates/ironclaw-cli's
//! tests/cli_measure.rs.)

mod common;

use std::time::Duration;

use common::example_bytes;
use ironclaw::measurement::{LaunchMeasurement, MEASUREMENT_TAG};
use ironclaw::LaunchConfig;
use sha2::{Digest, Sha384};

/// The documented layout (measurement.rs module docs), written out independently.
fn by_the_documentation(module: &[u8], c: &LaunchConfig) -> [u8; 48] {
    let mut h = Sha384::new();
    let mut item = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    item(MEASUREMENT_TAG);
    item(&1u32.to_le_bytes());
    let mut addrs = ironclaw_abi::layout::SHIM_BASE.to_le_bytes().to_vec();
    addrs.extend_from_slice(&ironclaw::shim::SHIM_ENTRY.to_le_bytes());
    item(&addrs);
    item(&Sha384::digest(ironclaw::shim::SHIM_IMAGE));
    item(module);
    let mut cfg = ironclaw_abi::ABI_VERSION.to_le_bytes().to_vec();
    for v in [
        c.memory_mib << 20,
        c.fuel.unwrap_or(u64::MAX),
        c.timeout.as_millis() as u64,
        c.max_output_bytes,
        c.max_wasm_memory_bytes,
        c.max_table_elements,
        c.max_hypercalls,
    ] {
        cfg.extend_from_slice(&v.to_le_bytes());
    }
    cfg.push(u8::from(c.debug));
    assert_eq!(cfg.len(), 61);
    item(&cfg);
    h.finalize().into()
}

#[test]
fn measurement_follows_the_documented_layout() {
    let module = example_bytes("hmac-stdin.wasm");
    for c in [
        LaunchConfig::default(),
        LaunchConfig {
            fuel: Some(5),
            debug: true,
            ..Default::default()
        },
    ] {
        assert_eq!(
            LaunchMeasurement::of_launch(&module, &c).0,
            by_the_documentation(&module, &c)
        );
    }
}

#[test]
fn one_byte_of_module_or_any_parameter_changes_the_measurement() {
    let module = example_bytes("hmac-stdin.wasm");
    let base = LaunchConfig::default();
    let m0 = LaunchMeasurement::of_launch(&module, &base);
    assert_eq!(
        m0,
        LaunchMeasurement::of_launch(&module.clone(), &base.clone()),
        "deterministic"
    );
    for at in [0, module.len() / 2, module.len() - 1] {
        let mut changed = module.clone();
        changed[at] ^= 0x01;
        assert_ne!(
            LaunchMeasurement::of_launch(&changed, &base),
            m0,
            "byte {at}"
        );
    }
    let mut longer = module.clone();
    longer.push(0);
    assert_ne!(LaunchMeasurement::of_launch(&longer, &base), m0);
    let variants = [
        LaunchConfig {
            memory_mib: 66,
            ..base.clone()
        },
        LaunchConfig {
            fuel: Some(1_000),
            ..base.clone()
        },
        LaunchConfig {
            fuel: Some(1_001),
            ..base.clone()
        },
        LaunchConfig {
            timeout: Duration::from_secs(11),
            ..base.clone()
        },
        LaunchConfig {
            max_output_bytes: base.max_output_bytes + 1,
            ..base.clone()
        },
        LaunchConfig {
            max_wasm_memory_bytes: base.max_wasm_memory_bytes - 65536,
            ..base.clone()
        },
        LaunchConfig {
            max_table_elements: base.max_table_elements + 1,
            ..base.clone()
        },
        LaunchConfig {
            max_hypercalls: base.max_hypercalls + 1,
            ..base.clone()
        },
        LaunchConfig {
            debug: true,
            ..base.clone()
        },
    ];
    let mut seen = vec![m0];
    for v in &variants {
        let m = LaunchMeasurement::of_launch(&module, v);
        assert!(!seen.contains(&m), "{v:?} collides");
        seen.push(m);
    }
}

/// Layout 2 (services), written out from the documentation: version 2 and item 7.
#[test]
fn service_measurement_follows_the_documented_layout() {
    use ironclaw::service::ServiceConfig;
    let module = example_bytes("sign-service.wasm");
    let c = LaunchConfig {
        fuel: Some(1_000_000),
        ..Default::default()
    };
    let s = ServiceConfig {
        listen: vec![
            "tcp:127.0.0.1:8080".parse().unwrap(),
            "unix:/run/x.sock".parse().unwrap(),
        ],
        egress: vec![
            "api.example:443".parse().unwrap(),
            "[::1]:8443".parse().unwrap(),
        ],
        max_connections: 77,
        window: 4096,
        idle_timeout: Duration::from_millis(1500),
        grace: Duration::from_secs(3),
    };
    let mut h = Sha384::new();
    let mut item = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    item(MEASUREMENT_TAG);
    item(&2u32.to_le_bytes());
    let mut addrs = ironclaw_abi::layout::SHIM_BASE.to_le_bytes().to_vec();
    addrs.extend_from_slice(&ironclaw::shim::SHIM_ENTRY.to_le_bytes());
    item(&addrs);
    item(&Sha384::digest(ironclaw::shim::SHIM_IMAGE));
    item(&module);
    item(&ironclaw::measurement::encode_config(&c));
    let mut svc = 2u32.to_le_bytes().to_vec();
    for v in [77u64, 4096, 1500, 3000] {
        svc.extend_from_slice(&v.to_le_bytes());
    }
    svc.extend_from_slice(&2u32.to_le_bytes());
    for e in ["api.example:443", "[::1]:8443"] {
        svc.extend_from_slice(&(e.len() as u32).to_le_bytes());
        svc.extend_from_slice(e.as_bytes());
    }
    item(&svc);
    let expected: [u8; 48] = h.finalize().into();
    assert_eq!(LaunchMeasurement::of_service(&module, &c, &s).0, expected);
    // Listen addresses are not measured; the order of the egress list is.
    let mut moved = s.clone();
    moved.listen[0] = "tcp:0.0.0.0:1".parse().unwrap();
    assert_eq!(
        LaunchMeasurement::of_service(&module, &c, &moved),
        LaunchMeasurement::of_service(&module, &c, &s)
    );
    let mut swapped = s.clone();
    swapped.egress.reverse();
    assert_ne!(
        LaunchMeasurement::of_service(&module, &c, &swapped),
        LaunchMeasurement::of_service(&module, &c, &s)
    );
    // A batch launch of the same module never shares the digest.
    assert_ne!(
        LaunchMeasurement::of_launch(&module, &c),
        LaunchMeasurement::of_service(&module, &c, &s)
    );
}
