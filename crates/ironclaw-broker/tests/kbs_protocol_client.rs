//! The broker driven the way Confidential Containers' own KBS client drives a
//! KBS: guest-components' `kbs_protocol` crate (`KbsClient` with the sample
//! attester), over real HTTPS on 127.0.0.1.
//!
//! The crate itself is not built here (it needs tokio, reqwest, openssl and the
//! attester stack, none of which this workspace carries or should carry), so
//! this file re-implements what it does at each step, from its source
//! (`client/rcar_client.rs`, `keypair.rs`, `crypto` crate), and nothing more:
//!
//! 1. `POST /kbs/v0/auth` with `{"version":"0.4.0","tee":"sample",
//!    "extra-params":{"supported-hash-algorithms":[..]}}`. Status 200 goes on,
//!    401 is parsed as `ErrorInformation`, anything else is "KBS Server Internal
//!    Failed" (the body is not parsed).
//! 2. The runtime-data digest: `{"tee-pubkey","nonce","additional-evidence"}`
//!    serialized canonically (RFC 8785), hashed with the challenge's
//!    `selected-hash-algorithm` (SHA-384 when absent). The sample attester puts
//!    it in `{"svn":"1","report_data":<base64>}`.
//! 3. `POST /kbs/v0/attest` with the kbs-types `Attestation`; 200 → `{"token"}`.
//! 4. `GET /kbs/v0/resource/<repo>/<type>/<tag>` with the session cookie, up to
//!    three attempts: 200 → decrypt, 401 → parse the error, new handshake, retry;
//!    404 → "resource not found"; anything else → "KBS Server Internal Failed".
//! 5. Decryption (`TeeKeyPair::decrypt_response`): the `Response` is parsed with
//!    kbs-types, the CEK unwrapped from the parsed header's `epk` (EC) or with
//!    the RSA private key, and the AAD is **the parsed header serialized again**
//!    (`ProtectedHeader::generate_aad`). The client is built without serde_json's
//!    `preserve_order`, so that re-serialization is `alg`, `enc`, then the other
//!    members sorted, nested objects sorted: [`client_aad`] writes exactly that,
//!    independently of how this workspace's serde_json orders maps. A broker
//!    that sent the header in another member order releases the secret and the
//!    client fails with "aes-256-gcm decrypt failed".
//!
//! The default key is EC P-256 (`ECDH-ES+A256KW`); the RSA key is
//! `RSA-OAEP-256`. Both are tested.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64},
    Engine,
};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::{HttpReply, KbsHttpClient};
use ironclaw_broker::http::{self, ServerHandle};
use ironclaw_broker::{Broker, BrokerConfig};
use kbs_types::{Attestation, CompositeEvidence, ErrorInformation, RuntimeData, TeePubKey};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::Digest;

const SECRET: &[u8] = b"kbs-protocol-secret";
const RESOURCE: &str = "default/key/kbs";

struct Env {
    // Dropped first: the server stops before its state directory is removed.
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(ttl: Duration) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(
            Broker::open(
                dir.path(),
                BrokerConfig {
                    session_ttl: ttl,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = http::start(broker, "127.0.0.1:0", tls).unwrap();
        let env = Env {
            server: Some(server),
            dir,
        };
        env.admin(AdminRequest::PolicySet {
            policy: json!({
                "allow_sample": true,
                "rules": [{"resources": ["default/key/kbs"], "tee": ["sample"], "measurements": ["*"]}],
            }),
        });
        for (path, value) in [(RESOURCE, SECRET), ("default/key/denied", b"no")] {
            env.admin(AdminRequest::SecretPut {
                path: path.into(),
                value_b64: STANDARD.encode(value),
            });
        }
        env
    }

    fn admin(&self, req: AdminRequest) {
        let r = admin::call(self.dir.path(), req).unwrap();
        assert!(r.ok, "admin: {:?}", r.error);
    }

    fn http(&self) -> KbsHttpClient {
        let roots = ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// JSON text with object members sorted at every depth and no whitespace: RFC
/// 8785 for the ASCII keys and string/integer values the protocol carries.
fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), sorted_json(&m[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// kbs_protocol's AAD: the received `protected` member decoded, parsed as a
/// kbs-types `ProtectedHeader` (`alg`, `enc`, the rest flattened) and written
/// again by serde_json without `preserve_order`: `alg`, `enc`, then the other
/// members in sorted order, nested maps sorted.
fn client_aad(protected_b64: &str) -> Vec<u8> {
    let header: Value = serde_json::from_slice(&B64.decode(protected_b64).unwrap()).unwrap();
    let m = header.as_object().unwrap();
    let mut text = format!(
        "{{\"alg\":{},\"enc\":{}",
        Value::String(m["alg"].as_str().unwrap().into()),
        Value::String(m["enc"].as_str().unwrap().into())
    );
    let mut others: Vec<&String> = m.keys().filter(|k| *k != "alg" && *k != "enc").collect();
    others.sort();
    for k in others {
        text.push_str(&format!(
            ",{}:{}",
            Value::String(k.clone()),
            sorted_json(&m[k])
        ));
    }
    text.push('}');
    B64.encode(text).into_bytes()
}

/// The client's tee key: kbs_protocol's default EC P-256, its P-521 key, or its
/// RSA-OAEP-256 key.
enum TeeKey {
    Ec(p256::SecretKey),
    EcP521(p521::SecretKey),
    Rsa(&'static rsa::PrivateKey),
}

fn rsa_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::PrivateKey::new(&mut ironclaw_broker::rng(), 2048).unwrap())
}

fn be(v: &rsa::BoxedUint) -> Vec<u8> {
    let b = v.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

impl TeeKey {
    fn ec() -> TeeKey {
        use p256::elliptic_curve::Generate;
        TeeKey::Ec(p256::SecretKey::generate_from_rng(
            &mut ironclaw_broker::rng(),
        ))
    }

    fn ec_p521() -> TeeKey {
        use p521::elliptic_curve::Generate;
        TeeKey::EcP521(p521::SecretKey::generate_from_rng(
            &mut ironclaw_broker::rng(),
        ))
    }

    /// `TeeKeyPair::export_pubkey`.
    fn export_pubkey(&self) -> TeePubKey {
        match self {
            TeeKey::EcP521(k) => {
                let sec1 = k.public_key().to_sec1_bytes();
                TeePubKey::EC {
                    crv: "P-521".into(),
                    alg: "ECDH-ES+A256KW".into(),
                    x: B64.encode(&sec1[1..67]),
                    y: B64.encode(&sec1[67..133]),
                }
            }
            TeeKey::Ec(k) => {
                let sec1 = k.public_key().to_sec1_bytes();
                TeePubKey::EC {
                    crv: "P-256".into(),
                    alg: "ECDH-ES+A256KW".into(),
                    x: B64.encode(&sec1[1..33]),
                    y: B64.encode(&sec1[33..65]),
                }
            }
            TeeKey::Rsa(k) => TeePubKey::RSA {
                alg: "RSA-OAEP-256".into(),
                k_mod: B64.encode(be(k.n())),
                k_exp: B64.encode(be(k.e())),
            },
        }
    }

    /// `TeeKeyPair::decrypt_response`: unwrap the CEK from the parsed header,
    /// then AES-256-GCM with the re-serialized header as AAD.
    fn decrypt_response(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let wire: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let resp: kbs_types::Response = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let cek: Vec<u8> = match (self, resp.protected.alg.as_str()) {
            (TeeKey::Ec(k), "ECDH-ES+A256KW") => {
                let epk = &resp.protected.other_fields["epk"];
                if epk["crv"] != "P-256" {
                    return Err(format!("Unmatched curve: {}", epk["crv"]));
                }
                let mut sec1 = vec![4u8];
                sec1.extend(B64.decode(epk["x"].as_str().unwrap()).unwrap());
                sec1.extend(B64.decode(epk["y"].as_str().unwrap()).unwrap());
                let epk = p256::PublicKey::from_sec1_bytes(&sec1).map_err(|e| e.to_string())?;
                let z = p256::elliptic_curve::ecdh::diffie_hellman(
                    k.to_nonzero_scalar(),
                    epk.as_affine(),
                );
                let kek = ironclaw_enclave::jwe::concat_kdf_256(
                    z.raw_secret_bytes().as_slice(),
                    "ECDH-ES+A256KW",
                    &[],
                    &[],
                );
                use aes_kw::{KeyInit, KwAes256};
                let mut cek = [0u8; 32];
                KwAes256::new_from_slice(kek.as_ref())
                    .unwrap()
                    .unwrap_key(&resp.encrypted_key, &mut cek)
                    .map_err(|_| "aes key unwrap failed".to_string())?;
                cek.to_vec()
            }
            (TeeKey::EcP521(k), "ECDH-ES+A256KW") => {
                let epk = &resp.protected.other_fields["epk"];
                if epk["crv"] != "P-521" {
                    return Err(format!("Unmatched curve: {}", epk["crv"]));
                }
                let mut sec1 = vec![4u8];
                sec1.extend(B64.decode(epk["x"].as_str().unwrap()).unwrap());
                sec1.extend(B64.decode(epk["y"].as_str().unwrap()).unwrap());
                let epk = p521::PublicKey::from_sec1_bytes(&sec1).map_err(|e| e.to_string())?;
                let z = p521::elliptic_curve::ecdh::diffie_hellman(
                    k.to_nonzero_scalar(),
                    epk.as_affine(),
                );
                let kek = ironclaw_enclave::jwe::concat_kdf_256(
                    z.raw_secret_bytes().as_slice(),
                    "ECDH-ES+A256KW",
                    &[],
                    &[],
                );
                use aes_kw::{KeyInit, KwAes256};
                let mut cek = [0u8; 32];
                KwAes256::new_from_slice(kek.as_ref())
                    .unwrap()
                    .unwrap_key(&resp.encrypted_key, &mut cek)
                    .map_err(|_| "aes key unwrap failed".to_string())?;
                cek.to_vec()
            }
            (TeeKey::Rsa(k), "RSA-OAEP-256") => k
                .decrypt_blinded(
                    &mut ironclaw_broker::rng(),
                    rsa::Oaep::<sha2::Sha256>::new(),
                    &resp.encrypted_key,
                )
                .map_err(|e| e.to_string())?,
            (_, alg) => return Err(format!("Unsupported algorithm: {alg}")),
        };
        let aad = client_aad(wire["protected"].as_str().unwrap());
        let iv: [u8; 12] = resp.iv.as_slice().try_into().map_err(|_| "iv")?;
        let tag: [u8; 16] = resp.tag.as_slice().try_into().map_err(|_| "tag")?;
        ironclaw_enclave::jwe::gcm_decrypt(&cek, &iv, &aad, &resp.ciphertext, &tag)
            .map_err(|_| "aes-256-gcm decrypt failed".to_string())
    }
}

/// What kbs_protocol makes of a non-200 reply.
#[derive(Debug, PartialEq)]
enum ClientError {
    /// 401 with a parsed `ErrorInformation`.
    Unauthorized(String),
    /// 404 with a parsed `ErrorInformation`.
    NotFound(String),
    /// Any other status: "KBS Server Internal Failed".
    Internal(u16),
    /// Three attempts, all 401.
    GaveUp,
    /// Decryption of a released resource failed.
    Decrypt(String),
}

fn error_type(r: &HttpReply) -> String {
    let info: ErrorInformation = serde_json::from_slice(&r.body).unwrap();
    info.error_type
        .trim_start_matches(ironclaw_broker::error::ERROR_TYPE_PREFIX)
        .to_string()
}

struct KbsProtocolClient {
    http: KbsHttpClient,
    key: TeeKey,
    cookie: Option<String>,
    handshakes: usize,
    /// What the client's attestation agent adds: init-data (TOML) and device
    /// evidence (none by default, as the sample attester).
    init_data: Option<kbs_types::InitData>,
    additional_evidence: String,
}

impl KbsProtocolClient {
    fn new(env: &Env, key: TeeKey) -> Self {
        KbsProtocolClient {
            http: env.http(),
            key,
            cookie: None,
            handshakes: 0,
            init_data: None,
            additional_evidence: String::new(),
        }
    }

    fn rcar_handshake(&mut self) -> Result<String, ClientError> {
        self.handshakes += 1;
        let request = json!({
            "version": "0.4.0",
            "tee": "sample",
            "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]},
        });
        let r = self
            .http
            .request(
                "POST",
                "/kbs/v0/auth",
                None,
                &serde_json::to_vec(&request).unwrap(),
            )
            .unwrap();
        match r.status {
            200 => {}
            401 => return Err(ClientError::Unauthorized(error_type(&r))),
            s => return Err(ClientError::Internal(s)),
        }
        // reqwest's cookie store keeps `name=value`.
        self.cookie = r
            .set_cookie
            .as_deref()
            .map(|c| c.split(';').next().unwrap().to_string());
        let challenge: kbs_types::Challenge = serde_json::from_slice(&r.body).unwrap();
        let hash = challenge
            .extra_params
            .get("selected-hash-algorithm")
            .and_then(Value::as_str)
            .unwrap_or("sha384")
            .to_lowercase();
        let runtime_data = RuntimeData {
            nonce: challenge.nonce.clone(),
            tee_pubkey: self.key.export_pubkey(),
        };
        let additional_evidence = self.additional_evidence.clone();
        let primary_runtime_data = json!({
            "tee-pubkey": runtime_data.tee_pubkey,
            "nonce": runtime_data.nonce,
            "additional-evidence": additional_evidence,
        });
        let canonical = sorted_json(&primary_runtime_data);
        let digest: Vec<u8> = match hash.as_str() {
            "sha256" => sha2::Sha256::digest(canonical.as_bytes()).to_vec(),
            "sha384" => sha2::Sha384::digest(canonical.as_bytes()).to_vec(),
            "sha512" => sha2::Sha512::digest(canonical.as_bytes()).to_vec(),
            other => panic!("selected-hash-algorithm {other}"),
        };
        // The sample attester's quote.
        let primary_evidence = json!({"svn": "1", "report_data": STANDARD.encode(&digest)});
        let attestation = Attestation {
            init_data: self.init_data.clone(),
            runtime_data,
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence,
            },
        };
        let r = self
            .http
            .request(
                "POST",
                "/kbs/v0/attest",
                self.cookie.as_deref(),
                &serde_json::to_vec(&attestation).unwrap(),
            )
            .unwrap();
        match r.status {
            200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                Ok(v["token"].as_str().unwrap().to_string())
            }
            401 => Err(ClientError::Unauthorized(error_type(&r))),
            s => Err(ClientError::Internal(s)),
        }
    }

    /// `KbsClientCapabilities::get_resource`, handshake first as `get_resource`
    /// callers (the CDH) do on a fresh client.
    fn get_resource(&mut self, path: &str) -> Result<Vec<u8>, ClientError> {
        if self.cookie.is_none() {
            self.rcar_handshake()?;
        }
        for _attempt in 1..=3 {
            let r = self
                .http
                .request(
                    "GET",
                    &format!("/kbs/v0/resource/{path}"),
                    self.cookie.as_deref(),
                    b"",
                )
                .unwrap();
            match r.status {
                200 => {
                    return self
                        .key
                        .decrypt_response(&r.body)
                        .map_err(ClientError::Decrypt)
                }
                401 => {
                    let _ = error_type(&r);
                    self.rcar_handshake()?;
                    continue;
                }
                404 => return Err(ClientError::NotFound(error_type(&r))),
                s => return Err(ClientError::Internal(s)),
            }
        }
        Err(ClientError::GaveUp)
    }
}

/// The premise of the EC check: in this workspace serde_json keeps insertion
/// order (`preserve_order`, through a dependency), so a header built in any
/// order other than the sorted one would reach the wire in that order. If this
/// ever stops holding, the EC test below still checks the bytes, but no longer
/// by contrast with the workspace's own serializer.
#[test]
fn workspace_serde_json_keeps_insertion_order() {
    let mut m = serde_json::Map::new();
    m.insert("kty".into(), json!("EC"));
    m.insert("crv".into(), json!("P-256"));
    assert_eq!(
        Value::Object(m).to_string(),
        r#"{"kty":"EC","crv":"P-256"}"#
    );
}

#[test]
fn default_ec_p256_client_decrypts_the_released_resource() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    assert_eq!(c.get_resource(RESOURCE).unwrap(), SECRET);
    assert_eq!(c.handshakes, 1);
    let release = env
        .audit()
        .into_iter()
        .rev()
        .find(|l| l["event"] == "release");
    assert_eq!(release.unwrap()["alg"], "ECDH-ES+A256KW");
}

#[test]
fn ec_p521_client_decrypts_the_released_resource() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec_p521());
    assert_eq!(c.get_resource(RESOURCE).unwrap(), SECRET);
    let release = env
        .audit()
        .into_iter()
        .rev()
        .find(|l| l["event"] == "release");
    assert_eq!(release.unwrap()["alg"], "ECDH-ES+A256KW");
    // A P-521 key whose coordinates are not 66 bytes, or not on the curve, is
    // refused by field.
    let TeePubKey::EC { x, y, .. } = TeeKey::ec_p521().export_pubkey() else {
        unreachable!()
    };
    for (x, y, why) in [
        (x[..80].to_string(), y.clone(), "field `x`: decodes to"),
        (x.clone(), B64.encode([1u8; 66]), "not a valid P-521"),
    ] {
        let jwk = TeePubKey::EC {
            crv: "P-521".into(),
            alg: "ECDH-ES+A256KW".into(),
            x,
            y,
        };
        let e = ironclaw_broker::tee_key::parse(&jwk).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn rsa_client_decrypts_the_released_resource() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = KbsProtocolClient::new(&env, TeeKey::Rsa(rsa_key()));
    assert_eq!(c.get_resource(RESOURCE).unwrap(), SECRET);
    assert_eq!(c.handshakes, 1);
}

#[test]
fn an_expired_session_is_a_401_the_client_recovers_from_by_a_new_handshake() {
    let env = Env::new(Duration::from_secs(1));
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    assert_eq!(c.get_resource(RESOURCE).unwrap(), SECRET);
    // Max-Age 1 s, whole seconds: 2.1 s later the session is gone for sure.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.get_resource(RESOURCE).unwrap(), SECRET);
    assert_eq!(c.handshakes, 2, "one re-handshake after the 401");
    assert!(env
        .audit()
        .iter()
        .any(|l| l["event"] == "refusal" && l["error"] == "SessionExpired"));
}

#[test]
fn refusals_reach_the_client_as_trustee_statuses() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    // Not granted: 403, as trustee's PolicyDeny; the client does not retry.
    assert_eq!(
        c.get_resource("default/key/denied"),
        Err(ClientError::Internal(403))
    );
    assert_eq!(c.handshakes, 1);
    // Granted but not stored: 404, which the client reports as not found.
    env.admin(AdminRequest::PolicySet {
        policy: json!({
            "allow_sample": true,
            "rules": [{"resources": ["default/key/*"], "tee": ["sample"], "measurements": ["*"]}],
        }),
    });
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    assert_eq!(
        c.get_resource("default/key/missing"),
        Err(ClientError::NotFound("ResourceNotFound".into()))
    );
    // Evidence the policy refuses: the handshake's /attest is a 401 whose body
    // the client parses (trustee answers attestation failures with 401).
    env.admin(AdminRequest::PolicySet {
        policy: json!({"allow_sample": false, "rules": []}),
    });
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    assert_eq!(
        c.rcar_handshake(),
        Err(ClientError::Unauthorized("SampleDisabled".into()))
    );
}

#[test]
fn device_evidence_and_init_data_are_refused_by_name_never_ignored() {
    let env = Env::new(Duration::from_secs(60));
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    c.additional_evidence = r#"{"nvgpu":{"evidence":"AAAA"}}"#.into();
    assert_eq!(
        c.rcar_handshake(),
        Err(ClientError::Unauthorized(
            "UnsupportedAdditionalEvidence".into()
        ))
    );
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    c.init_data = Some(kbs_types::InitData {
        format: "toml".into(),
        body: "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n".into(),
    });
    assert_eq!(
        c.rcar_handshake(),
        Err(ClientError::Unauthorized("UnsupportedInitData".into()))
    );
    let refusals: Vec<Value> = env
        .audit()
        .into_iter()
        .filter(|l| l["event"] == "refusal")
        .collect();
    assert_eq!(refusals.len(), 2);
    assert!(refusals[0]["reason"]
        .as_str()
        .unwrap()
        .contains("device evidence"));
    assert!(refusals[1]["reason"]
        .as_str()
        .unwrap()
        .contains("format \"toml\""));
    // Without them the same client attests.
    let mut c = KbsProtocolClient::new(&env, TeeKey::ec());
    assert!(c.rcar_handshake().is_ok());
}
