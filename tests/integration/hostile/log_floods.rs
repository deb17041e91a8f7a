//! What a hostile or broken peer can make the server log: these cases must cost at most a DEBUG
//! line, never an ERROR. The test server fails on any undeclared ERROR, and the log records what a
//! production server would (`dialtone::logging`'s filter); [`LogCapture`] checks the text too.
//! The dead WebSocket peer is `ws_lifecycle::silent_peer_is_dropped_after_the_idle_timeout`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Read what the server answers until it closes, within `WAIT`.
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await;
}

#[tokio::test]
async fn plain_http_bad_hellos_and_junk_after_the_handshake_log_no_error() {
    let logs = LogCapture::start();
    let server = TestServer::start().await;
    let port: u16 = server.base_url.rsplit(':').next().unwrap().parse().unwrap();
    let probes: [&[u8]; 3] = [
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05garbage-not-a-hello",
        b"\x00\x01\x02\x03\xff\xfe\xfd\xfc",
    ];
    for probe in probes {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(probe).await.unwrap();
        drain(&mut s).await;
    }
    // A handshake, then bytes no HTTP parser accepts.
    let mut tls = server.raw_tls().await;
    tls.write_all(b"\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    drain(&mut tls).await;

    server.rest().health().await.unwrap();
    let text = logs.text();
    assert!(text.contains("dialtone listening"), "the capture records");
    assert!(
        !text.lines().any(|l| l.contains(" ERROR ")),
        "an ERROR line:\n{text}"
    );
}
