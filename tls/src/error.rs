//! Why TLS material or a peer was refused.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {why}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("certificate of {subject}: {why}")]
    Role { subject: String, why: String },
    #[error("no certificate presented")]
    NoCertificate,
    #[error("{0:?} is not a host name or an address a certificate can name")]
    ServerName(String),
}

impl TlsError {
    /// As an I/O error of a handshake: the peer is refused.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, self.to_string())
    }
}
