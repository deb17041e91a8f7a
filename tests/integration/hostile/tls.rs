//! The TLS layer (`http::tls`): a client that never finishes its handshake is dropped after the
//! handshake timeout, junk that announces a huge handshake message fails the connection without
//! being buffered, and a client that rotates its keys mid-connection (TLS 1.3 `KeyUpdate`) keeps
//! being served. Another user's requests go on meanwhile.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The handshake timeout (3 s) and a margin for a busy machine.
const DROPPED_WITHIN: Duration = Duration::from_secs(10);

fn port(server: &TestServer) -> u16 {
    server.base_url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Read until the server closes the connection (EOF or reset); panics if it stays open.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream) {
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(DROPPED_WITHIN, async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let server = TestServer::start().await;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port(&server)))
        .await
        .unwrap();
    // Half a ClientHello header, then nothing.
    silent.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    closed_by_server(&mut silent).await;
    server
        .rest()
        .health()
        .await
        .expect("others are still served");
}

#[tokio::test]
async fn junk_announcing_a_huge_handshake_message_fails_the_connection() {
    let server = TestServer::start().await;
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port(&server)))
        .await
        .unwrap();
    // A handshake record announcing a 16 MiB ClientHello, then fragment after fragment of it:
    // the server must give up, not buffer it.
    let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    first.resize(5 + 0x4000, 0);
    let mut more = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    more.resize(5 + 0x4000, 0);
    let _ = junk.write_all(&first).await;
    for _ in 0..64 {
        if junk.write_all(&more).await.is_err() {
            break;
        }
    }
    closed_by_server(&mut junk).await;
    server
        .rest()
        .health()
        .await
        .expect("others are still served");
}

#[tokio::test]
async fn a_client_that_rotates_its_keys_keeps_being_served() {
    let server = TestServer::start().await;
    let mut tls = server.raw_tls().await;
    for round in 0..3 {
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("ok") {
            let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no answer"))
                .unwrap();
            assert!(n > 0, "round {round}: connection closed after {got:?}");
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "round {round}: {got:?}");
        // A KeyUpdate that asks the server to rotate its keys too.
        tls.get_mut().1.refresh_traffic_keys().unwrap();
    }
}
