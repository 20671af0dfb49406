//! The KBS protocol endpoints (RCAR), independent of the transport.
//!
//! - `POST /kbs/v0/auth` (`Request`) → `Challenge` + `Set-Cookie: kbs-session-id`
//! - `POST /kbs/v0/attest` (`Attestation`, cookie) → `{"token": "<JWT>"}`
//! - `GET /kbs/v0/resource/<repository>/<type>/<tag>` (cookie, or
//!   `Authorization: Bearer <attestation token>`) → `Response` (JWE)
//!
//! Everything arriving here is untrusted network input.

use std::time::{SystemTime, UNIX_EPOCH};

use ironclaw_enclave::kbs_client::check_component;
use ironclaw_enclave::runtime_data::runtime_data_digest;
use ironclaw_enclave::tee::AuthRequest;
use kbs_types::{Attestation, Challenge};
use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::error::ApiError;
use crate::session::SessionState;
use crate::tee_key::{self, TeeKey};
use crate::token::TokenClaims;
use crate::Broker;

/// A transport-independent request.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Request target (path only).
    pub path: String,
    /// `kbs-session-id` cookie value.
    pub session: Option<String>,
    /// `Authorization` header value, as sent.
    pub authorization: Option<String>,
    /// Body.
    pub body: Vec<u8>,
    /// Peer address for the audit log.
    pub peer: Option<String>,
}

/// A transport-independent response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// `Set-Cookie` value.
    pub set_cookie: Option<String>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl ApiResponse {
    fn json(v: &impl serde::Serialize) -> Self {
        ApiResponse {
            status: 200,
            body: serde_json::to_vec(v).unwrap_or_default(),
            set_cookie: None,
            retry_after: None,
        }
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        ApiResponse {
            status: e.status(),
            body: e.body(),
            set_cookie: None,
            retry_after: e.retry_after(),
        }
    }
}

/// Largest `/auth` body.
pub const MAX_AUTH_BODY: usize = 64 * 1024;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Broker {
    /// Routes one request.
    pub fn handle(&self, req: &ApiRequest) -> ApiResponse {
        let path = req.path.split('?').next().unwrap_or("");
        let mut ev = AuditEvent {
            peer: req.peer.clone(),
            session: req.session.as_deref().map(crate::session::audit_ref),
            ..Default::default()
        };
        let result = match (req.method.as_str(), path) {
            ("GET", "/healthz") => return ApiResponse::json(&json!({"status": "ok"})),
            ("POST" | "DELETE", p) if p.starts_with("/kbs/v0/resource/") => {
                ev.endpoint = "admin";
                self.admin_resource(req, &p["/kbs/v0/resource/".len()..], &mut ev)
            }
            ("POST" | "GET", "/kbs/v0/resource-policy") => {
                ev.endpoint = "admin";
                self.admin_policy(req, &mut ev)
            }
            ("POST", "/kbs/v0/auth") => {
                ev.endpoint = "auth";
                self.auth(req, &mut ev)
            }
            ("POST", "/kbs/v0/attest") => {
                ev.endpoint = "attest";
                self.attest(req, &mut ev)
            }
            ("GET", p) if p.starts_with("/kbs/v0/resource/") => {
                ev.endpoint = "resource";
                self.resource(req, &p["/kbs/v0/resource/".len()..], &mut ev)
            }
            (_, "/kbs/v0/auth" | "/kbs/v0/attest") => {
                Err(ApiError::MethodNotAllowed(req.method.clone()))
            }
            (_, p) if p.starts_with("/kbs/v0/resource/") => {
                Err(ApiError::MethodNotAllowed(req.method.clone()))
            }
            (_, p) => Err(ApiError::NotFound(p.chars().take(200).collect())),
        };
        match result {
            Ok(resp) => resp,
            Err(e) => {
                if !ev.endpoint.is_empty() {
                    ev.event = "refusal";
                    ev.error = Some(e.name().into());
                    ev.reason = Some(e.to_string());
                    if e.after_authentication() {
                        self.audit.record(ev);
                    } else {
                        let peer = crate::session::PeerKey::of(req.peer.as_deref());
                        self.audit.record_unauthenticated(ev, peer);
                    }
                }
                e.into()
            }
        }
    }

    fn auth(&self, req: &ApiRequest, ev: &mut AuditEvent) -> Result<ApiResponse, ApiError> {
        if req.body.len() > MAX_AUTH_BODY {
            return Err(ApiError::PayloadTooLarge(req.body.len()));
        }
        let request: AuthRequest = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::InvalidRequest(format!("body is not a KBS Request: {e}")))?;
        ev.tee = Some(request.tee.name().into());
        if request.version != crate::error::SUPPORTED_VERSION {
            return Err(ApiError::UnsupportedVersion(
                request.version.chars().take(64).collect(),
            ));
        }
        let peer = crate::session::PeerKey::of(req.peer.as_deref());
        let (id, nonce) = self.sessions().create(request.tee, peer)?;
        ev.session = Some(crate::session::audit_ref(&id));
        ev.event = "challenge";
        self.audit.record_unauthenticated(ev.clone(), peer);
        let challenge = Challenge {
            nonce,
            extra_params: Value::Object(serde_json::Map::new()),
        };
        let mut resp = ApiResponse::json(&challenge);
        resp.set_cookie = Some(format!(
            "kbs-session-id={id}; Path=/kbs/v0; Max-Age={}; Secure; HttpOnly",
            self.session_ttl().as_secs()
        ));
        Ok(resp)
    }

    fn attest(&self, req: &ApiRequest, ev: &mut AuditEvent) -> Result<ApiResponse, ApiError> {
        let id = req.session.as_deref().ok_or(ApiError::MissingCookie)?;
        // Consume the nonce first, whatever the body holds: one attempt per challenge.
        let (tee, nonce) = {
            let mut sessions = self.sessions();
            let s = sessions.get_mut(id)?;
            ev.tee = Some(s.tee.name().into());
            match s.state {
                SessionState::Challenged => s.state = SessionState::Verifying,
                _ => return Err(ApiError::NonceReused),
            }
            (s.tee, s.nonce.clone())
        };
        let outcome = self.verify_attestation(&req.body, tee, &nonce, ev);
        let mut sessions = self.sessions();
        let s = sessions.get_mut(id)?;
        match outcome {
            Ok((claims, tee_pubkey, token)) => {
                ev.event = "attested";
                self.audit.record(ev.clone());
                s.state = SessionState::Attested {
                    claims: Box::new(claims),
                    tee_pubkey,
                };
                Ok(ApiResponse::json(&json!({ "token": token })))
            }
            Err(e) => {
                s.state = SessionState::Failed;
                Err(e)
            }
        }
    }

    fn verify_attestation(
        &self,
        body: &[u8],
        tee: ironclaw_enclave::tee::TeeKind,
        nonce: &str,
        ev: &mut AuditEvent,
    ) -> Result<(crate::evidence::Claims, TeeKey, String), ApiError> {
        let att: Attestation = serde_json::from_slice(body)
            .map_err(|e| ApiError::InvalidRequest(format!("body is not a KBS Attestation: {e}")))?;
        if att.runtime_data.nonce != nonce {
            return Err(ApiError::NonceMismatch);
        }
        let key = tee_key::parse(&att.runtime_data.tee_pubkey)?;
        if !att.tee_evidence.additional_evidence.is_empty() {
            return Err(ApiError::UnsupportedAdditionalEvidence(
                att.tee_evidence.additional_evidence.len(),
            ));
        }
        if let Some(init) = &att.init_data {
            return Err(ApiError::UnsupportedInitData {
                format: init.format.chars().take(32).collect(),
                len: init.body.len(),
            });
        }
        let digest = runtime_data_digest(
            nonce,
            &att.runtime_data.tee_pubkey,
            &att.tee_evidence.additional_evidence,
        );
        let policy = self.policy();
        let collateral = self.collateral_store();
        let env = crate::evidence::VerifyEnv {
            at: self.evidence_clock.now(),
            collateral: &collateral,
        };
        let claims = crate::evidence::verify(
            tee,
            &att.tee_evidence.primary_evidence,
            &digest,
            &policy,
            &env,
        )?;
        ev.measurement = claims.measurement.as_deref().map(hex::encode);
        policy
            .admits(&claims)
            .map_err(|d| ApiError::PolicyDeny(d.0))?;
        let tee_pubkey = serde_json::to_value(&att.runtime_data.tee_pubkey)
            .map_err(|e| ApiError::Internal(format!("tee-pubkey: {e}")))?;
        let token_claims = TokenClaims::new(
            &claims,
            tee_pubkey,
            unix_now(),
            self.session_ttl().as_secs(),
        );
        let token = crate::token::sign(&self.token_key, &token_claims);
        Ok((claims, key, token))
    }

    fn resource(
        &self,
        req: &ApiRequest,
        rest: &str,
        ev: &mut AuditEvent,
    ) -> Result<ApiResponse, ApiError> {
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != 3 {
            return Err(ApiError::InvalidPath(
                "resource path must be /kbs/v0/resource/<repository>/<type>/<tag>".into(),
            ));
        }
        for c in &parts {
            check_component(c).map_err(|e| ApiError::InvalidPath(e.to_string()))?;
        }
        let resource = parts.join("/");
        ev.resource = Some(resource.clone());
        // A Bearer attestation token (trustee clients) takes precedence over the
        // cookie: an invalid token is refused, never silently replaced by a session.
        let (claims, key) = match req.authorization.as_deref() {
            Some(header) => {
                ev.credential = Some("bearer");
                ev.session = None;
                self.claims_from_bearer(header, ev)?
            }
            None => {
                ev.credential = Some("cookie");
                let id = req.session.as_deref().ok_or(ApiError::MissingCookie)?;
                let mut sessions = self.sessions();
                let s = sessions.get_mut(id)?;
                ev.tee = Some(s.tee.name().into());
                match &s.state {
                    SessionState::Attested { claims, tee_pubkey } => {
                        ((**claims).clone(), tee_pubkey.clone())
                    }
                    _ => return Err(ApiError::NotAttested),
                }
            }
        };
        ev.measurement = claims.measurement.as_deref().map(hex::encode);
        self.policy()
            .grants(&claims, &resource)
            .map_err(|d| ApiError::ResourceNotGranted(d.0))?;
        let secret = self
            .store
            .get_secret(&resource)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::ResourceNotFound(resource.clone()))?;
        let jwe = key
            .encrypt(&secret, &mut crate::rng())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        ev.alg = Some(key.alg());
        ev.event = "release";
        self.audit.record(ev.clone());
        Ok(ApiResponse::json(&jwe))
    }

    /// Checks the admin token of `req` (trustee's Ed25519-signed JWT).
    fn admin_auth(&self, req: &ApiRequest, ev: &mut AuditEvent) -> Result<(), ApiError> {
        ev.credential = Some("admin");
        let header = req
            .authorization
            .as_deref()
            .ok_or(crate::admin_http::AdminAuthError::MissingToken)?;
        let token =
            bearer_token(header).map_err(|_| crate::admin_http::AdminAuthError::MissingToken)?;
        self.admin_keys.verify(token, unix_now())?;
        Ok(())
    }

    /// `POST` (set, the body is the value) or `DELETE` a resource.
    fn admin_resource(
        &self,
        req: &ApiRequest,
        rest: &str,
        ev: &mut AuditEvent,
    ) -> Result<ApiResponse, ApiError> {
        self.admin_auth(req, ev)?;
        crate::admin::check_path(rest).map_err(ApiError::InvalidPath)?;
        ev.resource = Some(rest.to_string());
        if req.method == "DELETE" {
            let existed = self
                .store
                .delete_secret(rest)
                .map_err(|e| ApiError::AdminFailed(e.to_string()))?;
            if !existed {
                return Err(ApiError::ResourceNotFound(rest.to_string()));
            }
            ev.event = "admin-resource-delete";
        } else {
            self.store
                .put_secret(rest, &req.body)
                .map_err(|e| ApiError::AdminFailed(e.to_string()))?;
            ev.event = "admin-resource-set";
        }
        self.audit.record(ev.clone());
        Ok(ApiResponse::json(&json!({})))
    }

    /// `POST` (`{"policy": base64 JSON policy}`) or `GET` the release policy.
    fn admin_policy(&self, req: &ApiRequest, ev: &mut AuditEvent) -> Result<ApiResponse, ApiError> {
        use base64::Engine;
        self.admin_auth(req, ev)?;
        if req.method == "GET" {
            let text = serde_json::to_vec(&self.policy())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            return Ok(ApiResponse::json(&json!({
                "policy": base64::engine::general_purpose::STANDARD.encode(text)
            })));
        }
        let value =
            crate::admin_http::policy_from_body(&req.body).map_err(ApiError::AdminFailed)?;
        let text = serde_json::to_vec(&value).map_err(|e| ApiError::Internal(e.to_string()))?;
        let policy = crate::policy::Policy::from_json(&text)
            .map_err(|e| ApiError::AdminFailed(format!("policy: {e}")))?;
        self.set_policy(policy)
            .map_err(|e| ApiError::AdminFailed(e.to_string()))?;
        ev.event = "admin-policy-set";
        self.audit.record(ev.clone());
        Ok(ApiResponse::json(&json!({})))
    }

    /// The claims and tee-pubkey of a Bearer attestation token: only what its
    /// signature (by this broker's token key) covers is used.
    fn claims_from_bearer(
        &self,
        header: &str,
        ev: &mut AuditEvent,
    ) -> Result<(crate::evidence::Claims, TeeKey), ApiError> {
        let token = bearer_token(header)?;
        let claims = crate::token::verify(self.token_key.verifying_key(), token, unix_now())?;
        let evidence = claims.evidence_claims()?;
        ev.tee = Some(evidence.tee.into());
        let key = tee_key::parse_json(&claims.tee_pubkey)
            .map_err(|e| ApiError::Token(crate::token::TokenError::Malformed(e.to_string())))?;
        Ok((evidence, key))
    }
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 2.1: the
/// scheme is case-insensitive, one or more spaces before the token).
pub fn bearer_token(header: &str) -> Result<&str, ApiError> {
    let bad = |why: &str| {
        ApiError::Token(crate::token::TokenError::Malformed(format!(
            "Authorization header: {why} (expected `Bearer <attestation token>`)"
        )))
    };
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("no credentials"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad(&format!(
            "scheme {:?} is not supported",
            scheme.chars().take(32).collect::<String>()
        )));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(bad("the token is empty or contains whitespace"));
    }
    Ok(token)
}
