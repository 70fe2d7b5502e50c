//! A certificate's role: the one OU of its subject that names a role.

use rustls_pki_types::CertificateDer;
use trilog_protocol::access::Role;

use crate::error::TlsError;

/// The role of the leaf certificate `cert`: its subject must carry exactly
/// one OU naming a role. A certificate without one, or with two, is no
/// member of the cluster.
pub fn role_of(cert: &CertificateDer<'_>) -> Result<Role, TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| TlsError::Role {
            subject: "?".into(),
            why: format!("does not parse: {e}"),
        })?;
    let subject = parsed.subject().to_string();
    let mut roles = Vec::new();
    for ou in parsed.subject().iter_organizational_unit() {
        if let Some(role) = ou.as_str().ok().and_then(Role::from_ou) {
            roles.push(role);
        }
    }
    match roles.as_slice() {
        [one] => Ok(*one),
        [] => Err(TlsError::Role {
            subject,
            why: "no OU names a role (node, producer or reader)".into(),
        }),
        _ => Err(TlsError::Role {
            subject,
            why: "more than one OU names a role".into(),
        }),
    }
}

/// The role of a peer from the chain it presented (the leaf first).
pub(crate) fn peer_role(chain: Option<&[CertificateDer<'_>]>) -> Result<Role, TlsError> {
    let leaf = chain
        .and_then(|c| c.first())
        .ok_or(TlsError::NoCertificate)?;
    role_of(leaf)
}
