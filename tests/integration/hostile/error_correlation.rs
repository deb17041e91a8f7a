//! Every `error` event answering a frame names that frame's `channel_id` and `client_message_id`
//! when the frame had them, so a client can tell which send to fix or retry: a frame that is JSON
//! but not a valid request, a missing field, an unknown channel (by form and by commit), a send
//! refused by the rate limit. (`server_error` from a failed commit: `commit_faults.rs`.)

use dialtone::protocol::ws::{ClientFrame, error_code, event_type};

use crate::support::*;

async fn next_error(ws: &mut dialtone::client::WsClient) -> dialtone::protocol::ws::Event {
    ws.expect_event(event_type::ERROR, WAIT).await.unwrap()
}

#[track_caller]
fn assert_names(e: &dialtone::protocol::ws::Event, code: &str, channel: &str, cmid: &str) {
    assert_eq!(e.code.as_deref(), Some(code), "{e:?}");
    assert_eq!(e.channel_id.as_deref(), Some(channel), "{e:?}");
    assert_eq!(e.client_message_id.as_deref(), Some(cmid), "{e:?}");
}

#[tokio::test]
async fn error_events_name_the_request_they_answer() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;

    // JSON, but `body` is a number: not a ClientFrame, yet its ids are readable.
    let raw = format!(
        r#"{{"type":"channel.message.send","channel_id":"{}","client_message_id":"c1","body":5,"sender_name_enc":"bmFtZQ=="}}"#,
        channel.id
    );
    ws.send_raw(tokio_tungstenite::tungstenite::Message::text(raw))
        .await
        .unwrap();
    assert_names(
        &next_error(&mut ws).await,
        error_code::INVALID_MESSAGE,
        &channel.id,
        "c1",
    );

    // A parseable frame without its body.
    let mut frame =
        ClientFrame::channel_message(&channel.id, "aGk=", "bmFtZQ==", Some("c2".into()));
    frame.body = None;
    ws.send(&frame).await.unwrap();
    assert_names(
        &next_error(&mut ws).await,
        error_code::INVALID_MESSAGE,
        &channel.id,
        "c2",
    );

    // A body over the limit.
    let big = "a".repeat(dialtone::protocol::ws::MAX_BODY_BYTES + 1);
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        big,
        "bmFtZQ==",
        Some("c3".into()),
    ))
    .await
    .unwrap();
    assert_names(
        &next_error(&mut ws).await,
        error_code::INVALID_MESSAGE,
        &channel.id,
        "c3",
    );

    // Not a channel id at all, and a well-formed id of no channel (refused by the group commit).
    ws.send(&ClientFrame::channel_message(
        "nope",
        "aGk=",
        "bmFtZQ==",
        Some("c4".into()),
    ))
    .await
    .unwrap();
    assert_names(
        &next_error(&mut ws).await,
        error_code::CHANNEL_NOT_FOUND,
        "nope",
        "c4",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    ws.send(&ClientFrame::channel_message(
        &unknown,
        "aGk=",
        "bmFtZQ==",
        Some("c5".into()),
    ))
    .await
    .unwrap();
    assert_names(
        &next_error(&mut ws).await,
        error_code::CHANNEL_NOT_FOUND,
        &unknown,
        "c5",
    );

    // Subscribing to a channel that does not exist names the channel.
    ws.send(&ClientFrame::subscribe(&unknown)).await.unwrap();
    let e = next_error(&mut ws).await;
    assert_eq!(
        e.code.as_deref(),
        Some(error_code::CHANNEL_NOT_FOUND),
        "{e:?}"
    );
    assert_eq!(e.channel_id.as_deref(), Some(unknown.as_str()), "{e:?}");
}

#[tokio::test]
async fn rate_limited_sends_are_named() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_SEND_RATE", "1")
            .set("DIALTONE_WS_SEND_BURST", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
    for i in 0..10 {
        ws.send(&super::good_message(&channel.id, &format!("r{i}")))
            .await
            .unwrap();
    }
    // At most 2 + (a token per second) pass; the refusals each name one of the sends, once.
    let mut named = std::collections::HashSet::new();
    let mut echoed = 0;
    while named.len() + echoed < 10 {
        let Some(dialtone::client::Incoming::Event(e)) = ws.next_within(WAIT).await.unwrap() else {
            panic!("the socket closed");
        };
        if e.is(event_type::CHANNEL_MESSAGE_NEW) {
            echoed += 1;
        } else if e.is(event_type::ERROR) {
            assert_eq!(e.code.as_deref(), Some(error_code::RATE_LIMITED), "{e:?}");
            assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
            let cmid = e
                .client_message_id
                .clone()
                .expect("the refusal names its send");
            assert!(
                cmid.starts_with('r') && named.insert(cmid.clone()),
                "{cmid}"
            );
        }
    }
    assert!(!named.is_empty(), "the limit refused something");
}

/// A `sync` carries ids only: one whose `after` is kilobytes long is refused at once, by name,
/// rather than queued whole (a socket may queue many syncs), and the socket carries on.
#[tokio::test]
async fn a_sync_with_an_oversized_cursor_is_refused_by_name() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
    let frame = ClientFrame {
        client_message_id: Some("s1".into()),
        ..ClientFrame::sync(&channel.id, Some("a".repeat(10_000)))
    };
    ws.send(&frame).await.unwrap();
    let e = next_error(&mut ws).await;
    assert_names(&e, error_code::INVALID_MESSAGE, &channel.id, "s1");
    assert!(
        e.message.as_deref().unwrap_or_default().contains("ids"),
        "{e:?}"
    );
    ws.send(&ClientFrame::sync(&channel.id, None))
        .await
        .unwrap();
    ws.expect_event(event_type::SYNC_COMPLETE, WAIT)
        .await
        .unwrap();
}
