//! The TLS layer (`http::tls`): a client that never finishes its handshake is dropped after the
//! handshake timeout, junk that announces a huge handshake message closes the connection at once,
//! and a client that rotates its keys mid-connection (TLS 1.3 `KeyUpdate`) keeps being served.
//! Another user's requests go on meanwhile.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The handshake timeout (3 s) and a margin for a busy machine.
const DROPPED_WITHIN: Duration = Duration::from_secs(10);

/// A plain TCP connection to the server's TLS listener, for bytes written by hand.
async fn tcp(server: &TestServer) -> tokio::net::TcpStream {
    let port: u16 = server.base_url.rsplit(':').next().unwrap().parse().unwrap();
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap()
}

/// Read until the server closes the connection (EOF or reset); panics if it stays open. Then
/// checks that another client is still served.
async fn dropped_while_others_are_served(server: &TestServer, tcp: &mut tokio::net::TcpStream) {
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
    server
        .rest()
        .health()
        .await
        .expect("others are still served");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let server = TestServer::start().await;
    let mut silent = tcp(&server).await;
    // Half a ClientHello header, then nothing.
    silent.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    dropped_while_others_are_served(&server, &mut silent).await;
}

#[tokio::test]
async fn junk_announcing_a_huge_handshake_message_fails_the_connection() {
    let server = TestServer::start().await;
    let mut junk = tcp(&server).await;
    // A handshake record announcing a 16 MiB ClientHello, then fragment after fragment of it.
    // rustls refuses a handshake message that large, and the server must then close the
    // connection, not keep reading: its close resets the connection, so the writes fail long
    // before 16 MiB are written (the socket buffers hold a few MiB at most). A server that kept
    // reading would take them all; one that stopped reading without closing would stall them.
    const ANNOUNCED: usize = 0xff_ffff;
    let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    first.resize(5 + 0x4000, 0);
    let mut more = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    more.resize(5 + 0x4000, 0);
    let mut written = 0;
    let _ = tokio::time::timeout(DROPPED_WITHIN, async {
        if junk.write_all(&first).await.is_ok() {
            written += first.len();
            while written < 2 * ANNOUNCED && junk.write_all(&more).await.is_ok() {
                written += more.len();
            }
        }
    })
    .await;
    assert!(
        written < ANNOUNCED,
        "the server took {written} bytes of a handshake message"
    );
    dropped_while_others_are_served(&server, &mut junk).await;
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
