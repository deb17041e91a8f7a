//! WebSocket lifecycle: authentication before the upgrade, the browser subprotocol, the frame size
//! limit, the session limit, and every way a socket is closed (logout, expiry, silence; shutdown is
//! in `ws_shutdown`).

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, close_code, event_type};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

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
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
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
    // A loaded machine may take longer than the TTL between a login and its upgrade; that login's
    // upgrade is then refused as expired (also documented). Log in again until one upgrades.
    let mut attempt = 0;
    let (user, mut ws) = loop {
        attempt += 1;
        let user = server.new_device(&alice).await;
        match WsClient::connect(&server.ws_options(user.token())).await {
            Ok(ws) => break (user, ws),
            Err(e) if attempt < 5 => {
                assert_eq!(
                    (e.status(), e.code()),
                    (Some(401), Some("token_expired")),
                    "{e}"
                );
            }
            Err(e) => panic!("no login upgraded before it expired: {e}"),
        }
    };
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
    let err = user.rest.channels().await.unwrap_err();
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
    assert_eq!(wait_closed(&mut ws).await, close_code::TOO_BIG);
}

/// Hub sessions open now (REST `admin/stats`).
async fn open_sessions(server: &TestServer) -> u64 {
    let stats = server.admin().admin_stats().await.unwrap();
    stats["connections"].as_u64().expect("connections")
}

#[tokio::test]
async fn silent_peer_is_dropped_after_the_idle_timeout() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_PING_SECS", "1")
            .set("DIALTONE_WS_IDLE_SECS", "2");
    })
    .await;
    // The dead peer's connection is dropped by ending its response body with an error; that
    // costs a DEBUG line, never an ERROR (the server fails the test on any ERROR).
    let alice = server.user("alice").await;
    let mut ws = server.ws(&alice).await;
    // Not reading means not answering pings: after the idle timeout the server hangs up, without
    // a close handshake. Wait for that on the server's side before reading anything.
    let server = &server;
    eventually("the silent socket is dropped", || async move {
        open_sessions(server).await == 0
    })
    .await;
    // What was queued before (its own presence and `device.joined` events) may still be read;
    // then the connection ends without a close frame.
    for e in wait_dropped(&mut ws).await {
        assert!(
            [event_type::PRESENCE_UPDATED, event_type::DEVICE_JOINED].contains(&e.kind.as_str()),
            "{e:?}"
        );
    }
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
    // The reading socket opens first, so each of its idle checks runs before the silent one's: by
    // the time the silent socket is dropped, the reading one has passed the idle timeout too. A
    // server that dropped sockets at the idle timeout regardless would have closed it by then.
    let mut ws = server.ws(&alice).await;
    let mut silent = server.ws(&alice).await;
    let server = &server;
    let silent_dropped = eventually("the silent socket is dropped", || async move {
        open_sessions(server).await == 1
    });
    tokio::pin!(silent_dropped);
    loop {
        tokio::select! {
            () = &mut silent_dropped => break,
            // Reading answers the server's pings (tungstenite replies automatically).
            got = ws.next() => match got {
                Ok(Some(Incoming::Event(_))) => {}
                other => panic!("a reading peer was dropped: {other:?}"),
            },
        }
    }
    // The one that went is the silent one; the reading one still carries traffic.
    wait_dropped(&mut silent).await;
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
    match &err {
        dialtone::client::ClientError::Api {
            status,
            code,
            message,
        } => assert_eq!(
            (*status, code.as_str(), message.as_str()),
            (
                503,
                "too_many_connections",
                "server is at its connection limit; retry later"
            ),
            "{err}"
        ),
        other => panic!("expected the server's JSON error, got {other:?}"),
    }
    // REST keeps working at the limit.
    alice.rest.channels().await.unwrap();
}
