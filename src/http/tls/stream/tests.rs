//! The stream against a tokio-rustls client over in-memory pipes.

use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    crate::tls::install_crypto_provider();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A server stream and a tokio-rustls client over `size`-byte pipes, both handshaken.
async fn pair(
    size: usize,
) -> (
    TlsStream<DuplexStream>,
    tokio_rustls::client::TlsStream<DuplexStream>,
) {
    let (server, client) = configs();
    let (a, b) = duplex(size);
    let mut tls = TlsStream::new(a, server).unwrap();
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    let (accepted, connected) = tokio::join!(
        std::future::poll_fn(|cx| tls.poll_handshake(cx)),
        connector.connect(name, b)
    );
    accepted.unwrap();
    (tls, connected.unwrap())
}

fn holds_nothing(tls: &TlsStream<DuplexStream>) -> bool {
    tls.incoming.capacity() == 0 && tls.plaintext.capacity() == 0 && tls.outgoing.capacity() == 0
}

#[tokio::test]
async fn data_flows_both_ways_and_an_idle_stream_keeps_no_buffer() {
    let (mut server, mut client) = pair(64 * 1024).await;
    client.write_all(b"hello server").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 12];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello server");

    let big = vec![7u8; 200 * 1024];
    let (written, read) = tokio::join!(
        async {
            server.write_all(&big).await.unwrap();
            server.flush().await.unwrap();
        },
        async {
            let mut back = vec![0u8; big.len()];
            client.read_exact(&mut back).await.unwrap();
            back
        }
    );
    let () = written;
    assert_eq!(read, big);
    assert!(holds_nothing(&server), "an idle stream still holds buffers");
}

#[tokio::test]
async fn records_cut_into_single_bytes_are_reassembled() {
    // A one-byte pipe: every record reaches the server a byte per read.
    let (mut server, mut client) = pair(1).await;
    let message = vec![42u8; 5000];
    let (_, got) = tokio::join!(
        async {
            client.write_all(&message).await.unwrap();
            client.flush().await.unwrap();
        },
        async {
            let mut got = vec![0u8; message.len()];
            server.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert_eq!(got, message);
    // The session tickets and an answer, through the same one-byte pipe.
    let (_, answer) = tokio::join!(
        async {
            server.write_all(b"ok").await.unwrap();
            server.flush().await.unwrap();
        },
        async {
            let mut answer = [0u8; 2];
            client.read_exact(&mut answer).await.unwrap();
            answer
        }
    );
    assert_eq!(&answer, b"ok");
    assert!(holds_nothing(&server));
}

#[tokio::test]
async fn close_notify_ends_the_stream_in_both_directions() {
    let (mut server, mut client) = pair(64 * 1024).await;
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test]
async fn junk_fails_the_handshake_and_a_flood_is_not_buffered() {
    let (server, _) = configs();
    let (a, mut b) = duplex(256 * 1024);
    let mut tls = TlsStream::new(a, server).unwrap();
    // A handshake record header that announces a huge message, then endless fragments.
    let mut junk = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    junk.resize(0x4005, 0);
    let writer = tokio::spawn(async move {
        for _ in 0..16 {
            if b.write_all(&junk).await.is_err() {
                break;
            }
        }
        b
    });
    let err = std::future::poll_fn(|cx| tls.poll_handshake(cx))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(tls.incoming.len() <= MAX_INCOMING + READ_SIZE);
    drop(tls);
    let _ = writer.await;
}
