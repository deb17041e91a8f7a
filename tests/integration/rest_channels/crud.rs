//! `GET|POST|PATCH|DELETE /channels`: admin writes, any-user reads, and the cascading delete.

use super::*;

#[tokio::test]
async fn list_channels_newest_first() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_eq!(bob.rest.channels().await.unwrap(), vec![]);
    let mut created = Vec::new();
    for name in ["b25l", "dHdv", "dGhyZWU="] {
        created.push(alice.rest.create_channel(name).await.unwrap());
    }
    let (status, body) = send_raw(bob.rest.request(Method::GET, "/channels")).await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), ["channels"]);
    for c in body["channels"].as_array().unwrap() {
        assert_eq!(
            json_keys(c),
            ["created_at", "created_by", "id", "name_enc"],
            "channel {c}"
        );
    }
    let listed = bob.rest.channels().await.unwrap();
    created.reverse();
    assert_eq!(listed, created, "newest first, every field as created");
}

#[tokio::test]
async fn list_channels_needs_a_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    alice.rest.create_channel("bmFtZQ==").await.unwrap();
    assert_error(server.rest().channels().await, 401, "unauthorized");
}

#[tokio::test]
async fn create_channel_as_admin_is_201() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/channels")
            .json(&json!({"name_enc": "Z2VuZXJhbA=="})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(json_keys(&body), ["channel"]);
    let c = &body["channel"];
    assert_eq!(json_keys(c), ["created_at", "created_by", "id", "name_enc"]);
    assert_uuid(c["id"].as_str().unwrap());
    assert_eq!(c["name_enc"], "Z2VuZXJhbA==");
    assert_eq!(c["created_by"], alice.id());
    assert_utc(c["created_at"].as_str().unwrap());
    let listed = alice.rest.channels().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, c["id"].as_str().unwrap());
}

#[tokio::test]
async fn create_channel_is_admin_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_error(bob.rest.create_channel("Ym9i").await, 403, "forbidden");
    assert_error(
        server.rest().create_channel("YW5vbg==").await,
        401,
        "unauthorized",
    );
    assert_eq!(alice.rest.channels().await.unwrap(), vec![]);
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM channels").await,
        0
    );
}

#[tokio::test]
async fn rename_channel() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("b2xk").await.unwrap();

    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::PATCH, "/channels")
            .json(&json!({"channel_id": channel.id, "name_enc": "bmV3"})),
    )
    .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), ["channel"]);
    let renamed: dialtone::protocol::rest::Channel =
        serde_json::from_value(body["channel"].clone()).unwrap();
    assert_eq!(renamed.id, channel.id);
    assert_eq!(renamed.name_enc, "bmV3");
    assert_eq!(renamed.created_by, channel.created_by);
    assert_eq!(renamed.created_at, channel.created_at);
    assert_eq!(bob.rest.channels().await.unwrap(), vec![renamed.clone()]);

    // Non-admins cannot rename; nothing changes.
    assert_error(
        bob.rest.rename_channel(&channel.id, "Ym9i").await,
        403,
        "forbidden",
    );
    assert_error(
        server.rest().rename_channel(&channel.id, "YW5vbg==").await,
        401,
        "unauthorized",
    );
    assert_eq!(bob.rest.channels().await.unwrap(), vec![renamed]);

    // Unknown channels are 404.
    assert_error(
        alice
            .rest
            .rename_channel(&uuid::Uuid::new_v4().to_string(), "eA==")
            .await,
        404,
        "not_found",
    );
    assert_error(
        alice.rest.rename_channel("no-such-channel", "eA==").await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn delete_channel_cascades_messages_and_envelopes() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let doomed = alice.rest.create_channel("ZG9vbWVk").await.unwrap();
    let kept = alice.rest.create_channel("a2VwdA==").await.unwrap();
    for channel in [&doomed, &kept] {
        send_messages(&server, &alice, &channel.id, 3).await;
        let key = generate_key();
        let envelopes = [&alice, &bob]
            .into_iter()
            .map(|t| EnvelopeUpload {
                device_id: t.device().to_owned(),
                sender_device_id: alice.device().to_owned(),
                sender_public_key: alice.keys.public_key_b64(),
                envelope: alice.keys.wrap_for(&t.keys.public_key_b64(), &key).unwrap(),
                channel_id: None,
            })
            .collect();
        alice
            .rest
            .upload_channel_keys(&ChannelKeysUpload {
                generation: None,
                channel_id: channel.id.clone(),
                envelopes,
            })
            .await
            .unwrap();
    }
    let envelopes_of = |id: &str| {
        format!("SELECT count(*) AS v FROM channel_key_envelopes WHERE channel_id = '{id}'")
    };
    assert_eq!(server.db.messages_in(&doomed.id).await, 3);
    assert_eq!(server.db.count(&envelopes_of(&doomed.id)).await, 2);

    // Non-admins cannot delete.
    assert_error(bob.rest.delete_channel(&doomed.id).await, 403, "forbidden");
    assert_error(
        server.rest().delete_channel(&doomed.id).await,
        401,
        "unauthorized",
    );
    assert_eq!(server.db.messages_in(&doomed.id).await, 3);

    let (status, body) = send_raw(alice.rest.request(
        Method::DELETE,
        &format!("/channels?channel_id={}", doomed.id),
    ))
    .await;
    assert_eq!(status, 204, "body: {body}");

    assert_eq!(server.db.messages_in(&doomed.id).await, 0);
    assert_eq!(server.db.count(&envelopes_of(&doomed.id)).await, 0);
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM channels WHERE id = '{}'",
                doomed.id
            ))
            .await,
        0
    );
    // The other channel is untouched.
    assert_eq!(server.db.messages_in(&kept.id).await, 3);
    assert_eq!(server.db.count(&envelopes_of(&kept.id)).await, 2);
    assert_eq!(bob.rest.channels().await.unwrap(), vec![kept.clone()]);
    assert_error(
        bob.rest.messages(&doomed.id, &Page::default()).await,
        404,
        "not_found",
    );
    assert!(bob.rest.channel_key(&doomed.id).await.unwrap().is_none());
    assert!(bob.rest.channel_key(&kept.id).await.unwrap().is_some());

    // Deleting it again, or any unknown channel, is 404.
    assert_error(
        alice.rest.delete_channel(&doomed.id).await,
        404,
        "not_found",
    );
    assert_error(
        alice
            .rest
            .delete_channel(&uuid::Uuid::new_v4().to_string())
            .await,
        404,
        "not_found",
    );
}
