//! v1 flows under key authority, and `device.joined` on every WebSocket connection (issue 10
//! item 7).

use dialtone::crypto::e2e::generate_key;
use dialtone::protocol::ws::event_type;
use serde_json::json;

use super::*;

/// A v1 envelope entry: `channel_id` repeated inside, as v1 clients send it.
fn v1_entry(
    sender: &TestUser,
    target: &TestUser,
    channel: &str,
    key: &SymmetricKey,
) -> serde_json::Value {
    json!({
        "channel_id": channel,
        "device_id": target.device(),
        "sender_device_id": sender.device(),
        "sender_public_key": sender.keys.public_key_b64(),
        "envelope": sender.keys.wrap_for(&target.keys.public_key_b64(), key).unwrap(),
    })
}

/// The next `device.joined` that announces `device` (others, such as the socket's own, pass).
async fn joined(
    ws: &mut dialtone::client::WsClient,
    device: &str,
) -> dialtone::protocol::ws::Event {
    loop {
        let e = ws
            .expect_event(event_type::DEVICE_JOINED, WAIT)
            .await
            .unwrap();
        if e.device_id.as_deref() == Some(device) {
            return e;
        }
    }
}

#[tokio::test]
async fn v1_create_join_and_reshare_still_work() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // A v1 client creates a channel and wraps its key for every device, its own included.
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap().id;
    let key = generate_key();
    let (status, body) = post(
        &alice,
        "/channels/keys",
        &json!({
            "channel_id": channel,
            "envelopes": [v1_entry(&alice, &alice, &channel, &key), v1_entry(&alice, &bob, &channel, &key)],
        }),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");

    // bob adds a device; his first device, holding the key, re-shares when it sees device.joined.
    let mut bob_ws = server.ws(&bob).await;
    let bob2 = server.new_device(&bob).await;
    let e = joined(&mut bob_ws, bob2.device()).await;
    assert_eq!(e.sender, bob.id());
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &json!({"channel_id": channel, "envelopes": [v1_entry(&bob, &bob2, &channel, &key)]}),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(channel_key_of(&bob2, &channel).await, Some(*key));
    // Its next re-share to the same device (fresh bytes) replaces an envelope his own user
    // wrote: still 201.
    let (status, body) = post(
        &bob,
        "/channels/keys",
        &json!({"channel_id": channel, "envelopes": [v1_entry(&bob, &bob2, &channel, &key)]}),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
}

#[tokio::test]
async fn device_joined_is_sent_on_every_connection() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut watcher = server.ws(&alice).await;
    // bob's device exists already: each socket it opens is announced, to everyone (its own
    // socket included), so v1 clients re-share their keys with it.
    joined(&mut watcher, alice.device()).await;
    for _ in 0..2 {
        let mut bob_ws = server.ws(&bob).await;
        let e = joined(&mut watcher, bob.device()).await;
        assert_eq!(e.sender, bob.id());
        let own = joined(&mut bob_ws, bob.device()).await;
        assert_eq!(own.sender, bob.id());
        let _ = bob_ws.close().await;
    }
}
