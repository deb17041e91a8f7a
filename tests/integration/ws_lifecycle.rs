//! WebSocket lifecycle: authentication before the upgrade, the browser subprotocol, the frame size
//! limit, the session limit, and every way a socket is closed (logout, expiry, silence; shutdown is
//! in `ws_shutdown`).

use std::time::Duration;

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, close_code, event_type};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Read until the server closes; the close code (None when the connection just ended).
async fn closed_with(ws: &mut WsClient, limit: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Ok(Some(Incoming::Event(_))) => continue,
            Ok(Some(Incoming::Closed { code, .. })) => return Some(code),
            Ok(None) | Err(dialtone::client::ClientError::Transport(_)) => return None,
            Err(e) => panic!("socket not closed: {e}"),
        }
    }
}

#[tokio::test]
async fn upgrade_requires_a_valid_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;

    let err = WsClient::connect(&server.ws_options(""))
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(401));
    let err = WsClient::connect(&server.ws_options("not-a-token"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(401));
    let mut ok = WsClient::connect(&server.ws_options(alice.token()))
        .await
        .unwrap();
    ok.send(&ClientFrame::sync(uuid::Uuid::new_v4().to_string(), None))
        .await
        .unwrap();
    ok.expect_event(event_type::ERROR, WAIT).await.unwrap();
}

#[tokio::test]
async fn browser_subprotocol_authentication() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut opts = server.ws_options(alice.token());
    opts.token_in_subprotocol = true;
    let mut ws = WsClient::connect(&opts).await.unwrap();
    assert_eq!(ws.protocol.as_deref(), Some("dialtone.v1"));
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        None,
    ))
    .await
    .unwrap();
    ws.expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();

    opts.token = "bogus".into();
    assert_eq!(
        WsClient::connect(&opts).await.err().unwrap().status(),
        Some(401)
    );
}

#[tokio::test]
async fn logout_closes_the_sessions_sockets_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let other_session = server.new_device(&alice).await;
    let mut ws = server.ws(&alice).await;
    let mut other = server.ws(&other_session).await;
    alice.rest.logout().await.unwrap();
    assert_eq!(closed_with(&mut ws, WAIT).await, Some(close_code::NORMAL));
    // The other session's socket is untouched.
    other
        .send(&ClientFrame::sync(uuid::Uuid::new_v4().to_string(), None))
        .await
        .unwrap();
    other.expect_event(event_type::ERROR, WAIT).await.unwrap();
}

#[tokio::test]
async fn expired_session_closes_its_socket() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_SESSION_TTL_SECS", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let mut ws = server.ws(&alice).await;
    assert_eq!(
        closed_with(&mut ws, Duration::from_secs(10)).await,
        Some(close_code::NORMAL)
    );
    let err = alice.rest.channels().await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(401), Some("token_expired"))
    );
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut ws = server.ws(&alice).await;
    ws.send_raw(Message::text("x".repeat(64 * 1024 + 1)))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws, WAIT).await, Some(close_code::TOO_BIG));
}

#[tokio::test]
async fn silent_peer_is_dropped_after_the_idle_timeout() {
    let mut server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_PING_SECS", "1")
            .set("DIALTONE_WS_IDLE_SECS", "2");
    })
    .await;
    // actix-http reports the aborted response stream (how a dead peer's connection is dropped).
    server.expect_error("websocket peer stopped answering");
    let alice = server.user("alice").await;
    let mut ws = server.ws(&alice).await;
    // Not reading means not answering pings: after the idle timeout the server hangs up. What
    // was queued before (its own presence event) may still be read; then the connection ends.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ws
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            Ok(Some(Incoming::Event(e))) => assert_eq!(e.kind, event_type::PRESENCE_UPDATED),
            Ok(Some(Incoming::Closed { .. }))
            | Ok(None)
            | Err(dialtone::client::ClientError::Transport(_)) => break,
            Err(e) => panic!("socket still open after the idle timeout: {e}"),
        }
    }
    let stats = server.admin().admin_stats().await.unwrap();
    assert_eq!(stats["connections"], 0);
}

#[tokio::test]
async fn pings_keep_a_reading_peer_alive() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_PING_SECS", "1")
            .set("DIALTONE_WS_IDLE_SECS", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    // Keep reading for twice the idle timeout: reading answers the server's pings (tungstenite
    // replies automatically), and the socket must stay open all along. A server that dropped
    // sockets at the idle timeout regardless would close it here.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match ws.next_within(left).await {
            Ok(Some(Incoming::Event(_))) => {}
            Err(dialtone::client::ClientError::Timeout(_)) => break,
            other => panic!("a reading peer was dropped: {other:?}"),
        }
    }
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        None,
    ))
    .await
    .unwrap();
    ws.expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn session_limit_refuses_cleanly() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_MAX_SESSIONS", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let _a = server.ws(&alice).await;
    let _b = server.ws(&alice).await;
    let err = WsClient::connect(&server.ws_options(alice.token()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), Some(503));
    // REST keeps working at the limit.
    alice.rest.channels().await.unwrap();
}
