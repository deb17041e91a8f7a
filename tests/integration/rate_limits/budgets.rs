//! Per-user budgets across all of a user's sockets: the socket cap, messages and bytes.

use dialtone::client::WsClient;
use dialtone::protocol::ws::{ClientFrame, error_code};

use crate::support::*;

use super::*;

#[tokio::test]
async fn sockets_per_user_are_capped_and_a_closed_socket_frees_its_slot() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_MAX_SOCKETS_PER_USER", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut a1 = server.ws(&alice).await;
    let mut a2 = server.ws(&alice).await;
    ws_ready(&mut a1).await;
    ws_ready(&mut a2).await;
    let refused = WsClient::connect(&server.ws_options(alice.token())).await;
    assert_error(refused.map(|_| ()), 429, "rate_limited");
    let mut b = server.ws(&bob).await;
    ws_ready(&mut b).await;
    a2.close().await.ok();
    drop(a2);
    // The slot comes back when the server has ended that session.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        match WsClient::connect(&server.ws_options(alice.token())).await {
            Ok(ws) => break ws,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the closed socket's slot never came back: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    ws_ready(&mut again).await;
    assert!(
        Scrape::of(&server)
            .await
            .counter(&limited("sockets_per_user"))
            >= 1
    );
}

/// Read events until `n` frames of this socket were answered: (echoes whose client_message_id
/// starts with `prefix`, error events). Echoes of other sockets' sends are skipped.

#[tokio::test]
async fn the_message_budget_is_per_user_across_all_their_sockets() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_MESSAGES", "5/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut ws = server.ws(&alice).await;
        ws_ready(&mut ws).await;
        sockets.push(ws);
    }
    // Three sends on each of three sockets: nine frames, five tokens.
    let (mut accepted, mut refused) = (0, Vec::new());
    for (s, ws) in sockets.iter_mut().enumerate() {
        for i in 0..3 {
            ws.send(&ClientFrame::channel_message(
                &channel.id,
                "eA==",
                "bg==",
                Some(format!("s{s}m{i}")),
            ))
            .await
            .unwrap();
        }
        let (own, errors) = answers(ws, &format!("s{s}"), 3).await;
        accepted += own.len();
        refused.extend(errors);
    }
    assert_eq!(accepted, 5, "five tokens for the user, whatever the socket");
    assert_eq!(refused.len(), 4);
    for e in &refused {
        assert_eq!(e.code.as_deref(), Some(error_code::RATE_LIMITED), "{e:?}");
        assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
        assert!(e.client_message_id.is_some(), "{e:?}");
        assert!(e.message.as_deref().unwrap_or("").contains("user_messages"));
        // 5/hour refills one token every 720 s: the wait is that, in whole seconds.
        let wait = e.retry_after.unwrap_or(0);
        assert!((1..=720).contains(&wait), "retry_after {wait}: {e:?}");
    }
    // Bob's budget is his own.
    let mut b = server.ws(&bob).await;
    b.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        Some("b".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut b, "b", 1).await;
    assert_eq!((ok.len(), errors.len()), (1, 0), "{errors:?}");
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("user_messages")),
        4
    );
}

#[tokio::test]
async fn the_byte_budget_is_per_user_across_sockets() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_BYTES", "100/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let body = "QUFB".repeat(15); // 60 bytes
    let mut one = server.ws(&alice).await;
    let mut two = server.ws(&alice).await;
    ws_ready(&mut two).await;
    one.send(&ClientFrame::channel_message(
        &channel.id,
        &body,
        "bg==",
        Some("a".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut one, "a", 1).await;
    assert_eq!((ok.len(), errors.len()), (1, 0), "{errors:?}");
    two.send(&ClientFrame::channel_message(
        &channel.id,
        &body,
        "bg==",
        Some("b".into()),
    ))
    .await
    .unwrap();
    let (_, errors) = answers(&mut two, "b", 1).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code.as_deref(), Some(error_code::RATE_LIMITED));
    assert_eq!(errors[0].client_message_id.as_deref(), Some("b"));
    // A short message still fits what is left.
    two.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        Some("c".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut two, "c", 1).await;
    assert_eq!((ok, errors.len()), (vec!["c".to_owned()], 0));
    assert_eq!(Scrape::of(&server).await.counter(&limited("user_bytes")), 1);
}
