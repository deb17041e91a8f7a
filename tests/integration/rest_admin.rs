//! Invites (`POST /server/invites`) and the operators' `/admin/` endpoints: invite listing and
//! revocation, user listing, disable/enable, promote/demote, stats, and `/metrics`.

use std::time::Duration;

use dialtone::client::rest::Credentials;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{CreateInviteRequest, LoginRequest, RegisterRequest};
use dialtone::protocol::ws::close_code;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

async fn register_with(
    server: &TestServer,
    name: &str,
    invite: &str,
) -> Result<dialtone::protocol::rest::AuthResponse, dialtone::client::ClientError> {
    server
        .rest()
        .register(&RegisterRequest {
            username: name.to_owned(),
            password: password(name),
            public_key: DeviceKeypair::generate().public_key_b64(),
            invite_token: invite.to_owned(),
        })
        .await
}

async fn login(
    server: &TestServer,
    user: &TestUser,
) -> Result<dialtone::protocol::rest::AuthResponse, dialtone::client::ClientError> {
    server
        .rest()
        .login(&LoginRequest {
            username: user.name.clone(),
            password: password(&user.name),
            public_key: user.keys.public_key_b64(),
            invite_token: None,
        })
        .await
}

#[tokio::test]
async fn mint_invite_with_admin_token_is_201() {
    let server = TestServer::start().await;
    let before = chrono::Utc::now();
    let (status, body) = send_raw(server.admin().request(Method::POST, "/server/invites")).await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(json_keys(&body), ["expires_at", "id", "max_uses", "token"]);
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 32, "token is long and random: {token}");
    let id = body["id"].as_str().unwrap();
    assert_uuid(id);
    assert_ne!(id, token);
    assert!(assert_utc(body["expires_at"].as_str().unwrap()) > before);
    assert_eq!(body["max_uses"], 1);
    // Only a hash of the token is stored.
    let dump = server.db.dump().await;
    assert!(
        dump.iter().all(|(_, _, v)| !v.contains(token)),
        "the invite token is stored in clear"
    );
    // It works once.
    let alice = register_with(&server, "alice", token).await.unwrap();
    assert!(alice.is_admin);
}

#[tokio::test]
async fn mint_invite_accepts_empty_and_json_bodies() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let bodies: [(&str, Option<&str>); 4] = [
        ("", None),
        ("", Some("application/json")),
        ("{}", Some("application/json")),
        ("{}", None),
    ];
    for (body, content_type) in bodies {
        let mut req = admin.request(Method::POST, "/server/invites").body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let (status, json) = send_raw(req).await;
        assert_eq!(
            status, 201,
            "body {body:?}, content type {content_type:?}: {json}"
        );
        assert!(json["token"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

#[tokio::test]
async fn mint_invite_with_admin_bearer_is_201() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/server/invites")
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    let bob = register_with(&server, "bob", body["token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(!bob.is_admin);
}

#[tokio::test]
async fn mint_invite_needs_an_admin() {
    let server = TestServer::start().await;
    let _alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let req = CreateInviteRequest::default();
    assert_error(bob.rest.mint_invite(&req).await, 403, "forbidden");
    assert_error(server.rest().mint_invite(&req).await, 401, "unauthorized");
    let longer = format!("{}x", server.admin_token);
    for wrong in ["wrong-admin-token", "", longer.as_str()] {
        let client = server
            .rest()
            .with_credentials(Credentials::AdminToken(wrong.to_owned()));
        assert_error(client.mint_invite(&req).await, 401, "unauthorized");
    }
    // Alice's and bob's invites only.
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM server_invites")
            .await,
        2
    );
}

#[tokio::test]
async fn invite_max_uses_is_honoured() {
    let server = TestServer::start().await;
    let invite = server
        .admin()
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: None,
            max_uses: Some(3),
        })
        .await
        .unwrap();
    assert_eq!(invite.max_uses, 3);
    for name in ["alice", "bob", "carol"] {
        register_with(&server, name, &invite.token).await.unwrap();
    }
    assert_error(
        register_with(&server, "dave", &invite.token).await,
        410,
        "invite_used",
    );
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 3);
}

#[tokio::test]
async fn invite_expiry_is_honoured() {
    let server = TestServer::start().await;
    let before = chrono::Utc::now();
    let invite = server
        .admin()
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: Some(3600),
            max_uses: None,
        })
        .await
        .unwrap();
    let after = chrono::Utc::now();
    let expires = assert_utc(&invite.expires_at);
    assert!(expires >= before + chrono::Duration::seconds(3600) - chrono::Duration::seconds(1));
    assert!(expires <= after + chrono::Duration::seconds(3600) + chrono::Duration::seconds(1));
    assert_eq!(invite.max_uses, 1);
    register_with(&server, "alice", &invite.token)
        .await
        .unwrap();

    // An invite that has expired is refused, and the refusal uses nothing up.
    let short = server
        .admin()
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: Some(1),
            max_uses: Some(2),
        })
        .await
        .unwrap();
    let expires = assert_utc(&short.expires_at);
    let past = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(past + Duration::from_millis(50)).await;
    assert_error(
        register_with(&server, "bob", &short.token).await,
        410,
        "invite_expired",
    );
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 1);
    let (status, body) = send_raw(server.admin().request(Method::GET, "/admin/invites")).await;
    assert_eq!(status, 200, "{body}");
    let row = body["invites"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == short.id.as_str()))
        .unwrap_or_else(|| panic!("the expired invite is listed: {body}"));
    assert_eq!(row["uses"], 0, "{row}");
}

#[tokio::test]
async fn invalid_invite_options_are_400() {
    let server = TestServer::start().await;
    for body in [
        json!({"max_uses": 0}),
        json!({"expires_in_seconds": 0}),
        json!({"max_uses": -1}),
        json!({"expires_in_seconds": -5}),
        json!({"max_uses": "three"}),
        json!({"uses": 3}),
    ] {
        let (status, resp) = send_raw(
            server
                .admin()
                .request(Method::POST, "/server/invites")
                .json(&body),
        )
        .await;
        assert_eq!(status, 400, "body {body}: {resp}");
        assert_eq!(json_keys(&resp), ["code", "error"]);
    }
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM server_invites")
            .await,
        0
    );
}

#[tokio::test]
async fn list_and_revoke_invites() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let one = admin
        .mint_invite(&CreateInviteRequest::default())
        .await
        .unwrap();
    let two = admin
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: None,
            max_uses: Some(5),
        })
        .await
        .unwrap();

    let res = admin
        .request(Method::GET, "/admin/invites")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(&one.token) && !text.contains(&two.token),
        "the listing leaks tokens: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let listed = body["invites"].as_array().expect("invites array");
    assert_eq!(listed.len(), 2);
    let ids: Vec<&str> = listed.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&one.id.as_str()) && ids.contains(&two.id.as_str()),
        "{ids:?}"
    );
    let entry = listed.iter().find(|i| i["id"] == two.id.as_str()).unwrap();
    assert_eq!(entry["max_uses"], 5);
    assert_eq!(entry["expires_at"], two.expires_at.as_str());

    let (status, body) =
        send_raw(admin.request(Method::DELETE, &format!("/admin/invites/{}", one.id))).await;
    assert_eq!(status, 204, "body: {body}");
    let e = assert_status(register_with(&server, "alice", &one.token).await, 410);
    assert!(
        matches!(
            e.code(),
            Some("invite_revoked" | "invite_used" | "invite_expired")
        ),
        "revoked invite: {e}"
    );
    // The other invite still works.
    register_with(&server, "alice", &two.token).await.unwrap();
    // Unknown and already revoked ids.
    let (status, body) = send_raw(admin.request(
        Method::DELETE,
        &format!("/admin/invites/{}", uuid::Uuid::new_v4()),
    ))
    .await;
    assert_eq!(status, 404, "body: {body}");
    assert_error_body(&body, "not_found");
    // Revoking by token (instead of id) does nothing.
    let (status, _) =
        send_raw(admin.request(Method::DELETE, &format!("/admin/invites/{}", two.token))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn admin_invites_need_an_admin() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let invite = alice
        .rest
        .mint_invite(&CreateInviteRequest::default())
        .await
        .unwrap();
    let (status, _) = send_raw(bob.rest.request(Method::GET, "/admin/invites")).await;
    assert_eq!(status, 403);
    let (status, _) = send_raw(server.rest().request(Method::GET, "/admin/invites")).await;
    assert_eq!(status, 401);
    let (status, _) = send_raw(
        bob.rest
            .request(Method::DELETE, &format!("/admin/invites/{}", invite.id)),
    )
    .await;
    assert_eq!(status, 403);
    // Still usable.
    register_with(&server, "carol", &invite.token)
        .await
        .unwrap();
    // Admin bearer may list.
    let (status, body) = send_raw(alice.rest.request(Method::GET, "/admin/invites")).await;
    assert_eq!(status, 200, "body: {body}");
}

#[tokio::test]
async fn admin_users_shows_decrypted_usernames() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    server.admin().create_user("ghost").await.unwrap();
    for client in [server.admin(), alice.rest.clone()] {
        let users = client.admin_users().await.unwrap();
        assert_eq!(users.len(), 3);
        let a = users
            .iter()
            .find(|u| u.id == alice.id())
            .expect("alice listed");
        assert_eq!(a.username, "alice");
        assert!(a.is_admin);
        assert_utc(&a.created_at);
        let b = users.iter().find(|u| u.id == bob.id()).expect("bob listed");
        assert_eq!(b.username, "bob");
        assert!(!b.is_admin);
        assert!(users.iter().any(|u| u.username == "ghost"));
    }
    // ...while the database holds no plaintext username.
    let stored = server.db.strings("SELECT username AS v FROM users").await;
    assert!(
        stored.iter().flatten().all(|u| u != "alice" && u != "bob"),
        "{stored:?}"
    );
    assert_error(bob.rest.admin_users().await, 403, "forbidden");
    assert_error(server.rest().admin_users().await, 401, "unauthorized");
}

#[tokio::test]
async fn disable_and_enable_a_user() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let bob2 = server.new_device(&bob).await;
    let mut ws = server.ws(&bob).await;
    let mut ws2 = server.ws(&bob2).await;
    let mut carol_ws = server.ws(&carol).await;
    bob.rest.channels().await.unwrap();

    let (status, body) = send_raw(
        server
            .admin()
            .request(Method::POST, &format!("/admin/users/{}/disable", bob.id())),
    )
    .await;
    assert_eq!(status, 204, "body: {body}");

    // Every session and socket of bob's is gone.
    assert_error(bob.rest.channels().await, 401, "unauthorized");
    assert_error(bob2.rest.channels().await, 401, "unauthorized");
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
    assert_eq!(wait_closed(&mut ws2).await, close_code::NORMAL);
    let e = dialtone::client::WsClient::connect(&server.ws_options(bob.token()))
        .await
        .err()
        .expect("a disabled user's token must not upgrade");
    assert_eq!(e.status(), Some(401));
    // He cannot log in again, and is told nothing a wrong password would not tell him.
    assert_error(login(&server, &bob).await, 401, "unauthorized");
    // Others are untouched.
    carol.rest.channels().await.unwrap();
    alice.rest.channels().await.unwrap();
    alice.rest.create_channel("bmFtZQ==").await.unwrap();
    carol_ws
        .expect_event(dialtone::protocol::ws::event_type::CHANNEL_UPDATED, WAIT)
        .await
        .expect("carol's socket is still open");

    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, &format!("/admin/users/{}/enable", bob.id())),
    )
    .await;
    assert_eq!(status, 204, "body: {body}");
    let back = login(&server, &bob).await.unwrap();
    assert_eq!(back.user_id, bob.id());
    assert_eq!(back.device_id, bob.device());
    server
        .rest()
        .with_token(&back.token)
        .channels()
        .await
        .unwrap();
    // Re-enabling does not resurrect the revoked sessions.
    assert_error(bob.rest.channels().await, 401, "unauthorized");
}

#[tokio::test]
async fn promote_and_demote_a_user() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_error(bob.rest.create_channel("Ym9i").await, 403, "forbidden");

    server
        .admin()
        .admin_user_action(bob.id(), "promote")
        .await
        .unwrap();
    // The same session now has admin rights.
    let channel = bob.rest.create_channel("Ym9i").await.unwrap();
    assert_eq!(channel.created_by, bob.id());
    bob.rest
        .mint_invite(&CreateInviteRequest::default())
        .await
        .unwrap();
    let ids = vec![bob.id().to_owned()];
    assert!(alice.rest.presence(&ids).await.unwrap().admins[bob.id()]);
    assert!(login(&server, &bob).await.unwrap().is_admin);

    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, &format!("/admin/users/{}/demote", bob.id())),
    )
    .await;
    assert_eq!(status, 204, "body: {body}");
    assert_error(bob.rest.create_channel("Ym9iMg==").await, 403, "forbidden");
    assert_error(
        bob.rest.mint_invite(&CreateInviteRequest::default()).await,
        403,
        "forbidden",
    );
    assert!(!alice.rest.presence(&ids).await.unwrap().admins[bob.id()]);
    assert!(!login(&server, &bob).await.unwrap().is_admin);
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // Neither the admin token nor alice herself can remove the only admin.
    for client in [server.admin(), alice.rest.clone()] {
        for action in ["demote", "disable"] {
            let e = assert_error(
                client.admin_user_action(alice.id(), action).await,
                409,
                "conflict",
            );
            assert!(e.to_string().contains("without an enabled admin"), "{e}");
        }
    }
    assert!(login(&server, &alice).await.unwrap().is_admin);
    alice
        .rest
        .channels()
        .await
        .expect("alice's session survived");

    // A disabled admin does not count: with bob promoted then disabled, alice is still the last.
    let admin = server.admin();
    admin.admin_user_action(bob.id(), "promote").await.unwrap();
    admin.admin_user_action(bob.id(), "disable").await.unwrap();
    assert_error(
        admin.admin_user_action(alice.id(), "demote").await,
        409,
        "conflict",
    );
    // Enabled again, bob is a second admin, and alice may step down.
    admin.admin_user_action(bob.id(), "enable").await.unwrap();
    admin.admin_user_action(alice.id(), "demote").await.unwrap();
    assert_error(
        admin.admin_user_action(bob.id(), "disable").await,
        409,
        "conflict",
    );
    // Demoting a non-admin or disabling a user is not affected.
    admin
        .admin_user_action(alice.id(), "disable")
        .await
        .unwrap();
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let admin = server.admin();
    for round in 0..20 {
        admin
            .admin_user_action(alice.id(), "promote")
            .await
            .unwrap();
        admin.admin_user_action(bob.id(), "promote").await.unwrap();
        let (a, b) = if round % 2 == 0 {
            // Each demotes the other with their own session.
            tokio::join!(
                alice.rest.admin_user_action(bob.id(), "demote"),
                bob.rest.admin_user_action(alice.id(), "demote"),
            )
        } else {
            // Disable one while demoting the other (the admin token passes no admin check first).
            tokio::join!(
                admin.admin_user_action(bob.id(), "disable"),
                admin.admin_user_action(alice.id(), "demote"),
            )
        };
        let users = admin.admin_users().await.unwrap();
        let enabled_admins = users
            .iter()
            .filter(|u| u.is_admin && u.disabled_at.is_none())
            .count();
        assert_eq!(enabled_admins, 1, "round {round}: {a:?} / {b:?}");
        // One won; the other lost the race (409) or had already lost its admin rights (403).
        assert!(a.is_ok() != b.is_ok(), "round {round}: {a:?} / {b:?}");
        admin.admin_user_action(bob.id(), "enable").await.unwrap();
    }
}

#[tokio::test]
async fn user_actions_need_an_admin_and_a_known_action() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    for action in ["explode", "DISABLE", "delete"] {
        let path = format!("/admin/users/{}/{action}", bob.id());
        let (status, body) = send_raw(server.admin().request(Method::POST, &path)).await;
        assert_eq!(status, 400, "action {action:?}: {body}");
        assert_error_body(&body, "invalid_request");
    }
    assert_error(
        server
            .admin()
            .admin_user_action(&uuid::Uuid::new_v4().to_string(), "disable")
            .await,
        404,
        "not_found",
    );
    // A non-admin cannot use them, not even to promote himself.
    assert_error(
        bob.rest.admin_user_action(bob.id(), "promote").await,
        403,
        "forbidden",
    );
    assert_error(
        bob.rest.admin_user_action(alice.id(), "disable").await,
        403,
        "forbidden",
    );
    assert_error(
        server.rest().admin_user_action(bob.id(), "promote").await,
        401,
        "unauthorized",
    );
    assert!(!login(&server, &bob).await.unwrap().is_admin);
    alice.rest.channels().await.unwrap();
}

#[tokio::test]
async fn admin_stats_shape() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let _ws = server.ws(&alice).await;
    let admin = server.admin();
    let admin_ref = &admin;
    eventually("the socket is counted", || async move {
        admin_ref.admin_stats().await.unwrap()["connections"] == 1
    })
    .await;
    let stats = admin.admin_stats().await.unwrap();
    assert!(stats["connections"].is_u64(), "{stats}");
    let mailboxes = stats["mailboxes"].as_object().expect("mailboxes object");
    for kind in ["db", "hub", "channel", "shard", "admin"] {
        let m = mailboxes
            .get(kind)
            .unwrap_or_else(|| panic!("mailbox {kind} missing: {stats}"));
        assert!(m.is_object() || m.is_number(), "mailbox {kind}: {m}");
    }
    assert!(
        stats.get("channels").is_some_and(|c| c.is_number()),
        "{stats}"
    );
    assert!(
        stats
            .get("messages_per_second")
            .is_some_and(|c| c.is_number()),
        "{stats}"
    );
    // An admin bearer may read them; others may not.
    alice.rest.admin_stats().await.unwrap();
    assert_error(bob.rest.admin_stats().await, 403, "forbidden");
    assert_error(server.rest().admin_stats().await, 401, "unauthorized");
}

#[tokio::test]
async fn metrics_are_admin_only() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("bmFtZQ==").await.unwrap();
    send_messages(&server, &alice, &channel.id, 3).await;

    let res = server
        .admin()
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("dialtone_messages_persisted"), "{text}");
    let persisted: f64 = text
        .lines()
        .find(|l| l.starts_with("dialtone_messages_persisted") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a dialtone_messages_persisted sample");
    assert!(persisted >= 3.0, "3 messages were persisted: {persisted}");

    let by_bearer = alice.rest.metrics_text().await.unwrap();
    assert!(by_bearer.contains("dialtone_messages_persisted"));
    assert_error(bob.rest.metrics_text().await, 403, "forbidden");
    assert_error(server.rest().metrics_text().await, 401, "unauthorized");
}
