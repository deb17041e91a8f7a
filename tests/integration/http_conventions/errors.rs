//! HTTP conventions, continued: 405 and 404 with JSON bodies, the exact error shape of every
//! refusal, `/health` and `/ready` with the database up, RFC 3339 UTC times and UUID ids.

use super::*;

#[tokio::test]
async fn wrong_method_is_405_with_a_json_body() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let cases = [
        (Method::PUT, "/channels"),
        (Method::GET, "/auth/login"),
        (Method::GET, "/auth/register"),
        (Method::DELETE, "/health"),
        (Method::POST, "/devices/keys"),
        (Method::PUT, "/users/profiles"),
        (Method::GET, "/presence"),
        (Method::GET, "/server/invites"),
        (Method::PATCH, "/channels/messages"),
    ];
    for (method, path) in cases {
        for client in [server.rest(), alice.rest.clone()] {
            let req = client
                .request(method.clone(), path)
                .header("Content-Type", "application/json");
            let err = error_response(req, 405).await;
            assert_eq!(err["code"], "method_not_allowed", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn unknown_path_is_404_with_a_json_body() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let cases = [
        (Method::GET, "/nope"),
        (Method::POST, "/auth/nope"),
        (Method::GET, "/channels/nope"),
        (Method::GET, "/admin"),
        (Method::DELETE, "/users/123"),
        (Method::GET, "/app/nope.js"),
    ];
    for (method, path) in cases {
        for client in [server.rest(), alice.rest.clone()] {
            let err = error_response(client.request(method.clone(), path), 404).await;
            assert_eq!(err["code"], "not_found", "{method} {path}");
        }
    }
}

#[tokio::test]
async fn every_error_body_is_exactly_error_and_code() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let rest = server.rest();
    // 400
    error_response(rest.request(Method::POST, "/auth/login").body("{"), 400).await;
    error_response(
        rest.request(Method::POST, "/auth/register").json(&json!({
            "username": "x", "password": "abcdefg1", "public_key": "x", "invite_token": "x"
        })),
        400,
    )
    .await;
    // 401
    error_response(rest.request(Method::GET, "/channels"), 401).await;
    error_response(
        rest.request(Method::POST, "/auth/login")
            .json(&LoginRequest {
                username: "alice".into(),
                password: "wrong-password-1".into(),
                public_key: alice.keys.public_key_b64(),
                invite_token: None,
            }),
        401,
    )
    .await;
    // 403
    error_response(
        bob.rest
            .request(Method::POST, "/channels")
            .json(&json!({"name_enc": "eA=="})),
        403,
    )
    .await;
    // 404
    error_response(
        alice.rest.request(
            Method::GET,
            &format!("/channels/messages?channel_id={}", uuid::Uuid::new_v4()),
        ),
        404,
    )
    .await;
    // 405
    error_response(rest.request(Method::PUT, "/channels"), 405).await;
    // 409
    let invite = server.invite().await;
    error_response(
        rest.request(Method::POST, "/auth/register").json(&json!({
            "username": "bob", "password": "abcdefg1",
            "public_key": DeviceKeypair::generate().public_key_b64(), "invite_token": invite
        })),
        409,
    )
    .await;
    // 410
    let used = server.invite().await;
    server
        .rest()
        .register(&dialtone::protocol::rest::RegisterRequest {
            username: "carol".into(),
            password: "abcdefg1".into(),
            public_key: DeviceKeypair::generate().public_key_b64(),
            invite_token: used.clone(),
        })
        .await
        .unwrap();
    let body = error_response(
        rest.request(Method::POST, "/auth/register").json(&json!({
            "username": "dave", "password": "abcdefg1",
            "public_key": DeviceKeypair::generate().public_key_b64(), "invite_token": used
        })),
        410,
    )
    .await;
    assert_eq!(
        body,
        json!({"error": "invite already used", "code": "invite_used"})
    );
    // 413
    let (status, content_type, text) = post_head_only(&server, "/auth/login", MIB + 10).await;
    assert_eq!(status, 413, "{text}");
    error_shape(&content_type, &text);
}

#[tokio::test]
async fn health_and_ready_are_200_with_the_database_up() {
    // With channel arbiters, whose threads are probed too.
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_CHANNEL_ARBITERS", "2");
    })
    .await;
    let res = server
        .rest()
        .request(Method::GET, "/health")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = server
        .rest()
        .request(Method::GET, "/ready")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    server.rest().health().await.unwrap();
    server.rest().ready().await.unwrap();
}

#[tokio::test]
async fn times_are_rfc3339_utc_and_ids_are_uuids() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut times: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();

    times.push(alice.auth.expires_at.clone());
    ids.extend([alice.auth.user_id.clone(), alice.auth.device_id.clone()]);

    let invite = server
        .admin()
        .mint_invite(&CreateInviteRequest::default())
        .await
        .unwrap();
    times.push(invite.expires_at.clone());
    ids.push(invite.id.clone());

    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    times.push(channel.created_at.clone());
    ids.extend([channel.id.clone(), channel.created_by.clone()]);

    let echo = send_messages(&server, &alice, &channel.id, 1)
        .await
        .remove(0);
    times.push(echo.sent_at.clone());
    ids.push(echo.message_id.clone());
    let history = bob
        .rest
        .messages(&channel.id, &Default::default())
        .await
        .unwrap();
    for m in &history.messages {
        times.push(m.sent_at.clone());
        ids.extend([m.id.clone(), m.sender_id.clone(), m.channel_id.clone()]);
    }

    alice.rest.set_profile("YWxpY2U=", None).await.unwrap();
    for p in bob.rest.profiles().await.unwrap() {
        times.push(p.updated_at);
        ids.push(p.user_id);
    }

    let laptop = alice
        .rest
        .add_device(alice.id(), &DeviceKeypair::generate().public_key_b64())
        .await
        .unwrap();
    times.push(laptop.created_at.clone());
    ids.push(laptop.id.clone());
    for d in alice.rest.devices().await.unwrap() {
        times.push(d.created_at);
        times.extend(d.last_seen_at);
        ids.push(d.id);
    }

    let key = generate_key();
    alice
        .rest
        .upload_channel_keys(&ChannelKeysUpload {
            generation: None,
            channel_id: channel.id.clone(),
            envelopes: vec![EnvelopeUpload {
                device_id: bob.device().to_owned(),
                sender_device_id: alice.device().to_owned(),
                sender_public_key: alice.keys.public_key_b64(),
                envelope: alice
                    .keys
                    .wrap_for(&bob.keys.public_key_b64(), &key)
                    .unwrap(),
                channel_id: None,
            }],
        })
        .await
        .unwrap();
    let env = bob.rest.channel_key(&channel.id).await.unwrap().unwrap();
    times.push(env.created_at);
    ids.extend([env.device_id, env.sender_device_id]);

    let users = server.admin().admin_users().await.unwrap();
    for u in users {
        times.push(u.created_at);
        ids.push(u.id);
    }

    let now = chrono::Utc::now();
    for t in &times {
        let parsed = assert_utc(t);
        assert!(
            parsed.timestamp() > now.timestamp() - 3600
                && parsed.timestamp() < now.timestamp() + 366 * 86_400,
            "{t} is not a plausible time"
        );
    }
    for id in &ids {
        assert_uuid(id);
    }
    assert!(times.len() >= 12 && ids.len() >= 15);
}
