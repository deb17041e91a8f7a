//! NUL (U+0000) over the WebSocket: a channel message whose body, `sender_name_enc` or
//! `client_message_id` holds it, a broadcast with it, a `sync` cursor with it — each is refused
//! with `invalid_message` naming the field and the request, at the edge, while another user's
//! messages sent in the same moment all commit (on PostgreSQL such a row used to fail the whole
//! group-commit batch it shared with them).

use std::collections::{BTreeMap, HashSet};

use dialtone::protocol::ws::{ClientFrame, error_code, event_type};

use crate::support::*;

/// Read `n` `error` events (other events are skipped).
async fn errors(
    ws: &mut dialtone::client::WsClient,
    n: usize,
) -> Vec<dialtone::protocol::ws::Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = ws
            .expect_event(event_type::ERROR, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} of {n} errors: {e}", out.len()));
        out.push(e);
    }
    out
}

#[tokio::test]
async fn nul_in_a_channel_message_is_refused_and_other_users_messages_commit() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut alice_ws = server.ws(&alice).await;
    ws_ready(&mut alice_ws).await;

    // Alice's bad frames go out while bob's burst is in flight, so without the edge check they
    // would share group-commit batches with bob's messages.
    const N: usize = 30;
    let bad = |i: usize| -> (ClientFrame, &'static str) {
        let cmid = format!("bad-{i}");
        match i % 3 {
            0 => (
                ClientFrame::channel_message(&channel.id, "aGk\0=", "bmFtZQ==", Some(cmid)),
                "body",
            ),
            1 => (
                ClientFrame::channel_message(&channel.id, "aGk=", "bm\0FtZQ==", Some(cmid)),
                "sender_name_enc",
            ),
            _ => (
                ClientFrame::channel_message(&channel.id, "aGk=", "bmFtZQ==", Some(cmid + "\0")),
                "client_message_id",
            ),
        }
    };
    let alice_side = async {
        for i in 0..N {
            alice_ws.send(&bad(i).0).await.unwrap();
        }
        errors(&mut alice_ws, N).await
    };
    let (refusals, echoes) = tokio::join!(alice_side, send_messages(&server, &bob, &channel.id, N));

    assert_eq!(echoes.len(), N, "every one of bob's messages is echoed");
    let mut seen = HashSet::new();
    for e in &refusals {
        assert_eq!(
            e.code.as_deref(),
            Some(error_code::INVALID_MESSAGE),
            "{e:?}"
        );
        let cmid = e
            .client_message_id
            .clone()
            .expect("the refusal names its send");
        let i: usize = cmid
            .trim_start_matches("bad-")
            .trim_end_matches('\0')
            .parse()
            .unwrap();
        let (frame, field) = bad(i);
        assert_eq!(e.client_message_id, frame.client_message_id, "{e:?}");
        assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
        let msg = e.message.as_deref().unwrap_or_default();
        assert!(msg.contains(field) && msg.contains("NUL"), "{field}: {msg}");
        seen.insert(i);
    }
    assert_eq!(seen.len(), N, "one refusal per bad frame");
    let stored = server
        .db
        .strings("SELECT client_message_id AS v FROM channel_messages")
        .await;
    assert_eq!(
        stored.len(),
        N,
        "exactly bob's messages are stored: {stored:?}"
    );
    assert!(
        stored.iter().flatten().all(|c| !c.starts_with("bad-")),
        "{stored:?}"
    );
}

#[tokio::test]
async fn nul_in_a_broadcast_or_a_sync_cursor_is_invalid_message() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;

    let public_key = alice.keys.public_key_b64();
    let envelopes = |device: &str, env: &str| BTreeMap::from([(device.to_owned(), env.to_owned())]);
    let cases = [
        (
            ClientFrame::broadcast(
                "aGk\0=",
                "bmFtZQ==",
                &public_key,
                envelopes(alice.device(), "ZW52"),
            ),
            "body",
        ),
        (
            ClientFrame::broadcast(
                "aGk=",
                "bmFtZQ==",
                &public_key,
                envelopes("dev\0ice", "ZW52"),
            ),
            "key_envelopes",
        ),
        (
            ClientFrame::broadcast(
                "aGk=",
                "bmFtZQ==",
                &public_key,
                envelopes(alice.device(), "Z\0W52"),
            ),
            "key_envelopes",
        ),
        (ClientFrame::sync(&channel.id, Some("x\0".into())), "cursor"),
    ];
    for (frame, field) in cases {
        ws.send(&frame).await.unwrap();
        let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
        assert_eq!(
            e.code.as_deref(),
            Some(error_code::INVALID_MESSAGE),
            "{field}: {e:?}"
        );
        let msg = e.message.as_deref().unwrap_or_default();
        assert!(msg.contains(field) && msg.contains("NUL"), "{field}: {msg}");
        assert_eq!(e.channel_id, frame.channel_id, "{e:?}");
    }
    assert_eq!(
        server
            .db
            .count("SELECT COUNT(*) AS v FROM broadcast_messages")
            .await,
        0
    );
    // The socket still works.
    super::still_chatting(&mut ws, &channel.id, "after").await;
}
