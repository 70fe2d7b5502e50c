//! A member's TLS identity: the CA it trusts, its certificate chain and
//! key, and the rustls configurations built from them once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use trilog_protocol::access::Role;

use crate::error::TlsError;
use crate::role::role_of;

/// The three PEM files of `--tls-ca`, `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// PEM files above this size are refused: a CA bundle is kilobytes.
const PEM_BYTES_MAX: u64 = 1 << 20;

/// A loaded identity (see the module doc). Cheap to share behind an `Arc`.
pub struct TlsIdentity {
    role: Role,
    subject: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity")
            .field("role", &self.role)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > PEM_BYTES_MAX {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            why: format!("{len} bytes, more than a PEM file holds ({PEM_BYTES_MAX})"),
        });
    }
    std::fs::read(path).map_err(read)
}

impl TlsIdentity {
    /// Reads and checks the three files.
    pub fn load(files: &TlsFiles) -> Result<Arc<TlsIdentity>, TlsError> {
        let ca = read_pem("CA file", &files.ca)?;
        let cert = read_pem("certificate file", &files.cert)?;
        let key = read_pem("key file", &files.key)?;
        TlsIdentity::from_pem(ca, cert, key, Some(files))
    }

    /// An identity from PEM bytes (`files`, when known, names them in
    /// errors).
    pub fn from_pem(
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        files: Option<&TlsFiles>,
    ) -> Result<Arc<TlsIdentity>, TlsError> {
        let path = |f: fn(&TlsFiles) -> &PathBuf| {
            files
                .map(|x| f(x).clone())
                .unwrap_or_else(|| "<pem>".into())
        };
        let pem_err = |what, p: PathBuf| move |why: String| TlsError::Pem { what, path: p, why };
        let mut roots = RootCertStore::empty();
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err("CA file", path(|f| &f.ca))(e.to_string()))?;
        if cas.is_empty() {
            return Err(pem_err("CA file", path(|f| &f.ca))(
                "no certificate in it".into(),
            ));
        }
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| pem_err("CA file", path(|f| &f.ca))(e.to_string()))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err("certificate file", path(|f| &f.cert))(e.to_string()))?;
        let leaf = chain.first().ok_or_else(|| {
            pem_err("certificate file", path(|f| &f.cert))("no certificate in it".into())
        })?;
        let role = role_of(leaf)?;
        let subject = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_default();
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| pem_err("key file", path(|f| &f.key))(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        // No session tickets: connections are long-lived and pooled, and a
        // ticket arriving on an idle pooled connection would look like a
        // server that closed it (the pools probe idle sockets for bytes).
        server.send_tls13_tickets = 0;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        Ok(Arc::new(TlsIdentity {
            role,
            subject,
            server: Arc::new(server),
            client: Arc::new(client),
            ca_pem,
            cert_pem,
            key_pem,
        }))
    }

    /// The role this identity's certificate names.
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The PEM bytes of the CA, the certificate and the key (for clients
    /// that build their own TLS, such as etcd's).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }
}

/// The name a server's certificate must carry: a host name or an address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
}
