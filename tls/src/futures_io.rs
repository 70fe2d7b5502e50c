//! TLS over futures-io streams: the node's shards (glommio). The caller
//! bounds the handshake with its own runtime's timer
//! ([`crate::HANDSHAKE_MS_MAX`]).

use std::io;

use futures_lite::{AsyncRead, AsyncWrite};
use trilog_protocol::access::Role;

use crate::identity::TlsIdentity;
use crate::role::peer_role;

pub use futures_rustls::server::TlsStream as ServerStream;

/// Accepts a TLS connection on `stream` and answers the client's role.
pub async fn accept<S>(id: &TlsIdentity, stream: S) -> io::Result<(ServerStream<S>, Role)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = futures_rustls::TlsAcceptor::from(id.server_config());
    let tls = acceptor.accept(stream).await?;
    let role = peer_role(tls.get_ref().1.peer_certificates()).map_err(|e| e.into_io())?;
    Ok((tls, role))
}
