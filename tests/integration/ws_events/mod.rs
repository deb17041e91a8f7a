//! WebSocket event protocol (SPEC §5): every event type and every error code, with the socket
//! staying usable after each bad frame.
//!
//! This file: the echo after commit, bad frames and the send rate; [`delivery`]: broadcasts,
//! subscriptions and `sync`.

mod delivery;

use std::collections::BTreeMap;
use std::time::Duration;

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, Event, error_code, event_type};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

pub(crate) async fn expect_error(ws: &mut WsClient, code: &str) -> Event {
    let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
    assert_eq!(
        e.code.as_deref(),
        Some(code),
        "unexpected error event {e:?}"
    );
    assert!(e.message.as_deref().is_some_and(|m| !m.is_empty()));
    e
}

/// Wait for `user` coming online on `ws`, so that nothing else is on its way to it.
async fn expect_presence(ws: &mut WsClient, user: &str) {
    let e = ws
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!((e.sender.as_str(), e.online), (user, Some(true)));
}

/// Send a valid message and get its echo: proves the socket still works.
async fn still_usable(ws: &mut WsClient, channel: &str) {
    // A fresh client_message_id each time: a reused one is an idempotent resend.
    let probe = format!("probe-{}", uuid::Uuid::new_v4());
    ws.send(&ClientFrame::channel_message(
        channel,
        "b2s=",
        "bmFtZQ==",
        Some(probe.clone()),
    ))
    .await
    .unwrap();
    let echo = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(echo.client_message_id.as_deref(), Some(probe.as_str()));
}

#[tokio::test]
async fn message_echo_reaches_every_subscriber_after_commit() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut a = server.ws(&alice).await;
    expect_presence(&mut a, alice.id()).await;
    let mut b = server.ws(&bob).await;
    expect_presence(&mut b, bob.id()).await;
    expect_presence(&mut a, bob.id()).await;

    // Commit blocked: the message is accepted but must reach no one, and no row is visible.
    let gate = WriteGate::hold(&server.db).await;
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "Ym9keQ==",
        "YWxpY2U=",
        Some("m-1".into()),
    ))
    .await
    .unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    // The session handles frames in order: by the probe's answer it has handed the message to
    // the database actor, whose mailbox is in order too: by this read's answer the actor has
    // taken the message up (a premature fan-out would be on its way now).
    assert_nothing_queued(&mut a, "no echo before the commit").await;
    let history = alice
        .rest
        .messages(&channel.id, &dialtone::client::rest::Page::default())
        .await
        .unwrap();
    assert!(history.messages.is_empty(), "{history:?}");
    assert_nothing_queued(&mut a, "no echo before the commit").await;
    assert_nothing_queued(&mut b, "no fan-out before the commit").await;
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        0
    );
    gate.release().await;

    let echo = a
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    // The echo is the acknowledgement: the row is already committed.
    let stored = server
        .db
        .string(&format!(
            "SELECT body AS v FROM channel_messages WHERE id = '{}'",
            echo.message_id
        ))
        .await;
    assert_eq!(stored.as_deref(), Some("Ym9keQ=="));
    assert_eq!(echo.channel_id.as_deref(), Some(channel.id.as_str()));
    assert_eq!(echo.sender, alice.id());
    assert_eq!(echo.sender_name_enc.as_deref(), Some("YWxpY2U="));
    assert_eq!(echo.client_message_id.as_deref(), Some("m-1"));
    assert!(echo.sent_at.ends_with('Z'));
    assert_eq!(echo.sender_name, "", "v1 field present and empty");

    let got = b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(got, echo);
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut ws = server.ws(&alice).await;

    ws.send_raw(Message::text("this is not json"))
        .await
        .unwrap();
    expect_error(&mut ws, error_code::INVALID_MESSAGE).await;
    still_usable(&mut ws, &channel.id).await;

    ws.send_raw(Message::text(format!(
        r#"{{"type":"channel.message.send","channel_id":"{}","body":123,"sender_name_enc":"x"}}"#,
        channel.id
    )))
    .await
    .unwrap();
    expect_error(&mut ws, error_code::INVALID_MESSAGE).await;
    still_usable(&mut ws, &channel.id).await;

    let oversize = "A".repeat(16_385);
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        oversize,
        "bmFtZQ==",
        Some("big".into()),
    ))
    .await
    .unwrap();
    let e = expect_error(&mut ws, error_code::INVALID_MESSAGE).await;
    assert_eq!(
        e.client_message_id.as_deref(),
        Some("big"),
        "errors carry the request's correlation id"
    );
    still_usable(&mut ws, &channel.id).await;

    ws.send_raw(Message::text(
        r#"{"type":"channel.message.send","body":"eA=="}"#,
    ))
    .await
    .unwrap();
    expect_error(&mut ws, error_code::INVALID_MESSAGE).await;

    ws.send_raw(Message::text(format!(
        r#"{{"type":"channel.message.send","channel_id":"{}","body":"eA=="}}"#,
        channel.id
    )))
    .await
    .unwrap();
    expect_error(&mut ws, error_code::INVALID_MESSAGE).await;

    ws.send_raw(Message::text(r#"{"type":"teleport"}"#))
        .await
        .unwrap();
    expect_error(&mut ws, error_code::UNSUPPORTED_TYPE).await;

    ws.send_raw(Message::text(
        r#"{"type":"message.send","recipient_id":"x","body":"eA=="}"#,
    ))
    .await
    .unwrap();
    expect_error(&mut ws, error_code::CHANNELS_ONLY).await;

    ws.send_raw(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    expect_error(&mut ws, error_code::INVALID_MESSAGE).await;

    let missing = uuid::Uuid::new_v4().to_string();
    ws.send(&ClientFrame::channel_message(
        &missing,
        "eA==",
        "bmFtZQ==",
        Some("lost".into()),
    ))
    .await
    .unwrap();
    let e = expect_error(&mut ws, error_code::CHANNEL_NOT_FOUND).await;
    assert_eq!(e.channel_id.as_deref(), Some(missing.as_str()));
    assert_eq!(e.client_message_id.as_deref(), Some("lost"));

    ws.send(&ClientFrame::subscribe(&missing)).await.unwrap();
    expect_error(&mut ws, error_code::CHANNEL_NOT_FOUND).await;

    still_usable(&mut ws, &channel.id).await;
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        4,
        "only the four valid probes were stored"
    );
}

#[tokio::test]
async fn sending_too_fast_is_rate_limited() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_SEND_RATE", "1")
            .set("DIALTONE_WS_SEND_BURST", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    // The bucket refills one token a second, so how many pass beyond the burst depends on how
    // fast the machine is; what does not: the burst passes, and of SENT frames sent back to back
    // some are refused (only a server taking seconds per frame would accept them all).
    const SENT: usize = 20;
    for i in 0..SENT {
        ws.send(&ClientFrame::channel_message(
            &channel.id,
            "eA==",
            "bg==",
            Some(format!("r{i}")),
        ))
        .await
        .unwrap();
    }
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    while accepted.len() + refused.len() < SENT {
        match ws.next_within(WAIT).await.unwrap() {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                accepted.push(e.client_message_id.unwrap())
            }
            Some(Incoming::Event(e)) if e.kind == event_type::ERROR => {
                assert_eq!(e.code.as_deref(), Some(error_code::RATE_LIMITED), "{e:?}");
                refused.push(e.client_message_id.unwrap());
            }
            Some(Incoming::Event(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
    assert_eq!(accepted[..2], ["r0", "r1"], "the burst passes");
    assert!(!refused.is_empty(), "nothing was rate limited");
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await as usize,
        accepted.len(),
        "only accepted messages are stored"
    );
}
