//! `GET|POST|PATCH|DELETE /channels` (admin writes, any-user reads, cascading delete) and
//! `GET /channels/messages` (default and maximum page, `before`/`after` cursors, `has_more`).

use std::collections::HashSet;

use dialtone::client::rest::Page;
use dialtone::crypto::e2e::generate_key;
use dialtone::protocol::rest::{ChannelKeysUpload, EnvelopeUpload, MessagesResponse};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

fn ids(page: &MessagesResponse) -> Vec<String> {
    page.messages.iter().map(|m| m.id.clone()).collect()
}

fn page(limit: Option<u32>, before: Option<&str>, after: Option<&str>) -> Page {
    Page {
        limit,
        before: before.map(str::to_owned),
        after: after.map(str::to_owned),
    }
}

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
    let messages_of =
        |id: &str| format!("SELECT count(*) AS v FROM channel_messages WHERE channel_id = '{id}'");
    let envelopes_of = |id: &str| {
        format!("SELECT count(*) AS v FROM channel_key_envelopes WHERE channel_id = '{id}'")
    };
    assert_eq!(server.db.count(&messages_of(&doomed.id)).await, 3);
    assert_eq!(server.db.count(&envelopes_of(&doomed.id)).await, 2);

    // Non-admins cannot delete.
    assert_error(bob.rest.delete_channel(&doomed.id).await, 403, "forbidden");
    assert_error(
        server.rest().delete_channel(&doomed.id).await,
        401,
        "unauthorized",
    );
    assert_eq!(server.db.count(&messages_of(&doomed.id)).await, 3);

    let (status, body) = send_raw(alice.rest.request(
        Method::DELETE,
        &format!("/channels?channel_id={}", doomed.id),
    ))
    .await;
    assert_eq!(status, 204, "body: {body}");

    assert_eq!(server.db.count(&messages_of(&doomed.id)).await, 0);
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
    assert_eq!(server.db.count(&messages_of(&kept.id)).await, 3);
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

#[tokio::test]
async fn history_of_unknown_channel_is_404() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    assert_error(
        alice
            .rest
            .messages(&uuid::Uuid::new_v4().to_string(), &Page::default())
            .await,
        404,
        "not_found",
    );
    assert_error(
        alice
            .rest
            .messages("no-such-channel", &Page::default())
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn history_needs_a_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    assert_error(
        server.rest().messages(&channel.id, &Page::default()).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn empty_channel_history() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let (status, body) = send_raw(alice.rest.request(
        Method::GET,
        &format!("/channels/messages?channel_id={}", channel.id),
    ))
    .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["channel_id"], channel.id.as_str());
    assert_eq!(body["messages"], json!([]));
    let page = alice
        .rest
        .messages(&channel.id, &Page::default())
        .await
        .unwrap();
    assert!(page.messages.is_empty());
    assert!(!page.has_more);
}

#[tokio::test]
async fn history_default_page_is_the_newest_100_ascending() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let echoes = send_messages(&server, &alice, &channel.id, 120).await;
    let sent: Vec<String> = echoes.iter().map(|e| e.message_id.clone()).collect();
    let cmids: Vec<String> = echoes
        .iter()
        .map(|e| {
            let cmid = e.client_message_id.clone().unwrap_or_default();
            cmid.split('.').next().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        cmids,
        (0..120).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "echo order = send order"
    );

    let (status, body) = send_raw(bob.rest.request(
        Method::GET,
        &format!("/channels/messages?channel_id={}", channel.id),
    ))
    .await;
    assert_eq!(status, 200);
    for field in ["channel_id", "messages"] {
        assert!(body.get(field).is_some(), "missing {field}");
    }
    let first = &body["messages"][0];
    for field in [
        "id",
        "channel_id",
        "sender_id",
        "sender_name_enc",
        "body",
        "sent_at",
    ] {
        assert!(
            first.get(field).is_some(),
            "message misses {field}: {first}"
        );
    }

    let page = bob
        .rest
        .messages(&channel.id, &Page::default())
        .await
        .unwrap();
    assert_eq!(page.channel_id, channel.id);
    assert_eq!(page.messages.len(), 100);
    assert_eq!(
        ids(&page),
        sent[20..].to_vec(),
        "the newest 100, oldest first"
    );
    assert!(page.has_more);
    let times: Vec<_> = page
        .messages
        .iter()
        .map(|m| assert_utc(&m.sent_at))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ascending sent_at");
    for (m, e) in page.messages.iter().zip(&echoes[20..]) {
        assert_eq!(m.channel_id, channel.id);
        assert_eq!(m.sender_id, alice.id());
        assert_eq!(m.sender_name_enc, "bmFtZQ==");
        assert_eq!(m.body, e.body);
        assert_eq!(m.sent_at, e.sent_at);
    }

    // A page as large as the history holds all of it, and says there is no more.
    let all = bob
        .rest
        .messages(&channel.id, &page_limit(120))
        .await
        .unwrap();
    assert_eq!(ids(&all), sent);
    assert!(!all.has_more);
    let small = bob
        .rest
        .messages(&channel.id, &page_limit(7))
        .await
        .unwrap();
    assert_eq!(ids(&small), sent[113..].to_vec());
    assert!(small.has_more);
}

fn page_limit(limit: u32) -> Page {
    page(Some(limit), None, None)
}

#[tokio::test]
async fn history_limit_must_be_positive() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    for limit in ["0", "-1", "abc"] {
        let (status, body) = send_raw(alice.rest.request(
            Method::GET,
            &format!("/channels/messages?channel_id={}&limit={limit}", channel.id),
        ))
        .await;
        assert_eq!(status, 400, "limit={limit}: {body}");
        assert_eq!(json_keys(&body), ["code", "error"]);
    }
}

#[tokio::test]
async fn history_limit_is_clamped_to_500() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let sent: Vec<String> = send_messages(&server, &alice, &channel.id, 510)
        .await
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        510
    );
    for limit in [501, 1000, 1_000_000] {
        let p = alice
            .rest
            .messages(&channel.id, &page_limit(limit))
            .await
            .unwrap();
        assert_eq!(p.messages.len(), 500, "limit={limit}");
        assert_eq!(ids(&p), sent[10..].to_vec());
        assert!(p.has_more);
    }
    let p = alice
        .rest
        .messages(&channel.id, &page_limit(500))
        .await
        .unwrap();
    assert_eq!(ids(&p), sent[10..].to_vec());
    // The clamp applies to cursor pages too.
    let p = alice
        .rest
        .messages(&channel.id, &page(Some(1000), None, Some(&sent[0])))
        .await
        .unwrap();
    assert_eq!(ids(&p), sent[1..501].to_vec());
    assert!(p.has_more);
}

#[tokio::test]
async fn cursors_page_through_all_history() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let other = alice.rest.create_channel("b3RoZXI=").await.unwrap();
    let sent: Vec<String> = send_messages(&server, &alice, &channel.id, 130)
        .await
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    send_messages(&server, &alice, &other.id, 5).await;

    // Backwards from the newest page with `before`.
    let mut back: Vec<String> = Vec::new();
    let mut p = bob
        .rest
        .messages(&channel.id, &page_limit(25))
        .await
        .unwrap();
    let mut pages = 1;
    loop {
        let mut chunk = ids(&p);
        chunk.extend(back);
        back = chunk;
        if !p.has_more {
            break;
        }
        assert_eq!(p.messages.len(), 25, "a page with more behind it is full");
        let oldest = p.messages[0].id.clone();
        p = bob
            .rest
            .messages(&channel.id, &page(Some(25), Some(&oldest), None))
            .await
            .unwrap();
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    assert_eq!(back, sent, "before-paging covers everything once, in order");
    assert_eq!(pages, 6);

    // Forwards from the oldest message with `after`.
    let mut fwd = vec![sent[0].clone()];
    let mut cursor = sent[0].clone();
    let mut pages = 0;
    loop {
        let p = bob
            .rest
            .messages(&channel.id, &page(Some(40), None, Some(&cursor)))
            .await
            .unwrap();
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        fwd.extend(ids(&p));
        if !p.has_more {
            break;
        }
        assert_eq!(p.messages.len(), 40);
        cursor = p.messages.last().unwrap().id.clone();
    }
    assert_eq!(fwd, sent, "after-paging covers everything once, in order");
    assert_eq!(pages, 4, "129 messages after the first, 40 a page");
    let unique: HashSet<&String> = fwd.iter().collect();
    assert_eq!(unique.len(), 130);

    // The ends: nothing before the oldest, nothing after the newest.
    let none = bob
        .rest
        .messages(&channel.id, &page(None, Some(&sent[0]), None))
        .await
        .unwrap();
    assert!(none.messages.is_empty());
    assert!(!none.has_more);
    let none = bob
        .rest
        .messages(&channel.id, &page(None, None, Some(&sent[129])))
        .await
        .unwrap();
    assert!(none.messages.is_empty());
    assert!(!none.has_more);
    // A page that ends exactly at the last message has nothing more.
    let exact = bob
        .rest
        .messages(&channel.id, &page(Some(29), None, Some(&sent[100])))
        .await
        .unwrap();
    assert_eq!(ids(&exact), sent[101..].to_vec());
    assert!(!exact.has_more);
    let exact = bob
        .rest
        .messages(&channel.id, &page(Some(30), Some(&sent[30]), None))
        .await
        .unwrap();
    assert_eq!(ids(&exact), sent[..30].to_vec());
    assert!(!exact.has_more);
}

#[tokio::test]
async fn before_and_after_together_is_400() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    let sent: Vec<String> = send_messages(&server, &alice, &channel.id, 3)
        .await
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_error(
        alice
            .rest
            .messages(&channel.id, &page(None, Some(&sent[2]), Some(&sent[0])))
            .await,
        400,
        "invalid_request",
    );
}
