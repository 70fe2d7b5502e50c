//! TLS over tokio streams: the client's connections, the metadata
//! server, the node's repair and registration.

use std::io;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use trilog_protocol::access::Role;

use crate::identity::TlsIdentity;
use crate::role::peer_role;
use crate::HANDSHAKE_MS_MAX;

pub use tokio_rustls::client::TlsStream as ClientStream;
pub use tokio_rustls::server::TlsStream as ServerStream;

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("TLS handshake not done in {HANDSHAKE_MS_MAX} ms"),
    )
}

/// Accepts a TLS connection on `stream` and answers the client's role.
pub async fn accept<S>(id: &TlsIdentity, stream: S) -> io::Result<(ServerStream<S>, Role)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config());
    let tls = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_MS_MAX),
        acceptor.accept(stream),
    )
    .await
    .map_err(|_| timed_out())??;
    let role = peer_role(tls.get_ref().1.peer_certificates()).map_err(|e| e.into_io())?;
    Ok((tls, role))
}

/// Connects TLS over `stream` to the server named `name`, whose
/// certificate must name the role `expect`.
pub async fn connect<S>(
    id: &TlsIdentity,
    stream: S,
    name: ServerName<'static>,
    expect: Role,
) -> io::Result<ClientStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tokio_rustls::TlsConnector::from(id.client_config());
    let tls = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_MS_MAX),
        connector.connect(name, stream),
    )
    .await
    .map_err(|_| timed_out())??;
    let role = peer_role(tls.get_ref().1.peer_certificates()).map_err(|e| e.into_io())?;
    if role != expect {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the server's certificate names the role {role}, not {expect}"),
        ));
    }
    Ok(tls)
}
