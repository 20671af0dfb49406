//! Real hardware evidence (shared/fixtures/attestation, see its PROVENANCE.md)
//! through the broker's HTTPS API on 127.0.0.1, in the shapes trustee's attesters
//! send (SNP, TDX, SGX) and in the broker's own wrapper (Nitro: trustee has no
//! Nitro shape).
//!
//! No fixture can bind this session's nonce, so the correct observable for
//! authentic evidence verified inside its validity window is a refusal with
//! `ReportDataMismatch` whose detail says what verified (signer, measurement,
//! TCB). The same evidence with one signed byte changed is refused for its
//! signature instead (verification runs before the binding check), and at an
//! instant outside the window for the expired certificate / collateral. Each
//! refusal leaves its audit line. The broker is given the instant through
//! `Broker::with_evidence_clock(FixedClock)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use ironclaw_broker::admin::{self, AdminRequest};
use ironclaw_broker::client::KbsHttpClient;
use ironclaw_broker::clock::FixedClock;
use ironclaw_broker::http::{self, ServerHandle};
use ironclaw_broker::trustee_evidence;
use ironclaw_broker::{Broker, BrokerConfig};
use ironclaw_enclave::kbs_client::{KbsClient, KbsClientError};
use ironclaw_enclave::tee::{ExtraTee, TeeKind};
use ironclaw_verifier::VerifyTime;
use kbs_types::Tee;
use serde_json::{json, Value};

fn fixtures(test: &str) -> Option<PathBuf> {
    claw_testsupport::require_attestation_fixtures(test)
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("read fixture {rel}: {e}"))
}

fn at(s: &str) -> VerifyTime {
    VerifyTime::parse_rfc3339(s).unwrap()
}

/// A broker verifying at `instant`, with a policy that admits any measurement of
/// the hardware kinds (so a refusal is the evidence's, not the policy's) and
/// `collateral` files installed as the operator would.
struct Env {
    // Dropped first: the server stops before its state directory is removed.
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(instant: VerifyTime, collateral: &[(&str, Vec<u8>)]) -> Env {
        Env::with_clock(Some(instant), collateral)
    }

    /// `None`: the broker as `ironclaw broker serve` opens it (wall clock).
    fn with_clock(instant: Option<VerifyTime>, collateral: &[(&str, Vec<u8>)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        if !collateral.is_empty() {
            let cdir = dir.path().join(ironclaw_broker::collateral::DIR_NAME);
            std::fs::create_dir_all(&cdir).unwrap();
            for (name, bytes) in collateral {
                std::fs::write(cdir.join(name), bytes).unwrap();
            }
        }
        let broker = Broker::open(
            dir.path(),
            BrokerConfig {
                session_ttl: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .unwrap();
        let broker = match instant {
            Some(t) => broker.with_evidence_clock(Arc::new(FixedClock(t))),
            None => broker,
        };
        let broker = Arc::new(broker);
        let tls = ironclaw_broker::tls::server_config(broker.state(), None, None).unwrap();
        let server = http::start(broker, "127.0.0.1:0", tls).unwrap();
        let env = Env {
            server: Some(server),
            dir,
        };
        let r = admin::call(
            env.dir.path(),
            AdminRequest::PolicySet {
                policy: json!({"rules": [{
                    "resources": ["default/key/api"],
                    "tee": ["snp", "tdx", "sgx", "nitro"],
                    "measurements": ["*"],
                    "allow_debug": true
                }]}),
            },
        )
        .unwrap();
        assert!(r.ok, "policy set: {:?}", r.error);
        env
    }

    fn client(&self) -> KbsHttpClient {
        let roots = ironclaw_broker::tls::load_certs(&self.dir.path().join("tls.crt")).unwrap();
        KbsHttpClient::new(&self.server.as_ref().unwrap().url(), &roots).unwrap()
    }

    /// auth → attest with `evidence`; the refusal's (status, type, detail).
    fn attest(&self, tee: TeeKind, evidence: Value) -> (u16, String, String) {
        let mut http = self.client();
        let mut kbs = KbsClient::new(tee, &mut ironclaw_broker::rng());
        let body = kbs.auth_request().unwrap();
        let r = http.request("POST", "/kbs/v0/auth", None, &body).unwrap();
        kbs.on_auth_response(r.status, r.set_cookie.as_deref(), &r.body)
            .unwrap();
        let body = kbs.attest_request(evidence).unwrap();
        let cookie = kbs.cookie_header();
        let r = http
            .request("POST", "/kbs/v0/attest", cookie.as_deref(), &body)
            .unwrap();
        match kbs.on_attest_response(r.status, &r.body) {
            Err(KbsClientError::Refused {
                status,
                error_type,
                detail,
                ..
            }) => (
                status,
                error_type
                    .trim_start_matches(ironclaw_broker::error::ERROR_TYPE_PREFIX)
                    .to_string(),
                detail,
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn last_refusal(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .rev()
            .find(|e| e["event"] == "refusal")
            .expect("a refusal line")
    }

    /// Attests and checks the refusal's type, the detail's substrings and the
    /// audit line (same type, same reason).
    fn expect(&self, tee: TeeKind, evidence: Value, want: (u16, &str), detail_has: &[&str]) {
        let (status, ty, detail) = self.attest(tee, evidence);
        eprintln!("{tee} → {status} {ty}: {detail}");
        assert_eq!((status, ty.as_str()), want, "{detail}");
        for s in detail_has {
            assert!(detail.contains(s), "detail lacks {s:?}: {detail}");
        }
        let audit = self.last_refusal();
        assert_eq!(audit["endpoint"], "attest");
        assert_eq!(audit["error"], want.1);
        assert_eq!(audit["tee"], tee.name());
        assert_eq!(audit["reason"].as_str(), Some(detail.as_str()), "{audit}");
    }
}

const SNP: TeeKind = TeeKind::Kbs(Tee::Snp);
const TDX: TeeKind = TeeKind::Kbs(Tee::Tdx);
const SGX: TeeKind = TeeKind::Kbs(Tee::Sgx);
const NITRO: TeeKind = TeeKind::Extra(ExtraTee::Nitro);

// ---- SEV-SNP in trustee's shape -------------------------------------------

/// trustee's SNP evidence exactly as the guest-components attester builds it: the
/// `sev` crate's `AttestationReport` and `CertTableEntry` through serde_json.
fn snp_trustee_evidence(report: &[u8], vcek: Option<&[u8]>) -> Value {
    #[derive(serde::Serialize)]
    struct SnpEvidence {
        attestation_report: sev::firmware::guest::AttestationReport,
        cert_chain: Option<Vec<sev::firmware::host::CertTableEntry>>,
    }
    let attestation_report = sev::firmware::guest::AttestationReport::from_bytes(report).unwrap();
    let cert_chain = vcek.map(|der| {
        vec![sev::firmware::host::CertTableEntry::new(
            sev::firmware::host::CertType::VCEK,
            der.to_vec(),
        )]
    });
    serde_json::to_value(SnpEvidence {
        attestation_report,
        cert_chain,
    })
    .unwrap()
}

#[test]
fn snp_reports_rebuilt_from_the_attesters_json_are_byte_identical() {
    let Some(dir) = fixtures("snp_reports_rebuilt_from_the_attesters_json_are_byte_identical")
    else {
        return;
    };
    for rel in [
        "sev-snp/trustee/vcek-report.bin",
        "sev-snp/trustee/vlek-report.bin",
        "sev-snp/go-sev-guest/attestation.bin",
        "sev-snp/trustee-azure/snp-report-milan.bin",
    ] {
        let raw = read(&dir, rel);
        let ev = snp_trustee_evidence(&raw, None);
        let rebuilt = trustee_evidence::snp_report_bytes(&ev["attestation_report"]).unwrap();
        assert_eq!(rebuilt, raw, "{rel}");
    }
    // The hex-text report of virtee/sev.
    let hex_text = String::from_utf8(read(&dir, "sev-snp/virtee-sev/report_milan.hex")).unwrap();
    let raw = hex::decode(hex_text.split_whitespace().collect::<String>()).unwrap();
    let ev = snp_trustee_evidence(&raw, None);
    assert_eq!(
        trustee_evidence::snp_report_bytes(&ev["attestation_report"]).unwrap(),
        raw
    );
}

#[test]
fn snp_trustee_evidence_verifies_then_fails_the_binding_or_the_signature_or_the_window() {
    let Some(dir) = fixtures("snp_trustee_evidence_verifies_then_fails_the_binding") else {
        return;
    };
    let report = read(&dir, "sev-snp/trustee/vcek-report.bin");
    let vcek = read(&dir, "sev-snp/trustee/vcek.der");
    let good = snp_trustee_evidence(&report, Some(&vcek));

    // Inside the VCEK's window (2023-01-24 → 2030-01-24).
    let env = Env::new(at("2025-06-01T00:00:00Z"), &[]);
    env.expect(
        SNP,
        good.clone(),
        (401, "ReportDataMismatch"),
        &[
            "the snp evidence verified",
            "CN=SEV-VCEK",
            "at 2025-06-01T00:00:00Z",
        ],
    );

    // One signed byte (MEASUREMENT[0]) changed: the signature fails first.
    let mut forged = good.clone();
    let m0 = forged["attestation_report"]["measurement"][0]
        .as_u64()
        .unwrap();
    forged["attestation_report"]["measurement"][0] = (m0 ^ 1).into();
    env.expect(
        SNP,
        forged,
        (401, "EvidenceRejected"),
        &["signature does not verify", "SEV-VCEK"],
    );

    // No VCEK in cert_chain: the broker cannot fetch it and says which is missing.
    env.expect(
        SNP,
        snp_trustee_evidence(&report, None),
        (401, "MalformedEvidence"),
        &["snp cert_chain", "signed by a VCEK", "no VCEK certificate"],
    );

    // A malformed field is named.
    let mut bad = good.clone();
    bad["attestation_report"]["report_data"] = json!([1, 2, 3]);
    env.expect(
        SNP,
        bad,
        (401, "MalformedEvidence"),
        &["snp attestation_report.report_data", "expected 64 bytes"],
    );
    drop(env);

    // After the VCEK expired.
    let env = Env::new(at("2031-01-01T00:00:00Z"), &[]);
    env.expect(
        SNP,
        good,
        (401, "EvidenceRejected"),
        &["SEV-VCEK", "expired at 2030-01-24"],
    );
}

// ---- Intel DCAP (TDX, SGX) in trustee's shape ---------------------------------

fn quote_evidence(quote: &[u8], tdx: bool) -> Value {
    if tdx {
        json!({"cc_eventlog": null, "quote": STANDARD.encode(quote)})
    } else {
        json!({"quote": STANDARD.encode(quote)})
    }
}

/// Flips one byte of the quote body (inside MRTD / MRENCLAVE: signed by the
/// attestation key).
fn flip_body_byte(quote: &[u8]) -> Vec<u8> {
    let mut q = quote.to_vec();
    // Header 48 bytes; SGX MRENCLAVE at body+64, TDX MRTD at body+136.
    let off = 48 + if q[4] == 0x81 { 136 } else { 64 };
    q[off] ^= 0x01;
    q
}

#[test]
fn tdx_trustee_evidence_with_operator_collateral() {
    let Some(dir) = fixtures("tdx_trustee_evidence_with_operator_collateral") else {
        return;
    };
    let quote = read(&dir, "tdx/dcap-qvl/tdx_quote.bin");
    let coll = read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json");
    let installed = [("b0c06f-tdx.json", coll)];

    // Inside the collateral window (PROVENANCE: eval 1751624191 → UpToDate).
    let env = Env::new(VerifyTime::from_unix(1_751_624_191), &installed);
    env.expect(
        TDX,
        quote_evidence(&quote, true),
        (401, "ReportDataMismatch"),
        &[
            "the tdx evidence verified",
            "Intel SGX PCK Certificate",
            "TCB UpToDate",
        ],
    );
    env.expect(
        TDX,
        quote_evidence(&flip_body_byte(&quote), true),
        (401, "EvidenceRejected"),
        &[
            "signature does not verify",
            "attestation key over header and body",
        ],
    );
    drop(env);

    // Without collateral the quote, QE report and PCK chain still verify; the
    // TCB is reported as not evaluated.
    let env = Env::new(VerifyTime::from_unix(1_751_624_191), &[]);
    env.expect(
        TDX,
        quote_evidence(&quote, true),
        (401, "ReportDataMismatch"),
        &[
            "the tdx evidence verified",
            "TCB NotEvaluated: no DCAP collateral for TDX FMSPC B0C06F000000",
            "(the directory does not exist)",
        ],
    );
    drop(env);

    // After the collateral's nextUpdate: named as expired.
    let env = Env::new(at("2025-08-01T00:00:00Z"), &installed);
    env.expect(
        TDX,
        quote_evidence(&quote, true),
        (401, "EvidenceRejected"),
        &["collateral", "expired: nextUpdate"],
    );
}

#[test]
fn tdx_trustee_quote_without_collateral_names_the_expired_pck_certificate() {
    let Some(dir) = fixtures("tdx_trustee_quote_without_collateral_names_the_expired_pck") else {
        return;
    };
    let quote = read(&dir, "tdx/trustee/tdx_quote_4.dat");
    let env = Env::new(at("2025-06-01T00:00:00Z"), &[]);
    env.expect(
        TDX,
        quote_evidence(&quote, true),
        (401, "ReportDataMismatch"),
        &["the tdx evidence verified", "TCB NotEvaluated"],
    );
    env.expect(
        TDX,
        quote_evidence(&flip_body_byte(&quote), true),
        (401, "EvidenceRejected"),
        &["signature does not verify"],
    );
    drop(env);
    // PCK chain 2023-02-07 → 2030-02-07.
    let env = Env::new(at("2031-01-01T00:00:00Z"), &[]);
    env.expect(
        TDX,
        quote_evidence(&quote, true),
        (401, "EvidenceRejected"),
        &["Intel SGX PCK Certificate", "expired at"],
    );
}

#[test]
fn sgx_trustee_evidence_with_operator_collateral() {
    let Some(dir) = fixtures("sgx_trustee_evidence_with_operator_collateral") else {
        return;
    };
    let quote = read(&dir, "sgx/dcap-qvl/sgx_quote.bin");
    let coll = read(&dir, "sgx/dcap-qvl/sgx_quote_collateral.json");
    // The TDX collateral is there too: it must not be picked for an SGX quote.
    let tdx_coll = read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json");
    let installed = [("sgx.json", coll), ("tdx.json", tdx_coll)];

    let env = Env::new(VerifyTime::from_unix(1_751_624_924), &installed);
    env.expect(
        SGX,
        quote_evidence(&quote, false),
        (401, "ReportDataMismatch"),
        &[
            "the sgx evidence verified",
            "TCB ConfigurationAndSWHardeningNeeded",
        ],
    );
    env.expect(
        SGX,
        quote_evidence(&flip_body_byte(&quote), false),
        (401, "EvidenceRejected"),
        &["signature does not verify"],
    );
    // A TDX quote announced as SGX is refused by the quote header.
    let tdx = read(&dir, "tdx/dcap-qvl/tdx_quote.bin");
    env.expect(
        SGX,
        quote_evidence(&tdx, false),
        (401, "MalformedEvidence"),
        &["tee_type says TDX"],
    );
    drop(env);

    let env = Env::new(at("2025-08-01T00:00:00Z"), &installed);
    env.expect(
        SGX,
        quote_evidence(&quote, false),
        (401, "EvidenceRejected"),
        &["collateral", "expired: nextUpdate"],
    );
    drop(env);

    // Occlum's quote (no collateral): PCK 2023-04-26 → 2030-04-26.
    // The SGX/TDX files installed are for other platforms: named as missing.
    let occlum = read(&dir, "sgx/trustee/occlum_quote.dat");
    let env = Env::new(at("2025-06-01T00:00:00Z"), &installed);
    env.expect(
        SGX,
        quote_evidence(&occlum, false),
        (401, "ReportDataMismatch"),
        &[
            "the sgx evidence verified",
            "TCB NotEvaluated: no DCAP collateral for SGX FMSPC 00606A000000",
        ],
    );
    drop(env);
    let env = Env::new(at("2031-01-01T00:00:00Z"), &[]);
    env.expect(
        SGX,
        quote_evidence(&occlum, false),
        (401, "EvidenceRejected"),
        &["Intel SGX PCK Certificate", "expired at"],
    );
}

#[test]
fn dcap_evidence_fields_are_named_when_malformed() {
    let env = Env::new(at("2025-06-01T00:00:00Z"), &[]);
    env.expect(
        TDX,
        json!({"quote": "not base64!"}),
        (401, "MalformedEvidence"),
        &["tdx quote", "not standard base64"],
    );
    env.expect(
        SGX,
        json!({"quote": ""}),
        (401, "MalformedEvidence"),
        &["sgx quote", "empty"],
    );
    env.expect(
        TDX,
        json!({"quote": STANDARD.encode([0u8; 64]), "cc_eventlog": 7}),
        (401, "MalformedEvidence"),
        &["tdx cc_eventlog"],
    );
}

// ---- AWS Nitro in the broker's wrapper ---------------------------------------

#[test]
fn nitro_document_verifies_then_fails_the_binding_or_the_signature_or_the_window() {
    let Some(dir) = fixtures("nitro_document_verifies_then_fails_the_binding") else {
        return;
    };
    let b64 = String::from_utf8(read(&dir, "nitro/blocky-nitrite/nitro_attestation.b64")).unwrap();
    let doc = STANDARD
        .decode(b64.split_whitespace().collect::<String>())
        .unwrap();
    let wrap = |d: &[u8]| json!({"evidence": STANDARD.encode(d)});

    // The document's own timestamp (leaf valid 14:37:36 → 17:37:39).
    let env = Env::new(at("2024-09-07T14:37:39Z"), &[]);
    env.expect(
        NITRO,
        wrap(&doc),
        (401, "ReportDataMismatch"),
        &["the nitro evidence verified", "user_data 01"],
    );
    // One byte of the signed payload changed: find the module_id text and alter it.
    let mut forged = doc.clone();
    let pos = forged
        .windows(9)
        .position(|w| w == b"module_id")
        .expect("module_id in the payload");
    forged[pos + 12] ^= 0x01;
    env.expect(
        NITRO,
        wrap(&forged),
        (401, "EvidenceRejected"),
        &["signature does not verify"],
    );
    drop(env);

    let env = Env::new(at("2024-09-08T00:00:00Z"), &[]);
    env.expect(
        NITRO,
        wrap(&doc),
        (401, "EvidenceRejected"),
        &["expired at"],
    );
}

// ---- Production default -----------------------------------------------------

#[test]
fn a_broker_without_an_injected_clock_verifies_at_the_wall_clock() {
    let Some(dir) = fixtures("a_broker_without_an_injected_clock_verifies_at_the_wall_clock")
    else {
        return;
    };
    // Both were authentic at their own time; at the wall clock (after 2025-12) the
    // Nitro leaf (3 h) and the TDX collateral (July 2025) have expired.
    let env = Env::with_clock(
        None,
        &[(
            "tdx.json",
            read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json"),
        )],
    );
    // The day the broker verifies on (a test starting just before midnight UTC
    // could see the next day: acceptable for a date this coarse).
    let today = VerifyTime::now().to_rfc3339()[..10].to_string();
    let b64 = String::from_utf8(read(&dir, "nitro/blocky-nitrite/nitro_attestation.b64")).unwrap();
    env.expect(
        NITRO,
        json!({"evidence": b64.split_whitespace().collect::<String>()}),
        (401, "EvidenceRejected"),
        &[
            "expired at 2024-09",
            &format!("(verification instant {today}"),
        ],
    );
    env.expect(
        TDX,
        quote_evidence(&read(&dir, "tdx/dcap-qvl/tdx_quote.bin"), true),
        (401, "EvidenceRejected"),
        &["collateral", "expired: nextUpdate 2025-07-19"],
    );
}
