//! `tail` survives a dropped connection: it reconnects and catches up in order, without
//! duplicates.

use std::time::Duration;

use dialtone::client::{ChatError, ChatEvent, FollowOptions, ServerSpec};

use crate::support::*;

use super::*;

#[tokio::test]
async fn e2e_tail_reconnects_and_catches_up_in_order_without_duplicates() {
    let server = TestServer::start().await;
    let port: u16 = server.base_url.rsplit(':').next().unwrap().parse().unwrap();
    // Cutting every connection and refusing new ones drops `tail` mid-stream.
    let proxy = Proxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let via_proxy = ServerSpec {
        url: format!("https://localhost:{}", proxy.addr().port()),
        trust: server.trust(),
    };
    let mut admin = register(&server, ADMIN).await;
    let ann = register_at(&server, &via_proxy, ANN).await;
    let (channel, _) = admin.create_channel("flaky-wifi").await.unwrap();
    admin.send(&channel.id, "backlog message").await.unwrap();

    let opts = FollowOptions {
        backlog: 5,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..FollowOptions::default()
    };
    let mut tail = follow(ann.chat, opts);
    assert_eq!(
        tail.messages(1).await,
        [("backlog message".to_owned(), true)]
    );
    tail.wait_for("connected", |e| {
        matches!(e, ChatEvent::Connected { reconnect: false })
    })
    .await;
    admin
        .send(&channel.id, "live before the drop")
        .await
        .unwrap();
    // Live, or held back by the first catch-up if it was still running: either way, once.
    assert_eq!(tail.messages(1).await[0].0, "live before the drop");

    // The connection drops; messages are sent meanwhile.
    proxy.set(ProxyMode::Refuse);
    tail.wait_for("the drop", |e| matches!(e, ChatEvent::Disconnected { .. }))
        .await;
    admin.send(&channel.id, "while away 1").await.unwrap();
    admin.send(&channel.id, "while away 2").await.unwrap();
    proxy.set(ProxyMode::Forward);
    tail.wait_for("the reconnect", |e| {
        matches!(e, ChatEvent::Connected { reconnect: true })
    })
    .await;
    assert_eq!(
        tail.messages(2).await,
        [
            ("while away 1".to_owned(), true),
            ("while away 2".to_owned(), true)
        ]
    );
    admin.send(&channel.id, "after the return").await.unwrap();
    assert_eq!(
        tail.messages(1).await,
        [("after the return".to_owned(), false)]
    );

    // More than one sync page (500) missed: the rest comes from history, in order, once.
    proxy.set(ProxyMode::Refuse);
    tail.wait_for("the second drop", |e| {
        matches!(e, ChatEvent::Disconnected { .. })
    })
    .await;
    let raw = server.user("walrus-raw").await;
    let echoes = send_messages(&server, &raw, &channel.id, 620).await;
    proxy.set(ProxyMode::Forward);
    let mut ids = Vec::new();
    while ids.len() < echoes.len() {
        if let ChatEvent::Message { message, .. } = tail
            .wait_for("replayed messages", |e| {
                matches!(e, ChatEvent::Message { .. })
            })
            .await
        {
            // Raw test bodies are not sealed: each is reported as undecryptable, not dropped.
            let err = message.unwrap_err();
            let id = match &err {
                ChatError::Decrypt { what, .. } => what.trim_start_matches("message ").to_owned(),
                other => panic!("unexpected error {other}"),
            };
            ids.push(id);
        }
    }
    let expected: Vec<String> = echoes.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(ids, expected, "every missed message, in commit order, once");
    admin.send(&channel.id, "caught up").await.unwrap();
    assert_eq!(tail.messages(1).await, [("caught up".to_owned(), false)]);
    tail.stop().await;
}
