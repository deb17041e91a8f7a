//! `GET /channels/messages`: default and maximum page, `before`/`after` cursors, `has_more`.

use super::*;

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
