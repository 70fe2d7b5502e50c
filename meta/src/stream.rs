//! A connection to the embedded store: plain TCP, or mutual TLS over it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use trilog_protocol::access::Role;
use trilog_tls::tokio_io::ClientStream;
use trilog_tls::TlsIdentity;

use crate::addr::HostPort;

/// See the module doc.
#[derive(Debug)]
pub enum MetaStream {
    Plain(TcpStream),
    Tls(Box<ClientStream<TcpStream>>),
}

impl MetaStream {
    /// Connects to `addr` (a name resolved now), with TLS when `tls` is
    /// given: the store's certificate must be a node's, valid for the
    /// host as written.
    pub async fn dial(addr: &HostPort, tls: Option<&TlsIdentity>) -> io::Result<MetaStream> {
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port)).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(MetaStream::Plain(tcp));
        };
        let name = trilog_tls::server_name(&addr.host).map_err(|e| e.into_io())?;
        let secured = trilog_tls::tokio_io::connect(tls, tcp, name, Role::Node).await?;
        Ok(MetaStream::Tls(Box::new(secured)))
    }

    /// The TCP socket under it (to probe an idle connection).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MetaStream::Plain(s) => s,
            MetaStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for MetaStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MetaStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MetaStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MetaStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MetaStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MetaStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MetaStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MetaStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MetaStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MetaStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
