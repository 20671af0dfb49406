//! Host side of IronClaw's own calls: attestation evidence, sealing
//! keys, and the KBS relay. Every payload comes from the guest and is validated
//! here as hostile input ([`untrusted_enclave_call`]); every answer is computed
//! from what the host itself knows (the measurement it computed, its keys).

pub mod untrusted_enclave_call;

use std::collections::BTreeMap;

use ironclaw_abi::{call, status};
use ironclaw_kbs_client::KbsHttpClient;
use ironclaw_kvm_evidence::{KvmClaims, LaunchValue};

use crate::hypercall::{ExtensionResponse, IronClawCalls};
use crate::platform_key::PlatformKey;
use crate::sealing::SealingRoot;
use crate::{LaunchConfig, LaunchMeasurement};

pub use untrusted_enclave_call::{EnclaveCall, EnclaveCallError, HttpMethod};

/// The services one launch offers its enclave.
pub struct EnclaveServices {
    /// The module and configuration as launched; the measurement is computed from
    /// them on the first call that needs it (most runs make no IronClaw call).
    module: Vec<u8>,
    config: LaunchConfig,
    measurement: Option<[u8; 48]>,
    debug: bool,
    launch_config: BTreeMap<String, LaunchValue>,
    platform: Option<PlatformKey>,
    sealing: Option<SealingRoot>,
    broker: Option<KbsHttpClient>,
    state_dir: Option<std::path::PathBuf>,
    /// Why the last call was refused (for the host's error output and tests).
    pub last_error: Option<String>,
    /// Host-side duration of every call, in order (`attest`, `seal_key`,
    /// `kbs POST /kbs/v0/auth`, ...): the attestation benchmark's breakdown.
    pub timings: Vec<(String, std::time::Duration)>,
}

impl std::fmt::Debug for EnclaveServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnclaveServices")
            .field("measurement", &self.measurement.map(|m| hex_str(&m)))
            .finish()
    }
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The launch parameters the evidence reports (all covered by the measurement).
pub fn launch_config_claims(config: &LaunchConfig) -> BTreeMap<String, LaunchValue> {
    let mut m = BTreeMap::new();
    m.insert("memory_mib".into(), LaunchValue::Uint(config.memory_mib));
    if let Some(f) = config.fuel {
        m.insert("fuel".into(), LaunchValue::Uint(f));
    }
    m.insert(
        "max_output_bytes".into(),
        LaunchValue::Uint(config.max_output_bytes),
    );
    m.insert(
        "max_wasm_memory_bytes".into(),
        LaunchValue::Uint(config.max_wasm_memory_bytes),
    );
    m.insert(
        "max_table_elements".into(),
        LaunchValue::Uint(config.max_table_elements),
    );
    m.insert("debug".into(), LaunchValue::Bool(config.debug));
    m
}

impl EnclaveServices {
    /// Services for `module` launched with `config`: the measurement is computed
    /// here, by the host, over exactly what it loads.
    pub fn new(module: &[u8], config: &LaunchConfig) -> Self {
        EnclaveServices {
            module: module.to_vec(),
            config: config.clone(),
            measurement: None,
            debug: config.debug,
            launch_config: launch_config_claims(config),
            platform: None,
            sealing: None,
            broker: None,
            state_dir: None,
            last_error: None,
            timings: Vec::new(),
        }
    }

    /// Reports `m` instead of the plain launch measurement: a service launch's
    /// [`LaunchMeasurement::of_service`], which also covers its egress list, so the broker's
    /// policy pins where the enclave can send what it is given.
    pub fn with_measurement(mut self, m: &LaunchMeasurement) -> Self {
        self.measurement = Some(m.0);
        self
    }

    /// Enables `attest` with this platform key.
    pub fn with_platform_key(mut self, key: PlatformKey) -> Self {
        self.platform = Some(key);
        self
    }

    /// Enables sealing with this root.
    pub fn with_sealing_root(mut self, root: SealingRoot) -> Self {
        self.sealing = Some(root);
        self
    }

    /// The launch measurement, computed by the host over exactly what it loads.
    fn measurement(&mut self) -> [u8; 48] {
        if let Some(m) = self.measurement {
            return m;
        }
        let LaunchMeasurement(m) = LaunchMeasurement::of_launch(&self.module, &self.config);
        self.measurement = Some(m);
        m
    }

    /// Enables attestation and sealing with the keys in `dir` (the platform key and
    /// sealing root are loaded, or created, on the first call that needs them).
    pub fn with_state_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    fn load_keys(&mut self, need_platform: bool) -> Result<(), String> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        if need_platform && self.platform.is_none() {
            self.platform = Some(PlatformKey::load_or_create(&dir).map_err(|e| e.to_string())?);
        }
        if !need_platform && self.sealing.is_none() {
            self.sealing = Some(SealingRoot::load_or_create(&dir).map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// Enables the KBS relay to this broker.
    pub fn with_broker(mut self, client: KbsHttpClient) -> Self {
        self.broker = Some(client);
        self
    }

    fn refuse(&mut self, status: u32, why: String) -> ExtensionResponse {
        self.last_error = Some(why);
        ExtensionResponse {
            status,
            ..Default::default()
        }
    }

    fn answer(&mut self, call: EnclaveCall) -> ExtensionResponse {
        match call {
            EnclaveCall::Attest { report_data } => {
                if let Err(e) = self.load_keys(true) {
                    return self.refuse(status::UNAVAILABLE, format!("attest: {e}"));
                }
                let measurement = self.measurement();
                let Some(key) = &self.platform else {
                    return self.refuse(
                        status::UNAVAILABLE,
                        "attest: no platform key on this host".into(),
                    );
                };
                let claims = KvmClaims {
                    measurement,
                    report_data,
                    debug: self.debug,
                    launch_config: self.launch_config.clone(),
                };
                match ironclaw_kvm_evidence::sign(&claims, key.signing_key()) {
                    Ok(evidence) => ExtensionResponse {
                        status: status::OK,
                        values: [0; 2],
                        payload: evidence,
                    },
                    Err(e) => self.refuse(status::UNAVAILABLE, format!("attest: {e}")),
                }
            }
            EnclaveCall::SealKey {
                key_version,
                field_select,
            } => {
                if let Err(e) = self.load_keys(false) {
                    return self.refuse(status::UNAVAILABLE, format!("seal: {e}"));
                }
                let measurement = self.measurement();
                let Some(root) = &self.sealing else {
                    return self.refuse(
                        status::UNAVAILABLE,
                        "seal: no sealing root on this host".into(),
                    );
                };
                match root.derive(&measurement, key_version, field_select) {
                    Ok(k) => ExtensionResponse {
                        status: status::OK,
                        values: [0; 2],
                        payload: k.to_vec(),
                    },
                    Err(e) => self.refuse(status::BAD_REQUEST, e.to_string()),
                }
            }
            EnclaveCall::KbsHttp {
                method,
                path,
                cookie,
                body,
            } => {
                let Some(client) = self.broker.as_mut() else {
                    return self.refuse(
                        status::UNAVAILABLE,
                        "get_secret: no broker given (ironclaw run --broker URL)".into(),
                    );
                };
                let cookie = (!cookie.is_empty()).then_some(cookie.as_str());
                match client.request(method.as_str(), &path, cookie, &body) {
                    Ok(reply) => {
                        let set_cookie = reply.set_cookie.unwrap_or_default();
                        let mut payload =
                            Vec::with_capacity(4 + set_cookie.len() + reply.body.len());
                        payload.extend_from_slice(&(set_cookie.len() as u32).to_le_bytes());
                        payload.extend_from_slice(set_cookie.as_bytes());
                        payload.extend_from_slice(&reply.body);
                        if payload.len() > ironclaw_abi::DATA_CAPACITY {
                            return self.refuse(
                                status::UNAVAILABLE,
                                "broker reply larger than the shared buffer".into(),
                            );
                        }
                        ExtensionResponse {
                            status: status::OK,
                            values: [u64::from(reply.status), 0],
                            payload,
                        }
                    }
                    Err(e) => self.refuse(status::UNAVAILABLE, format!("broker: {e}")),
                }
            }
        }
    }
}

impl IronClawCalls for EnclaveServices {
    fn call(&mut self, number: u32, args: [u64; 4], payload: &[u8]) -> ExtensionResponse {
        if !(call::IRONCLAW_FIRST..=call::IRONCLAW_LAST).contains(&number) {
            return self.refuse(
                status::UNKNOWN_CALL,
                format!("call {number:#x} outside the IronClaw range"),
            );
        }
        match EnclaveCall::parse(number, args, payload) {
            Ok(c) => {
                let label = match &c {
                    EnclaveCall::Attest { .. } => "attest".to_string(),
                    EnclaveCall::SealKey { .. } => "seal_key".to_string(),
                    EnclaveCall::KbsHttp { method, path, .. } => {
                        let p = if path.starts_with("/kbs/v0/resource/") {
                            "/kbs/v0/resource"
                        } else {
                            path
                        };
                        format!("kbs {} {p}", method.as_str())
                    }
                };
                let start = std::time::Instant::now();
                let r = self.answer(c);
                self.timings.push((label, start.elapsed()));
                r
            }
            Err(EnclaveCallError::UnknownCall(n)) => self.refuse(
                status::UNKNOWN_CALL,
                format!("unknown IronClaw call {n:#x}"),
            ),
            Err(e) => self.refuse(status::BAD_REQUEST, e.to_string()),
        }
    }
}
