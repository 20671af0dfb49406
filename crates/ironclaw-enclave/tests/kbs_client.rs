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

#[test]
fn max_age_and_session_gone_classification() {
    use ironclaw_enclave::kbs_client::max_age_from_set_cookie;
    assert_eq!(
        max_age_from_set_cookie("kbs-session-id=a; Path=/kbs/v0; Max-Age=300; Secure"),
        Some(300)
    );
    assert_eq!(
        max_age_from_set_cookie("kbs-session-id=a; max-age = 7"),
        Some(7)
    );
    assert_eq!(
        max_age_from_set_cookie("kbs-session-id=a; Max-Age=-5"),
        Some(0)
    );
    assert_eq!(
        max_age_from_set_cookie("kbs-session-id=a; Max-Age=0"),
        Some(0)
    );
    assert_eq!(
        max_age_from_set_cookie("kbs-session-id=a; Max-Age=99999999999999999999999"),
        Some(u64::MAX)
    );
    // Not an attribute: the cookie's own name/value pair is skipped.
    assert_eq!(max_age_from_set_cookie("Max-Age=5"), None);
    for bad in [
        "Max-Age=",
        "Max-Age=1x",
        "Max-Age=-",
        "Max-Age=+3",
        "Path=/",
    ] {
        assert_eq!(
            max_age_from_set_cookie(&format!("c=v; {bad}")),
            None,
            "{bad}"
        );
    }

    let refusal = |status, ty: &str| KbsClientError::Refused {
        step: "resource",
        status,
        error_type: ty.into(),
        detail: String::new(),
    };
    assert!(refusal(401, "urn:ironclaw:kbs:error:SessionExpired").is_session_gone());
    assert!(refusal(401, "urn:ironclaw:kbs:error:UnknownSession").is_session_gone());
    assert!(refusal(
        401,
        "https://github.com/confidential-containers/kbs/errors/ExpiredCookie"
    )
    .is_session_gone());
    assert!(!refusal(403, "urn:ironclaw:kbs:error:SessionExpired").is_session_gone());
    assert!(!refusal(401, "urn:ironclaw:kbs:error:NotAttested").is_session_gone());
    assert!(!refusal(401, "urn:ironclaw:kbs:error:EvidenceRejected").is_session_gone());
    assert!(!refusal(401, "").is_session_gone());
    assert!(!KbsClientError::NoSession.is_session_gone());
}

/// A broker stand-in behind a relay: answers auth, attest and resource requests
/// like the real one (fresh session ids, JWE to the attested key), counts every
/// request, and can be told to answer the next resource requests with a refusal.
mod fake {
    use std::collections::{HashMap, VecDeque};

    use getrandom::SysRng;
    use ironclaw_enclave::jwe;
    use ironclaw_enclave::kbs_session::{KbsIo, Method, Reply};
    use ironclaw_enclave::runtime_data::REPORT_DATA_LEN;
    use kbs_types::Attestation;
    use rand_core::UnwrapErr;

    #[derive(Default)]
    pub(crate) struct Broker {
        pub auths: usize,
        pub attests: usize,
        pub resources: usize,
        pub evidence_calls: usize,
        /// Answers (status, body) for the next resource requests, before any JWE.
        pub refuse_next: VecDeque<(u16, &'static str)>,
        /// Max-Age announced in the auth reply.
        pub max_age: Option<u64>,
        /// The clock the enclave sees (ms).
        pub now: Option<u64>,
        /// session id -> attested key.
        sessions: HashMap<String, Option<p256::PublicKey>>,
        /// Cookies the resource requests carried, in order.
        pub resource_cookies: Vec<String>,
        pub secrets: HashMap<String, Vec<u8>>,
        pub fail_relay: bool,
    }

    pub(crate) fn expired() -> (u16, &'static str) {
        (
            401,
            r#"{"type":"urn:ironclaw:kbs:error:SessionExpired","detail":"session expired"}"#,
        )
    }

    fn session_of(cookie: Option<&str>) -> String {
        cookie
            .and_then(ironclaw_enclave::kbs_client::session_from_cookie_header)
            .unwrap_or_default()
            .to_string()
    }

    impl KbsIo for Broker {
        type Error = &'static str;

        fn request(
            &mut self,
            method: Method,
            path: &str,
            cookie: Option<&str>,
            body: &[u8],
        ) -> Result<Reply, &'static str> {
            if self.fail_relay {
                return Err("relay down");
            }
            match (method, path) {
                (Method::Post, "/kbs/v0/auth") => {
                    assert!(cookie.is_none());
                    self.auths += 1;
                    let id = format!("s{}", self.auths);
                    self.sessions.insert(id.clone(), None);
                    let mut set_cookie = format!("kbs-session-id={id}; Path=/kbs/v0");
                    if let Some(m) = self.max_age {
                        set_cookie.push_str(&format!("; Max-Age={m}"));
                    }
                    Ok(Reply {
                        status: 200,
                        set_cookie: Some(set_cookie),
                        body: format!(r#"{{"nonce":"n{}","extra-params":{{}}}}"#, self.auths)
                            .into_bytes(),
                    })
                }
                (Method::Post, "/kbs/v0/attest") => {
                    self.attests += 1;
                    let id = session_of(cookie);
                    let att: Attestation = serde_json::from_slice(body).unwrap();
                    assert_eq!(att.runtime_data.nonce, format!("n{}", &id[1..]));
                    let key = jwe::parse_tee_pubkey(&att.runtime_data.tee_pubkey).unwrap();
                    *self.sessions.get_mut(&id).unwrap() = Some(key);
                    Ok(Reply {
                        status: 200,
                        set_cookie: None,
                        body: br#"{"token":"t.o.k"}"#.to_vec(),
                    })
                }
                (Method::Get, p) => {
                    self.resources += 1;
                    let id = session_of(cookie);
                    self.resource_cookies.push(id.clone());
                    if let Some((status, body)) = self.refuse_next.pop_front() {
                        return Ok(Reply {
                            status,
                            set_cookie: None,
                            body: body.as_bytes().to_vec(),
                        });
                    }
                    let key = self.sessions.get(&id).copied().flatten().unwrap();
                    let name = p.strip_prefix("/kbs/v0/resource/").unwrap();
                    let Some(secret) = self.secrets.get(name) else {
                        return Ok(Reply {
                            status: 404,
                            set_cookie: None,
                            body: br#"{"type":"urn:ironclaw:kbs:error:ResourceNotFound","detail":"x"}"#.to_vec(),
                        });
                    };
                    let resp = jwe::encrypt(&key, secret, &mut UnwrapErr(SysRng)).unwrap();
                    Ok(Reply {
                        status: 200,
                        set_cookie: None,
                        body: serde_json::to_vec(&resp).unwrap(),
                    })
                }
                other => panic!("unexpected request {other:?}"),
            }
        }

        fn evidence(
            &mut self,
            _report_data: &[u8; REPORT_DATA_LEN],
        ) -> Result<serde_json::Value, &'static str> {
            self.evidence_calls += 1;
            Ok(serde_json::json!({"sample": true}))
        }

        fn now_ms(&self) -> Option<u64> {
            self.now
        }
    }

    pub(crate) fn with_secrets() -> Broker {
        let mut b = Broker::default();
        b.secrets.insert("default/key/a".into(), b"alpha".to_vec());
        b.secrets.insert("default/key/b".into(), b"bravo".to_vec());
        b
    }
}

use ironclaw_enclave::kbs_session::{KbsSession, SessionError};

#[test]
fn two_secrets_share_one_attested_session() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    let mut s = KbsSession::new(TeeKind::KVM);
    let a = s
        .get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    let b = s
        .get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap();
    assert_eq!((a.as_slice(), b.as_slice()), (&b"alpha"[..], &b"bravo"[..]));
    assert_eq!(
        (
            broker.auths,
            broker.evidence_calls,
            broker.attests,
            broker.resources
        ),
        (1, 1, 1, 2)
    );
    assert_eq!(broker.resource_cookies, ["s1", "s1"]);
    assert_eq!(s.stats().handshakes, 1);
    assert_eq!(s.stats().resource_requests, 2);
}

#[test]
fn an_expired_session_is_renewed_once_and_the_read_succeeds() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    let mut s = KbsSession::new(TeeKind::KVM);
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    broker.refuse_next.push_back(fake::expired());
    let b = s
        .get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap();
    assert_eq!(b, b"bravo");
    assert_eq!((broker.auths, broker.attests, broker.resources), (2, 2, 3));
    // The retry went out on the new session (and was decrypted with its new key).
    assert_eq!(broker.resource_cookies, ["s1", "s1", "s2"]);
    assert_eq!(s.session_id(), Some("s2"));

    // An unknown session (the broker forgot it, e.g. a restart) is handled the same way.
    broker.refuse_next.push_back((
        401,
        r#"{"type":"urn:ironclaw:kbs:error:UnknownSession","detail":"unknown session"}"#,
    ));
    assert_eq!(
        s.get_resource(&mut broker, &mut rng, "default", "key", "a")
            .unwrap(),
        b"alpha"
    );
    assert_eq!((broker.auths, broker.attests, broker.resources), (3, 3, 5));
}

#[test]
fn a_second_expired_answer_after_renewal_is_an_error_not_a_loop() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    let mut s = KbsSession::new(TeeKind::KVM);
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    for _ in 0..5 {
        broker.refuse_next.push_back(fake::expired());
    }
    let err = s
        .get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Kbs(e @ KbsClientError::Refused { status: 401, .. }) if e.is_session_gone()),
        "{err:?}"
    );
    assert_eq!((broker.auths, broker.attests, broker.resources), (2, 2, 3));
    // The dead session is not kept: the next call starts with a handshake.
    assert_eq!(s.session_id(), None);

    // A session the broker calls gone right after it was made in the same call: no second handshake.
    let mut broker = fake::with_secrets();
    let mut s = KbsSession::new(TeeKind::KVM);
    broker.refuse_next.push_back(fake::expired());
    assert!(s
        .get_resource(&mut broker, &mut rng, "default", "key", "a")
        .is_err());
    assert_eq!((broker.auths, broker.resources), (1, 1));
}

#[test]
fn other_refusals_are_returned_and_the_session_is_kept() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    let mut s = KbsSession::new(TeeKind::KVM);
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    broker.refuse_next.push_back((
        403,
        r#"{"type":"urn:ironclaw:kbs:error:ResourceNotGranted","detail":"no rule"}"#,
    ));
    let err = s
        .get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Kbs(KbsClientError::Refused { status: 403, error_type, .. }) if error_type.ends_with("ResourceNotGranted")),
        "{err:?}"
    );
    // 404 from the real path (no such secret).
    let err = s
        .get_resource(&mut broker, &mut rng, "default", "key", "missing")
        .unwrap_err();
    assert!(matches!(
        err,
        SessionError::Kbs(KbsClientError::Refused { status: 404, .. })
    ));
    // A tampered JWE is a protocol error, not a reason to re-attest.
    broker.refuse_next.push_back((200, r#"{"protected":"x"}"#));
    assert!(matches!(
        s.get_resource(&mut broker, &mut rng, "default", "key", "b"),
        Err(SessionError::Kbs(KbsClientError::Jwe(_)))
    ));
    // A bad path never reaches the relay.
    assert!(matches!(
        s.get_resource(&mut broker, &mut rng, "default", "..", "b"),
        Err(SessionError::Kbs(KbsClientError::BadPath { .. }))
    ));
    assert_eq!(
        s.get_resource(&mut broker, &mut rng, "default", "key", "b")
            .unwrap(),
        b"bravo"
    );
    assert_eq!((broker.auths, broker.attests, broker.resources), (1, 1, 5));
    assert_eq!(broker.resource_cookies, ["s1"; 5]);
}

#[test]
fn the_announced_expiry_is_honoured_without_asking_the_broker() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    broker.max_age = Some(2);
    broker.now = Some(10_000);
    let mut s = KbsSession::new(TeeKind::KVM);
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    broker.now = Some(11_999);
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    assert_eq!((broker.auths, broker.resources), (1, 2));
    // 2 s after the auth request: a new session, and no request on the old one.
    broker.now = Some(12_000);
    s.get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap();
    assert_eq!((broker.auths, broker.attests, broker.resources), (2, 2, 3));
    assert_eq!(broker.resource_cookies, ["s1", "s1", "s2"]);

    // Without a clock the expiry cannot be judged: the session is used until refused.
    broker.now = None;
    broker.refuse_next.push_back(fake::expired());
    s.get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap();
    assert_eq!((broker.auths, broker.resources), (3, 5));
}

#[test]
fn a_failed_handshake_or_relay_leaves_no_half_session() {
    let mut rng = UnwrapErr(SysRng);
    let mut broker = fake::with_secrets();
    broker.fail_relay = true;
    let mut s = KbsSession::new(TeeKind::KVM);
    assert!(matches!(
        s.get_resource(&mut broker, &mut rng, "default", "key", "a"),
        Err(SessionError::Io("relay down"))
    ));
    assert_eq!(s.session_id(), None);
    broker.fail_relay = false;
    s.get_resource(&mut broker, &mut rng, "default", "key", "a")
        .unwrap();
    // A relay failure on a resource request keeps the (still valid) session.
    broker.fail_relay = true;
    assert!(s
        .get_resource(&mut broker, &mut rng, "default", "key", "b")
        .is_err());
    broker.fail_relay = false;
    s.get_resource(&mut broker, &mut rng, "default", "key", "b")
        .unwrap();
    assert_eq!((broker.auths, broker.attests), (1, 1));
}
