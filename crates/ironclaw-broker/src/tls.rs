//! TLS material: a given certificate/key pair, or a self-signed one made on first
//! start (rcgen, ECDSA P-256) for `localhost` and `127.0.0.1` and kept in the
//! state directory. Clients pin that certificate (`STATE/tls.crt`).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::statedir::{read_secret_file, StateDir, StateError};

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// File access.
    #[error(transparent)]
    State(#[from] StateError),
    /// PEM content.
    #[error("{path}: {reason}")]
    Pem {
        /// File.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation.
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl From<ironclaw_kbs_client::TlsError> for TlsError {
    fn from(e: ironclaw_kbs_client::TlsError) -> Self {
        match e {
            ironclaw_kbs_client::TlsError::Pem { path, reason } => TlsError::Pem { path, reason },
            ironclaw_kbs_client::TlsError::Config(c) => TlsError::Config(c),
        }
    }
}

/// Reads every certificate of a PEM file (the KBS client's loader: one parser for both sides).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    ironclaw_kbs_client::load_certs(path).map_err(TlsError::from)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_secret_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The server configuration: `cert`/`key` if given, else `STATE/tls.crt` +
/// `STATE/tls.key`, generated on first start.
pub fn server_config(
    state: &StateDir,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => {
            let (c, k) = (state.path("tls.crt"), state.path("tls.key"));
            if !c.exists() || !k.exists() {
                let ck = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                ])
                .map_err(|e| TlsError::Generate(e.to_string()))?;
                let _ = std::fs::remove_file(&k);
                state.load_or_create("tls.key", || ck.signing_key.serialize_pem().into_bytes())?;
                std::fs::write(&c, ck.cert.pem()).map_err(|e| {
                    TlsError::State(StateError::Io {
                        path: c.clone(),
                        source: e,
                    })
                })?;
            }
            (c, k)
        }
    };
    let certs = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}
