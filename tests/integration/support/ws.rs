//! WebSocket helpers: readiness, closes, sending and collecting echoes.

use base64::Engine;
use dialtone::client::WsClient;

use super::WAIT;
use super::server::{TestServer, TestUser};

/// Wait until the server has fully set up `ws`'s session (registered with the hub), by a round
/// trip: an unsupported frame type must come back as an `error` event.
pub async fn ws_ready(ws: &mut WsClient) {
    send_probe(ws).await;
    let e = ws
        .expect_event(dialtone::protocol::ws::event_type::ERROR, WAIT)
        .await
        .expect("probe answered");
    assert_eq!(e.code.as_deref(), Some("unsupported_type"), "{e:?}");
}

/// Read until the server sends a close frame; returns its code. Events before the close are
/// skipped. Panics if the connection ends without a close frame (EOF, reset) or nothing closes it
/// within [`WAIT`]: every documented close (`close_code`) sends a frame.
pub async fn wait_closed(ws: &mut WsClient) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Ok(Some(dialtone::client::Incoming::Closed { code, .. })) => return code,
            Ok(Some(dialtone::client::Incoming::Event(_))) => continue,
            Ok(None) => panic!("the connection ended (EOF) without a close frame"),
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// Read until the server drops the connection without a close frame (how an idle peer is cut
/// off: it is not reading, so there is no handshake to wait for); returns the events read
/// before. Panics on a close frame, or if the connection is still open after [`WAIT`].
pub async fn wait_dropped(ws: &mut WsClient) -> Vec<dialtone::protocol::ws::Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Ok(Some(dialtone::client::Incoming::Event(e))) => events.push(*e),
            Ok(Some(dialtone::client::Incoming::Closed { code, reason })) => {
                panic!("expected the connection dropped, got a close frame {code} {reason:?}")
            }
            Ok(None) | Err(dialtone::client::ClientError::Transport(_)) => return events,
            Err(e) => panic!("the connection was not dropped: {e}"),
        }
    }
}

/// Send `n` channel messages as `user` over one WebSocket (client_message_id `m0.<call>`,
/// `m1.<call>`, …, where `<call>` is unique per call: a sender's client_message_ids are idempotency
/// keys, and a reused one would be echoed its original) and wait for every echo; returns the
/// echoes in arrival order.
pub async fn send_messages(
    server: &TestServer,
    user: &TestUser,
    channel_id: &str,
    n: usize,
) -> Vec<dialtone::protocol::ws::Event> {
    use dialtone::protocol::ws::{ClientFrame, event_type};
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ws = server.ws(user).await;
    let mut echoes = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    for start in (0..n).step_by(100) {
        let end = (start + 100).min(n);
        for i in start..end {
            let body = base64::engine::general_purpose::STANDARD.encode(format!("message {i}"));
            ws.send(&ClientFrame::channel_message(
                channel_id,
                body,
                "bmFtZQ==",
                Some(format!("m{i}.{call}")),
            ))
            .await
            .expect("send channel message");
        }
        while echoes.len() < end {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ws.next_within(left).await.expect("echo") {
                Some(dialtone::client::Incoming::Event(e))
                    if e.kind == event_type::CHANNEL_MESSAGE_NEW =>
                {
                    if e.channel_id.as_deref() == Some(channel_id) {
                        echoes.push(*e);
                    }
                }
                Some(dialtone::client::Incoming::Event(e)) if e.kind == event_type::ERROR => {
                    panic!("server refused a message: {e:?}")
                }
                Some(dialtone::client::Incoming::Event(_)) => {}
                other => panic!("socket ended while waiting for echoes: {other:?}"),
            }
        }
    }
    let _ = ws.close().await;
    echoes
}

/// A frame type the server does not support: answered with an `unsupported_type` error, which
/// marks a round trip (everything the server sent before it arrives first).
pub fn probe_frame() -> dialtone::protocol::ws::ClientFrame {
    dialtone::protocol::ws::ClientFrame {
        kind: "test.ready.probe".into(),
        ..Default::default()
    }
}

pub async fn send_probe(ws: &mut WsClient) {
    ws.send(&probe_frame()).await.expect("send probe");
}

/// Assert that nothing is queued for `ws`: after a probe round trip, the probe's answer is the very
/// next thing the socket reads (anything the server sent before it would come first). The
/// `device.joined` announcements of sockets opening (sent on every connection, as v1 does) are
/// passed over: they are not what these checks are about.
pub async fn assert_nothing_queued(ws: &mut WsClient, what: &str) {
    use dialtone::protocol::ws::event_type;
    send_probe(ws).await;
    loop {
        match ws.next_within(WAIT).await.expect("probe answered") {
            Some(dialtone::client::Incoming::Event(e)) if e.kind == event_type::DEVICE_JOINED => {}
            Some(dialtone::client::Incoming::Event(e))
                if e.kind == event_type::ERROR && e.code.as_deref() == Some("unsupported_type") =>
            {
                return;
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// Read `rx` until `n` of the sender's messages were echoed (acknowledged); returns their ids.
/// Any refusal fails the test: these are durability tests, nothing should be refused.
pub async fn acknowledged(
    rx: &mut dialtone::client::ws::WsReceiver,
    n: usize,
) -> std::collections::HashSet<String> {
    use dialtone::client::Incoming;
    use dialtone::protocol::ws::event_type;
    let mut acked = std::collections::HashSet::new();
    while acked.len() < n {
        match tokio::time::timeout(WAIT, rx.next()).await {
            Ok(Ok(Some(Incoming::Event(e)))) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                acked.insert(e.message_id);
            }
            Ok(Ok(Some(Incoming::Event(e)))) if e.kind == event_type::ERROR => {
                panic!("server refused a message: {e:?}")
            }
            Ok(Ok(Some(Incoming::Event(_)))) => {}
            other => panic!("connection ended after {} echoes: {other:?}", acked.len()),
        }
    }
    acked
}

/// After the server was killed: echoes already on their way count as acknowledged too; returns
/// once the killed server's socket has ended (panics if it does not).
pub async fn acknowledged_until_the_end(
    rx: &mut dialtone::client::ws::WsReceiver,
    acked: &mut std::collections::HashSet<String>,
) {
    use dialtone::client::Incoming;
    use dialtone::protocol::ws::event_type;
    loop {
        match tokio::time::timeout(WAIT, rx.next()).await {
            Ok(Ok(Some(Incoming::Event(e)))) => {
                if e.kind == event_type::CHANNEL_MESSAGE_NEW {
                    acked.insert(e.message_id);
                }
            }
            Ok(Ok(Some(Incoming::Closed { .. }))) | Ok(Ok(None)) | Ok(Err(_)) => return,
            Err(_) => panic!("the killed server's socket did not end"),
        }
    }
}
