//! The WebSocket frame limit acts on the declared length: a header declaring more than
//! `DIALTONE_WS_MAX_FRAME` is closed with 1009 at once, before any payload is sent.

use base64::Engine;
use dialtone::protocol::ws::close_code;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::still_chatting;
use crate::support::*;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Open a TLS connection and upgrade it to a WebSocket by hand (no client library, so the test
/// can write any frame header it likes). Returns the stream after the 101.
async fn raw_upgrade(server: &TestServer, user: &TestUser) -> Tls {
    let mut tls = server.raw_tls().await;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
         Authorization: Bearer {}\r\n\r\n",
        user.token()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tls.read(&mut byte))
            .await
            .expect("upgrade answered")
            .unwrap();
        assert_eq!(n, 1, "connection ended during the upgrade: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls
}

/// A masked text frame header (FIN set) declaring `len` bytes, in the 64-bit length form.
fn header_declaring(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// Read what the server sends until the connection ends; panics if it stays open past [`WAIT`].
/// Returns the close frame's code, skipping the events before it (presence announcements).
async fn close_code_then_eof(tls: &mut Tls) -> u16 {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("the socket stayed open; received {got:?}"));
    // Server frames are unmasked: opcode byte, 7-bit length (or 126 + 16-bit), payload.
    let mut rest = &got[..];
    while rest.len() >= 2 {
        let (len, at) = match rest[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            n => (usize::from(n), 2),
        };
        if rest[0] == 0x88 {
            assert!(len >= 2, "close frame without a code: {rest:?}");
            return u16::from_be_bytes([rest[at], rest[at + 1]]);
        }
        assert_eq!(rest[0], 0x81, "unexpected frame before the close: {rest:?}");
        rest = &rest[at + len..];
    }
    panic!("the connection ended without a close frame: {got:?}");
}

#[tokio::test]
async fn declared_oversized_frames_close_with_1009_before_any_payload() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;

    // 2^63 - 1 (the largest legal length), and one byte over the 64 KiB default: only the header
    // is written, so the close proves the server decided on the declared length.
    for declared in [i64::MAX as u64, 64 * 1024 + 1] {
        let mut tls = raw_upgrade(&server, &alice).await;
        tls.write_all(&header_declaring(declared)).await.unwrap();
        tls.flush().await.unwrap();
        assert_eq!(
            close_code_then_eof(&mut tls).await,
            close_code::TOO_BIG,
            "declared {declared}"
        );
    }

    // A frame of exactly the limit still passes (the limit is inclusive), on a raw socket too.
    let mut tls = raw_upgrade(&server, &alice).await;
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(64u64 * 1024).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend(std::iter::repeat_n(b' ', 64 * 1024));
    tls.write_all(&frame).await.unwrap();
    tls.flush().await.unwrap();
    let mut first = [0u8; 2];
    tokio::time::timeout(WAIT, tls.read_exact(&mut first))
        .await
        .expect("an answer to a 64 KiB frame")
        .unwrap();
    assert_eq!(
        first[0], 0x81,
        "a 64 KiB frame is answered with an event, not a close"
    );

    // Meanwhile another user's socket is untouched and still carries messages.
    still_chatting(&mut bob_ws, &channel.id, "bob-after").await;
}

#[tokio::test]
async fn declared_length_limit_follows_the_configured_max_frame() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_MAX_FRAME", "2048");
    })
    .await;
    let alice = server.user("alice").await;
    let mut tls = raw_upgrade(&server, &alice).await;
    tls.write_all(&header_declaring(2049)).await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(close_code_then_eof(&mut tls).await, close_code::TOO_BIG);

    // A fragmented message is bounded as a whole: a first fragment of 2000 bytes, then a
    // continuation header declaring 100 more (2100 > 2048) is refused on that header.
    let mut tls = raw_upgrade(&server, &alice).await;
    let mut first = vec![0x01, 0x80 | 126];
    first.extend_from_slice(&2000u16.to_be_bytes());
    first.extend_from_slice(&[0, 0, 0, 0]);
    first.extend(std::iter::repeat_n(b' ', 2000));
    first.extend_from_slice(&[0x80, 0x80 | 100, 0, 0, 0, 0]);
    tls.write_all(&first).await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(close_code_then_eof(&mut tls).await, close_code::TOO_BIG);
}
