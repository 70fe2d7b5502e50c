//! Real TLS handshakes on loopback sockets with a throwaway CA: who is
//! let in, with which role, and who is refused.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trilog_tls::test_ca::TestCa;
use trilog_tls::{server_name, tokio_io, Role, TlsIdentity};

/// A server of `server` identity on loopback that answers each client's
/// role as one byte line; returns its port.
async fn serve(server: Arc<TlsIdentity>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let id = server.clone();
            tokio::spawn(async move {
                if let Ok((mut tls, role)) = tokio_io::accept(&id, stream).await {
                    let _ = tls.write_all(role.name().as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}

async fn role_seen(client: &TlsIdentity, port: u16, name: &str) -> std::io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls =
        tokio_io::connect(client, tcp, server_name(name).expect("a name"), Role::Node).await?;
    let mut seen = String::new();
    tls.read_to_string(&mut seen).await?;
    Ok(seen)
}

#[tokio::test]
async fn members_get_their_role_and_strangers_are_refused() {
    let ca = TestCa::new("trilog test CA").expect("CA");
    let node = ca
        .identity("node", &["127.0.0.1", "localhost"])
        .expect("node");
    let port = serve(node.clone()).await;
    for ou in ["node", "producer", "reader"] {
        let client = ca.identity(ou, &[]).expect("client");
        assert_eq!(client.role(), Role::from_ou(ou).expect("a role"));
        let seen = role_seen(&client, port, "127.0.0.1").await.expect("let in");
        assert_eq!(seen, ou);
        let seen = role_seen(&client, port, "localhost")
            .await
            .expect("by name");
        assert_eq!(seen, ou);
    }
    // The server's certificate does not name this host.
    let producer = ca.identity("producer", &[]).expect("producer");
    assert!(role_seen(&producer, port, "trilog.invalid").await.is_err());
    // A client of another CA is refused, and refuses the server.
    let other = TestCa::new("another CA").expect("CA");
    let stranger = other.identity("producer", &[]).expect("stranger");
    assert!(role_seen(&stranger, port, "127.0.0.1").await.is_err());
    // A certificate of the right CA that names no role is no identity.
    let issued = ca.issue("dba", "x", &[]).expect("issue");
    let refused = TlsIdentity::from_pem(
        ca.ca_pem().into_bytes(),
        issued.cert_pem.into_bytes(),
        issued.key_pem.into_bytes(),
        None,
    )
    .expect_err("no role");
    assert!(
        refused.to_string().contains("no OU names a role"),
        "{refused}"
    );
    // Plaintext gets no byte of an answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    plain
        .write_all(b"hello in the clear\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.windows(4).any(|w| w == b"node" || w == b"read"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_reader_cannot_pose_as_a_node() {
    let ca = TestCa::new("trilog test CA").expect("CA");
    let impostor = ca.identity("reader", &["127.0.0.1"]).expect("reader");
    let port = serve(impostor).await;
    let producer = ca.identity("producer", &[]).expect("producer");
    let e = role_seen(&producer, port, "127.0.0.1")
        .await
        .expect_err("a reader's certificate is no node's");
    assert!(e.to_string().contains("role reader, not node"), "{e}");
}

#[test]
fn files_load_as_an_operator_gives_them() {
    let ca = TestCa::new("trilog test CA").expect("CA");
    let dir = tempfile_dir();
    let files = ca
        .write_files(&dir, "node-1", "node", &["10.0.0.1"])
        .expect("write");
    let id = TlsIdentity::load(&files).expect("load");
    assert_eq!(id.role(), Role::Node);
    let missing = trilog_tls::TlsFiles {
        key: dir.join("absent.key"),
        ..files
    };
    let e = TlsIdentity::load(&missing).expect_err("no key file");
    assert!(e.to_string().contains("absent.key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trilog-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}
