//! The sans-IO client driven against a scripted broker.

use getrandom::SysRng;
use ironclaw_enclave::{
    jwe,
    kbs_client::{resource_path, session_from_cookie_header, KbsClient, KbsClientError},
    runtime_data,
    tee::{AuthRequest, TeeKind},
};
use kbs_types::Attestation;
use rand_core::UnwrapErr;

#[test]
fn full_exchange_binds_nonce_and_key_and_decrypts() {
    let mut rng = UnwrapErr(SysRng);
    let mut c = KbsClient::new(TeeKind::KVM, &mut rng);
    let req: AuthRequest = serde_json::from_slice(&c.auth_request().unwrap()).unwrap();
    assert_eq!(req.tee, TeeKind::KVM);

    let rd = c
        .on_auth_response(
            200,
            Some("kbs-session-id=abc123; Path=/; HttpOnly"),
            br#"{"nonce":"N1","extra-params":{}}"#,
        )
        .unwrap();
    assert_eq!(c.session(), Some("abc123"));
    assert_eq!(rd, runtime_data::report_data("N1", c.tee_pubkey(), ""));

    let body = c.attest_request(serde_json::json!({"x": 1})).unwrap();
    let att: Attestation = serde_json::from_slice(&body).unwrap();
    assert_eq!(att.runtime_data.nonce, "N1");
    assert_eq!(
        serde_json::to_value(&att.runtime_data.tee_pubkey).unwrap(),
        serde_json::to_value(c.tee_pubkey()).unwrap()
    );
    // Out of order: a resource before the token.
    assert!(matches!(
        c.on_resource_response(200, b"{}"),
        Err(KbsClientError::OutOfOrder { .. })
    ));
    c.on_attest_response(200, br#"{"token":"t.o.k"}"#).unwrap();
    assert_eq!(c.token(), Some("t.o.k"));

    let recipient = jwe::parse_tee_pubkey(c.tee_pubkey()).unwrap();
    let resp = jwe::encrypt(&recipient, b"s3cr3t", &mut rng).unwrap();
    let out = c
        .on_resource_response(200, &serde_json::to_vec(&resp).unwrap())
        .unwrap();
    assert_eq!(out, b"s3cr3t");
}

#[test]
fn refusals_and_garbage_are_reported() {
    let mut rng = UnwrapErr(SysRng);
    let mut c = KbsClient::new(TeeKind::SAMPLE, &mut rng);
    c.auth_request().unwrap();
    let err = c
        .on_auth_response(401, None, br#"{"type":"PolicyDeny","detail":"no"}"#)
        .unwrap_err();
    assert!(
        matches!(err, KbsClientError::Refused { status: 401, ref error_type, .. } if error_type == "PolicyDeny")
    );

    let mut c = KbsClient::new(TeeKind::SAMPLE, &mut rng);
    c.auth_request().unwrap();
    assert_eq!(
        c.on_auth_response(200, None, b"{}").unwrap_err(),
        KbsClientError::NoSession
    );

    let mut c = KbsClient::new(TeeKind::SAMPLE, &mut rng);
    c.auth_request().unwrap();
    let err = c
        .on_auth_response(200, Some("kbs-session-id=a"), b"\xff\x00")
        .unwrap_err();
    assert!(matches!(err, KbsClientError::BadReply { step: "auth", .. }));
}

#[test]
fn cookie_and_path_parsing() {
    assert_eq!(
        session_from_cookie_header("a=b; kbs-session-id=xyz"),
        Some("xyz")
    );
    assert_eq!(session_from_cookie_header("kbs-session-id="), None);
    assert_eq!(session_from_cookie_header("other=1"), None);
    assert_eq!(
        resource_path("default", "key", "k1").unwrap(),
        "/kbs/v0/resource/default/key/k1"
    );
    assert!(resource_path("..", "key", "k1").is_err());
    assert!(resource_path("a/b", "key", "k1").is_err());
    assert!(resource_path("a", "", "k1").is_err());
}
