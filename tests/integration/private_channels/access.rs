//! The authorization matrix of a private channel: every endpoint and WebSocket request for a
//! member, a non-member, a removed member, a global admin and an anonymous caller; and fan-out.

use reqwest::Method;

use super::*;

/// What one caller gets from every way into the channel.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    listed: bool,
    history: u16,
    key: u16,
    share: u16,
    members: u16,
    add: u16,
    rename: u16,
    subscribe: Option<String>,
    sync: Option<String>,
    send: Option<String>,
}

async fn probe(server: &TestServer, who: &TestUser, channel: &str, outsider: &TestUser) -> Seen {
    let listed = who
        .rest
        .channels()
        .await
        .unwrap()
        .iter()
        .any(|c| c.id == channel);
    let get = |path: String| send_raw(who.rest.request(Method::GET, &path));
    let (history, _) = get(format!("/channels/messages?channel_id={channel}")).await;
    let (key, _) = get(format!("/channels/keys?channel_id={channel}")).await;
    let (members, _) = get(format!("/channels/members?channel_id={channel}")).await;
    let (share, _) = send_raw(
        who.rest
            .request(Method::POST, "/channels/keys")
            .json(&serde_json::json!({"channel_id": channel, "envelopes": [wrap(who, who)]})),
    )
    .await;
    let (add, _) = send_raw(
        who.rest
            .request(Method::POST, "/channels/members")
            .json(&serde_json::json!({"channel_id": channel, "user_id": outsider.id()})),
    )
    .await;
    let (rename, _) = send_raw(
        who.rest
            .request(Method::PATCH, "/channels")
            .json(&serde_json::json!({"channel_id": channel, "name_enc": NAME_ENC})),
    )
    .await;
    let mut ws = server.ws(who).await;
    ws_ready(&mut ws).await;
    ws.send(&ClientFrame::subscribe(channel)).await.unwrap();
    send_probe(&mut ws).await;
    let e = next_error(&mut ws).await;
    let subscribe =
        (e.code.as_deref() != Some("unsupported_type")).then(|| e.code.unwrap_or_default());
    if subscribe.is_some() {
        // The probe's own answer follows the refusal.
        next_error(&mut ws).await;
    }
    ws.send(&ClientFrame::sync(channel, None)).await.unwrap();
    let sync = loop {
        let e = ws.expect_any(WAIT).await;
        match e.kind.as_str() {
            event_type::SYNC_COMPLETE => break None,
            event_type::ERROR => break e.code,
            _ => {}
        }
    };
    let sent = send(&mut ws, channel, body(2)).await;
    Seen {
        listed,
        history,
        key,
        share,
        members,
        add,
        rename,
        subscribe,
        sync,
        send: refusal(&sent).map(str::to_owned),
    }
}

#[tokio::test]
async fn only_members_reach_a_private_channel() {
    let server = TestServer::start().await;
    // The first user is the server's admin: not a member, so no special access.
    let admin = server.user("admin").await;
    let owner = server.user("owner").await;
    let member = server.user("member").await;
    let removed = server.user("removed").await;
    let outsider = server.user("outsider").await;
    let c = private_channel(&owner).await;
    for u in [&member, &removed] {
        owner.rest.add_member(&c.id, u.id(), None).await.unwrap();
    }
    rotate(&owner, &c.id, 1, &[&owner, &member, &removed])
        .await
        .unwrap();
    owner.rest.remove_member(&c.id, removed.id()).await.unwrap();
    rotate(&owner, &c.id, 2, &[&owner, &member]).await.unwrap();

    // Everyone's socket follows every channel (the v1 default) before anything is sent.
    let mut sockets = Vec::new();
    for u in [&member, &removed, &outsider, &admin] {
        let mut ws = server.ws(u).await;
        ws_ready(&mut ws).await;
        sockets.push(ws);
    }
    let mut owner_ws = server.ws(&owner).await;
    ws_ready(&mut owner_ws).await;
    let sent = send(&mut owner_ws, &c.id, body(2)).await;
    assert_eq!(refusal(&sent), None, "{sent:?}");
    let got = expect_for(&mut sockets[0], event_type::CHANNEL_MESSAGE_NEW, &c.id).await;
    assert_eq!(got.message_id, sent.message_id);
    for (ws, who) in sockets[1..]
        .iter_mut()
        .zip(["removed", "outsider", "admin"])
    {
        assert_nothing_about(ws, &c.id, &format!("{who} got a private message")).await;
    }

    let nf = Some("channel_not_found".to_owned());
    let shut_out = |members: u16| Seen {
        listed: false,
        history: 404,
        key: 404,
        share: 404,
        members,
        add: 404,
        rename: 404,
        subscribe: nf.clone(),
        sync: nf.clone(),
        send: nf.clone(),
    };
    assert_eq!(
        probe(&server, &member, &c.id, &outsider).await,
        Seen {
            listed: true,
            history: 200,
            key: 200,
            // Its own envelope of generation 2 again: a byte-identical one would be a no-op,
            // a fresh wrap of another key replaces its own (allowed for its own device).
            share: 201,
            members: 200,
            // Adding and renaming are for channel admins.
            add: 403,
            rename: 403,
            subscribe: None,
            sync: None,
            send: None,
        }
    );
    assert_eq!(
        probe(&server, &outsider, &c.id, &outsider).await,
        shut_out(404)
    );
    assert_eq!(
        probe(&server, &removed, &c.id, &outsider).await,
        shut_out(404)
    );
    // A global admin may see who is in (moderation) and nothing else.
    assert_eq!(
        probe(&server, &admin, &c.id, &outsider).await,
        shut_out(200)
    );

    // Anonymous: nothing at all.
    let anon = server.rest();
    for path in [
        format!("/channels/messages?channel_id={}", c.id),
        format!("/channels/members?channel_id={}", c.id),
        format!("/channels/keys?channel_id={}", c.id),
    ] {
        let (status, _) = send_raw(anon.request(Method::GET, &path)).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = send_raw(anon.request(Method::POST, "/channels/rotate").json(
        &serde_json::json!({"channel_id": c.id, "generation": 3, "envelopes": [wrap(&owner, &owner)]}),
    ))
    .await;
    assert_eq!(status, 401);

    // A global admin may still delete it (moderation), and only its members hear of it.
    let (status, body) = send_raw(
        admin
            .rest
            .request(Method::DELETE, &format!("/channels?channel_id={}", c.id)),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    expect_for(&mut sockets[0], event_type::CHANNEL_DELETED, &c.id).await;
    assert_nothing_about(&mut sockets[2], &c.id, "an outsider heard of the deletion").await;
}

#[tokio::test]
async fn a_removed_member_is_unsubscribed_at_once_and_gets_nothing_more() {
    let server = TestServer::start().await;
    let owner = server.user("owner").await;
    let bob = server.user("bob").await;
    let c = private_channel(&owner).await;
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;
    owner.rest.add_member(&c.id, bob.id(), None).await.unwrap();
    let added = expect_for(&mut bob_ws, event_type::MEMBER_ADDED, &c.id).await;
    assert_eq!(
        (added.sender.as_str(), added.role.as_deref()),
        (bob.id(), Some("member"))
    );
    rotate(&owner, &c.id, 1, &[&owner, &bob]).await.unwrap();
    let rotated = expect_for(&mut bob_ws, event_type::KEY_ROTATED, &c.id).await;
    assert_eq!(rotated.key_generation, Some(1));
    let mut owner_ws = server.ws(&owner).await;
    ws_ready(&mut owner_ws).await;
    let first = send(&mut owner_ws, &c.id, body(1)).await;
    assert_eq!(refusal(&first), None, "{first:?}");
    expect_for(&mut bob_ws, event_type::CHANNEL_MESSAGE_NEW, &c.id).await;

    owner.rest.remove_member(&c.id, bob.id()).await.unwrap();
    let gone = expect_for(&mut bob_ws, event_type::MEMBER_REMOVED, &c.id).await;
    assert_eq!(gone.sender, bob.id());
    // Nothing goes out until a new generation is posted, and that one leaves bob out.
    let refused = send(&mut owner_ws, &c.id, body(1)).await;
    assert_eq!(refusal(&refused), Some("rotation_required"), "{refused:?}");
    assert_eq!(refused.channel_id.as_deref(), Some(c.id.as_str()));
    rotate(&owner, &c.id, 2, &[&owner]).await.unwrap();
    let after = send(&mut owner_ws, &c.id, body(2)).await;
    assert_eq!(refusal(&after), None, "{after:?}");
    assert_nothing_about(
        &mut bob_ws,
        &c.id,
        "a removed member got a message sent after",
    )
    .await;

    // Bob's old session, with the old key: no way back in.
    bob_ws.send(&ClientFrame::subscribe(&c.id)).await.unwrap();
    let e = next_error(&mut bob_ws).await;
    assert_eq!(e.code.as_deref(), Some("channel_not_found"), "{e:?}");
    let (status, _) = send_raw(bob.rest.request(
        Method::GET,
        &format!("/channels/keys?channel_id={}&generation=1", c.id),
    ))
    .await;
    assert_eq!(status, 404, "not even the generation bob held");
    // The database holds generation 2 for the owner's device alone.
    let holders = server
        .db
        .strings(&format!(
            "SELECT device_id AS v FROM channel_generation_envelopes WHERE channel_id = '{}' AND generation = 2",
            c.id
        ))
        .await;
    assert_eq!(holders, vec![Some(owner.device().to_owned())]);
}

/// The next `error` event.
async fn next_error(ws: &mut WsClient) -> Event {
    loop {
        let e = ws.expect_any(WAIT).await;
        if e.kind == event_type::ERROR {
            return e;
        }
    }
}
