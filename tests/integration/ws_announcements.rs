//! Server-side changes reaching WebSocket clients: REST changes announced as events, and presence
//! following each user's first and last socket.

use dialtone::protocol::ws::{ClientFrame, error_code, event_type};

use crate::support::*;
use crate::ws_events::expect_error;

#[tokio::test]
async fn rest_changes_reach_websocket_clients() {
    let server = TestServer::start().await;
    let admin = server.user("admin").await;
    let bob = server.user("bob").await;
    let mut b = server.ws(&bob).await;

    let channel = admin.rest.create_channel("bmV3").await.unwrap();
    let e = b
        .expect_event(event_type::CHANNEL_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));
    assert_eq!(e.channel_name_enc.as_deref(), Some("bmV3"));

    // Default sessions are subscribed to channels created after they connected.
    let mut a = server.ws(&admin).await;
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "aGk=",
        "bg==",
        None,
    ))
    .await
    .unwrap();
    let m = b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(m.body, "aGk=");

    admin
        .rest
        .rename_channel(&channel.id, "cmVuYW1lZA==")
        .await
        .unwrap();
    let e = b
        .expect_event(event_type::CHANNEL_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.channel_name_enc.as_deref(), Some("cmVuYW1lZA=="));

    bob.rest.set_profile("cHJvZmlsZQ==", None).await.unwrap();
    let e = a
        .expect_event(event_type::USER_PROFILE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, bob.id());

    let bob2 = server.new_device(&bob).await;
    let e = a
        .expect_event(event_type::DEVICE_JOINED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, bob.id());
    assert_eq!(e.device_id.as_deref(), Some(bob2.device()));

    admin.rest.delete_channel(&channel.id).await.unwrap();
    let e = b
        .expect_event(event_type::CHANNEL_DELETED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "aGk=",
        "bg==",
        None,
    ))
    .await
    .unwrap();
    expect_error(&mut a, error_code::CHANNEL_NOT_FOUND).await;
}

/// The next presence event on `ws`: (user id, online).
async fn next_presence(ws: &mut dialtone::client::WsClient) -> (String, Option<bool>) {
    let e = ws
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    (e.sender, e.online)
}

#[tokio::test]
async fn presence_follows_first_and_last_socket() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut a = server.ws(&alice).await;

    // Alice's own socket announces her first.
    assert_eq!(
        next_presence(&mut a).await,
        (alice.id().to_owned(), Some(true))
    );

    let mut b1 = server.ws(&bob).await;
    assert_eq!(
        next_presence(&mut a).await,
        (bob.id().to_owned(), Some(true))
    );
    let mut b2 = server.ws(&bob).await;
    ws_ready(&mut b2).await;
    b1.close().await.unwrap();
    // Once the server has let go of b1, Bob is still online through b2: nothing is announced.
    let admin = server.admin();
    eventually("the server has closed b1", || {
        let admin = admin.clone();
        async move { admin.admin_stats().await.unwrap()["connections"] == 2 }
    })
    .await;
    let statuses = alice
        .rest
        .presence(&[bob.id().to_owned()])
        .await
        .unwrap()
        .statuses;
    assert_eq!(statuses.get(bob.id()), Some(&true), "b2 keeps Bob online");
    assert_nothing_queued(
        &mut a,
        "closing Bob's first of two sockets announced something",
    )
    .await;
    // Closing his last socket is what takes him offline.
    b2.close().await.unwrap();
    assert_eq!(
        next_presence(&mut a).await,
        (bob.id().to_owned(), Some(false))
    );
    let statuses = alice
        .rest
        .presence(&[bob.id().to_owned()])
        .await
        .unwrap()
        .statuses;
    assert_eq!(statuses.get(bob.id()), Some(&false));
}
