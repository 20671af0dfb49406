//! Administration: secrets and policy, while the broker runs or not.
//!
//! redb holds an exclusive lock on the store, so a second process cannot open it
//! while the broker runs. A running broker therefore listens on
//! `STATE/admin.sock` (a Unix socket, mode 0600 in the 0700 state directory:
//! only the broker's user can connect); the admin commands talk to it, and open
//! the store directly only when no broker answers. Through the socket a policy
//! change takes effect at once, without a restart. One JSON request per
//! connection, one JSON reply.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

use ironclaw_enclave::kbs_client::check_component;

use crate::policy::Policy;
use crate::statedir::StateDir;
use crate::store::Store;
use crate::{Broker, BrokerError};

/// Largest admin request.
pub const MAX_ADMIN_REQUEST: usize = 4 * 1024 * 1024;

/// An admin request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Store a secret.
    SecretPut {
        /// `repository/type/tag`.
        path: String,
        /// Value, base64.
        value_b64: String,
    },
    /// List secret paths.
    SecretList,
    /// Delete a secret.
    SecretDelete {
        /// `repository/type/tag`.
        path: String,
    },
    /// Replace the policy.
    PolicySet {
        /// The policy JSON.
        policy: serde_json::Value,
    },
    /// Show the policy.
    PolicyShow,
}

/// An admin reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminReply {
    /// Success.
    pub ok: bool,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Secret paths (list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Policy (show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Whether a secret existed (delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existed: Option<bool>,
}

fn fail(e: impl ToString) -> AdminReply {
    AdminReply {
        ok: false,
        error: Some(e.to_string()),
        ..Default::default()
    }
}

/// Checks a `repository/type/tag` secret path.
pub fn check_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() != 3 {
        return Err(format!("secret path {path:?} must be repository/type/tag"));
    }
    for c in parts {
        check_component(c).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Executes `req` on `store`; `on_policy` applies a new policy to a running broker.
pub fn execute(
    store: &Store,
    req: AdminRequest,
    on_policy: &dyn Fn(Policy) -> Result<(), String>,
) -> AdminReply {
    let ok = AdminReply {
        ok: true,
        ..Default::default()
    };
    match req {
        AdminRequest::SecretPut { path, value_b64 } => {
            if let Err(e) = check_path(&path) {
                return fail(e);
            }
            let value = match STANDARD.decode(value_b64) {
                Ok(v) => v,
                Err(e) => return fail(format!("value: not base64: {e}")),
            };
            match store.put_secret(&path, &value) {
                Ok(()) => ok,
                Err(e) => fail(e),
            }
        }
        AdminRequest::SecretList => match store.list_secrets() {
            Ok(s) => AdminReply {
                secrets: Some(s),
                ..ok
            },
            Err(e) => fail(e),
        },
        AdminRequest::SecretDelete { path } => match store.delete_secret(&path) {
            Ok(existed) => AdminReply {
                existed: Some(existed),
                ..ok
            },
            Err(e) => fail(e),
        },
        AdminRequest::PolicySet { policy } => {
            let p = match serde_json::to_vec(&policy)
                .map_err(|e| e.to_string())
                .and_then(|b| Policy::from_json(&b).map_err(|e| e.to_string()))
            {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            match on_policy(p) {
                Ok(()) => ok,
                Err(e) => fail(e),
            }
        }
        AdminRequest::PolicyShow => match store.policy() {
            Ok(p) => AdminReply {
                policy: Some(p),
                ..ok
            },
            Err(e) => fail(e),
        },
    }
}

/// Path of the admin socket.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("admin.sock")
}

fn serve_one(broker: &Broker, mut s: UnixStream) {
    let mut buf = Vec::new();
    let reply = match (&mut s)
        .take(MAX_ADMIN_REQUEST as u64 + 1)
        .read_to_end(&mut buf)
    {
        Err(e) => fail(e),
        Ok(_) if buf.len() > MAX_ADMIN_REQUEST => fail("request too large"),
        Ok(_) => match serde_json::from_slice::<AdminRequest>(&buf) {
            Err(e) => fail(format!("not an admin request: {e}")),
            Ok(req) => execute(broker.store(), req, &|p| {
                broker.set_policy(p).map_err(|e| e.to_string())
            }),
        },
    };
    let _ = s.write_all(&serde_json::to_vec(&reply).unwrap_or_default());
}

/// Binds the admin socket (replacing a stale one) and serves it on a thread
/// until `stop` is set (the thread checks after each connection).
pub fn spawn_admin_socket(
    broker: Arc<Broker>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<(PathBuf, UnixListener, std::thread::JoinHandle<()>)> {
    let path = socket_path(broker.state().root());
    if UnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{}: a broker is already running", path.display()),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let waker = listener.try_clone()?;
    let thread = std::thread::Builder::new()
        .name("kbs-admin".into())
        .spawn(move || {
            for s in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                serve_one(&broker, s);
            }
        })?;
    Ok((path, waker, thread))
}

/// Runs `req` against the broker state at `state`: through a running broker's
/// admin socket, or directly on the store when none runs.
pub fn call(state: &Path, req: AdminRequest) -> Result<AdminReply, BrokerError> {
    let sock = socket_path(state);
    if let Ok(mut s) = UnixStream::connect(&sock) {
        let err = |reason: String| BrokerError::Admin {
            path: sock.display().to_string(),
            reason,
        };
        s.write_all(&serde_json::to_vec(&req).unwrap_or_default())
            .map_err(|e| err(e.to_string()))?;
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| err(e.to_string()))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
        return serde_json::from_slice(&out).map_err(|e| err(format!("bad reply: {e}")));
    }
    let dir = StateDir::open(state)?;
    let store = crate::open_store(&dir)?;
    Ok(execute(&store, req, &|p| {
        store.set_policy(&p).map_err(|e| e.to_string())
    }))
}
