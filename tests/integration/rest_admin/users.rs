//! The `/admin/users` endpoints: decrypted listing, disable/enable, promote/demote, and the rule
//! that the last enabled admin stays.

use dialtone::protocol::rest::CreateInviteRequest;
use dialtone::protocol::ws::close_code;
use reqwest::Method;

use crate::support::*;

use super::*;

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
