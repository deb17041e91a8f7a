//! Direct channels: one per pair, found again on the next open from either side, private to its
//! two members; v1's `message.send` stays `channels_only`.

use reqwest::Method;

use super::*;

#[tokio::test]
async fn a_direct_channel_is_opened_once_and_found_again() {
    let server = TestServer::start().await;
    let ann = server.user("ann").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let open = |by: &TestUser, with: &TestUser| {
        send_raw(
            by.rest
                .request(Method::POST, "/channels/direct")
                .json(&serde_json::json!({"user_id": with.id(), "name_enc": NAME_ENC})),
        )
    };
    let (status, first) = open(&ann, &bob).await;
    assert_eq!(status, 201, "{first}");
    let id = first["channel"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["channel"]["kind"], "direct");
    for (by, with) in [(&ann, &bob), (&bob, &ann)] {
        let (status, again) = open(by, with).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["channel"]["id"], id.as_str());
    }
    let (status, other) = open(&ann, &carol).await;
    assert_eq!(status, 201);
    assert_ne!(other["channel"]["id"], id.as_str());
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channels WHERE kind = 'direct'")
            .await,
        2
    );
    // Both are members (admins of it); nobody else sees it; it keeps exactly its two.
    let m = bob.rest.members(&id).await.unwrap();
    let mut who: Vec<&str> = m.members.iter().map(|m| m.user_id.as_str()).collect();
    who.sort_unstable();
    let mut pair = [ann.id(), bob.id()];
    pair.sort_unstable();
    assert_eq!(who, pair);
    assert!(
        !carol
            .rest
            .channels()
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == id)
    );
    let (status, body) = send_raw(
        ann.rest
            .request(Method::POST, "/channels/members")
            .json(&serde_json::json!({"channel_id": id, "user_id": carol.id()})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send_raw(ann.rest.request(
        Method::DELETE,
        &format!("/channels/members?channel_id={id}&user_id={}", bob.id()),
    ))
    .await;
    assert_eq!(status, 403, "{body}");
    // With oneself, or with nobody: clear errors.
    let (status, _) = open(&ann, &ann).await;
    assert_eq!(status, 400);
    let (status, body) = send_raw(ann.rest.request(Method::POST, "/channels/direct").json(
        &serde_json::json!({"user_id": uuid::Uuid::new_v4().to_string(), "name_enc": NAME_ENC}),
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // v1's direct message frame is still refused as v1 clients expect.
    let mut ws = server.ws(&ann).await;
    ws_ready(&mut ws).await;
    ws.send(&ClientFrame {
        kind: "message.send".into(),
        body: Some("aGk=".into()),
        ..ClientFrame::default()
    })
    .await
    .unwrap();
    loop {
        let e = ws.expect_any(WAIT).await;
        if e.kind == event_type::ERROR {
            assert_eq!(e.code.as_deref(), Some("channels_only"), "{e:?}");
            break;
        }
    }
}

#[tokio::test]
async fn two_users_opening_at_once_get_one_channel() {
    let server = TestServer::start().await;
    let ann = server.user("ann").await;
    let bob = server.user("bob").await;
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            ann.rest.open_direct(bob.id(), NAME_ENC),
            bob.rest.open_direct(ann.id(), NAME_ENC),
        );
        assert_eq!(a.unwrap().id, b.unwrap().id);
    }
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channels WHERE kind = 'direct'")
            .await,
        1
    );
}

/// The peer's id in another spelling of the same UUID still names the peer: their socket hears
/// of the new channel and gets its messages live.
#[tokio::test]
async fn a_direct_channel_opened_with_an_upper_case_id_reaches_the_peer_live() {
    let server = TestServer::start().await;
    let ann = server.user("ann").await;
    let bob = server.user("bob").await;
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;
    let c = ann
        .rest
        .open_direct(&bob.id().to_uppercase(), NAME_ENC)
        .await
        .unwrap();
    let e = bob_ws
        .expect_event(event_type::CHANNEL_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.channel_id.as_deref(), Some(c.id.as_str()), "{e:?}");
}
