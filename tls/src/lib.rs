//! trilog-tls: mutual TLS on every port of a cluster.
//!
//! One CA signs every certificate; each certificate's subject OU names its
//! role (`node`, `producer` or `reader`, see
//! [`trilog_protocol::access`]). With TLS configured, a server accepts only
//! TLS connections whose client presents a certificate that CA signed and
//! that names a role; a client accepts only a server whose certificate
//! the CA signed, is valid for the host it dialled, and names the role it
//! expects (a node, for node ports and the embedded metadata store), so a
//! reader's certificate cannot pose as a node.
//!
//! Guarantees: no plaintext byte is exchanged on a TLS port; a peer
//! without a certificate of the CA, or with one naming no role or several,
//! is refused during the handshake, before any request is read.

mod error;
#[cfg(feature = "futures")]
pub mod futures_io;
mod identity;
mod role;
#[cfg(feature = "test-ca")]
pub mod test_ca;
#[cfg(feature = "tokio")]
pub mod tokio_io;

pub use error::TlsError;
pub use identity::{server_name, TlsFiles, TlsIdentity};
pub use role::role_of;
pub use rustls_pki_types::ServerName;
pub use trilog_protocol::access::Role;

/// How long a TLS handshake may take before the connection is dropped: a
/// peer that opens a connection and stalls holds nothing for longer.
pub const HANDSHAKE_MS_MAX: u64 = 10_000;
