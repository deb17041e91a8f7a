//! `POST /users` (admin-only placeholder users), `GET|POST /users/profiles` and `POST /presence`.

use dialtone::client::rest::Credentials;
use dialtone::protocol::ws::{close_code, event_type};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn placeholder_user_by_admin_bearer_is_201() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/users")
            .json(&json!({"username": "  Ghost "})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_uuid(body["id"].as_str().unwrap());
    assert_eq!(body["username"], "ghost");
    assert_eq!(body["is_admin"], false);
    assert_eq!(body["has_password"], false);
    assert_utc(body["created_at"].as_str().unwrap());
    let id = body["id"].as_str().unwrap();
    // It exists (the admin listing shows it) and has no password and no device.
    let users = server.admin().admin_users().await.unwrap();
    let ghost = users
        .iter()
        .find(|u| u.id == id)
        .expect("placeholder listed");
    assert_eq!(ghost.username, "ghost");
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM users WHERE id = '{id}' AND password_hash IS NULL"
            ))
            .await,
        1
    );
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM devices WHERE user_id = '{id}'"
            ))
            .await,
        0
    );
}

#[tokio::test]
async fn placeholder_user_by_admin_token_is_201() {
    let server = TestServer::start().await;
    let (status, body) = send_raw(
        server
            .admin()
            .request(Method::POST, "/users")
            .json(&json!({"username": "ghost"})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(body["username"], "ghost");
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 1);
}

#[tokio::test]
async fn placeholder_user_is_admin_only() {
    let server = TestServer::start().await;
    let _alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_error(bob.rest.create_user("ghost").await, 403, "forbidden");
    assert_error(
        server.rest().create_user("ghost").await,
        401,
        "unauthorized",
    );
    let wrong = server
        .rest()
        .with_credentials(Credentials::AdminToken("not-the-admin-token".into()));
    assert_error(wrong.create_user("ghost").await, 401, "unauthorized");
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM users").await,
        2,
        "nothing was created"
    );
}

#[tokio::test]
async fn placeholder_user_duplicate_is_409_and_bad_name_400() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    alice.rest.create_user("ghost").await.unwrap();
    assert_error(alice.rest.create_user("ghost").await, 409, "conflict");
    assert_error(alice.rest.create_user(" GHOST ").await, 409, "conflict");
    // A registered user's name is taken too.
    assert_error(alice.rest.create_user("alice").await, 409, "conflict");
    assert_error(alice.rest.create_user("g").await, 400, "invalid_request");
    assert_error(
        alice.rest.create_user("gh ost").await,
        400,
        "invalid_request",
    );
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 2);
}

#[tokio::test]
async fn profiles_are_stored_and_listed_newest_first() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    assert_eq!(bob.rest.profiles().await.unwrap(), vec![]);

    let (status, body) = send_raw(
        alice
            .rest
            .request(Method::POST, "/users/profiles")
            .json(&json!({"name_enc": "YWxpY2UtMQ=="})),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(body, json!({"status": "ok"}));
    bob.rest.set_profile("Ym9iLTE=", None).await.unwrap();

    let (status, body) = send_raw(bob.rest.request(Method::GET, "/users/profiles")).await;
    assert_eq!(status, 200);
    assert_eq!(json_keys(&body), ["profiles"]);
    for p in body["profiles"].as_array().unwrap() {
        assert_eq!(
            json_keys(p),
            ["name_enc", "updated_at", "user_id"],
            "profile {p}"
        );
        assert_utc(p["updated_at"].as_str().unwrap());
    }
    let profiles = bob.rest.profiles().await.unwrap();
    let order: Vec<(&str, &str)> = profiles
        .iter()
        .map(|p| (p.user_id.as_str(), p.name_enc.as_str()))
        .collect();
    assert_eq!(
        order,
        [(bob.id(), "Ym9iLTE="), (alice.id(), "YWxpY2UtMQ==")]
    );

    // Updating replaces the profile and moves it to the front.
    alice.rest.set_profile("YWxpY2UtMg==", None).await.unwrap();
    let profiles = alice.rest.profiles().await.unwrap();
    let order: Vec<(&str, &str)> = profiles
        .iter()
        .map(|p| (p.user_id.as_str(), p.name_enc.as_str()))
        .collect();
    assert_eq!(
        order,
        [(alice.id(), "YWxpY2UtMg=="), (bob.id(), "Ym9iLTE=")]
    );
    assert!(assert_utc(&profiles[0].updated_at) >= assert_utc(&profiles[1].updated_at));
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM user_profiles")
            .await,
        2
    );
}

#[tokio::test]
async fn profile_update_is_announced_to_everyone() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut ws = server.ws(&bob).await;
    alice.rest.set_profile("YWxpY2U=", None).await.unwrap();
    let event = ws
        .expect_event(event_type::USER_PROFILE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(event.sender, alice.id());
}

#[tokio::test]
async fn profiles_need_a_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    alice.rest.set_profile("YWxpY2U=", None).await.unwrap();
    assert_error(server.rest().profiles().await, 401, "unauthorized");
    assert_error(
        server.rest().set_profile("bWFsbG9yeQ==", None).await,
        401,
        "unauthorized",
    );
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM user_profiles")
            .await,
        1
    );
}

async fn presence(user: &TestUser, ids: &[String]) -> dialtone::protocol::rest::PresenceResponse {
    user.rest.presence(ids).await.expect("presence")
}

#[tokio::test]
async fn presence_reports_open_sockets_and_admins() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let nobody = uuid::Uuid::new_v4().to_string();
    let ids = vec![
        alice.id().to_owned(),
        bob.id().to_owned(),
        carol.id().to_owned(),
        nobody.clone(),
    ];

    let (status, body) = send_raw(
        carol
            .rest
            .request(Method::POST, "/presence")
            .json(&json!({"user_ids": ids})),
    )
    .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), ["admins", "statuses"]);
    let before = presence(&carol, &ids).await;
    for id in &ids {
        assert_eq!(
            before.statuses.get(id),
            Some(&false),
            "nobody is online yet: {before:?}"
        );
    }

    let mut ws = server.ws(&bob).await;
    let (asker, ids_ref, bob_id) = (&carol, &ids, bob.id());
    eventually("bob shows online", || async move {
        presence(asker, ids_ref).await.statuses.get(bob_id) == Some(&true)
    })
    .await;
    let online = presence(&carol, &ids).await;
    let statuses: Vec<(&str, bool)> = ids
        .iter()
        .map(|id| (id.as_str(), online.statuses[id]))
        .collect();
    assert_eq!(
        statuses,
        [
            (alice.id(), false),
            (bob.id(), true),
            (carol.id(), false),
            (nobody.as_str(), false)
        ]
    );
    assert_eq!(online.statuses.len(), 4);
    let admins: Vec<(&str, bool)> = ids
        .iter()
        .map(|id| (id.as_str(), online.admins[id]))
        .collect();
    assert_eq!(
        admins,
        [
            (alice.id(), true),
            (bob.id(), false),
            (carol.id(), false),
            (nobody.as_str(), false)
        ]
    );
    assert_eq!(online.admins.len(), 4);

    ws.close().await.unwrap();
    eventually("bob shows offline after closing", || async move {
        presence(asker, ids_ref).await.statuses.get(bob_id) == Some(&false)
    })
    .await;
}

#[tokio::test]
async fn presence_counts_sockets_per_user() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bob2 = server.new_device(&bob).await;
    let ids = vec![bob.id().to_owned()];
    let mut first = server.ws(&bob).await;
    let mut second = server.ws(&bob2).await;
    let (asker, ids_ref, bob_id) = (&alice, &ids, bob.id());
    eventually("bob shows online", || async move {
        presence(asker, ids_ref).await.statuses[bob_id]
    })
    .await;
    first.close().await.unwrap();
    // The server answers the client's close handshake with a normal close.
    assert_eq!(wait_closed(&mut first).await, close_code::NORMAL);
    // The server left the hub before sending its close frame, so this presence query is answered
    // after the first socket's departure: one socket is still open, bob stays online.
    assert!(
        presence(&alice, &ids).await.statuses[bob.id()],
        "bob still has a socket"
    );
    second.close().await.unwrap();
    eventually("bob shows offline", || async move {
        !presence(asker, ids_ref).await.statuses[bob_id]
    })
    .await;
}

#[tokio::test]
async fn presence_accepts_at_most_1000_ids() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let many: Vec<String> = (0..1000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let ok = alice.rest.presence(&many).await.unwrap();
    assert_eq!(ok.statuses.len(), 1000);
    assert_eq!(ok.admins.len(), 1000);
    let mut too_many = many.clone();
    too_many.push(alice.id().to_owned());
    assert_error(alice.rest.presence(&too_many).await, 400, "invalid_request");
    let empty = alice.rest.presence(&[]).await.unwrap();
    assert!(empty.statuses.is_empty() && empty.admins.is_empty());
}

#[tokio::test]
async fn presence_needs_a_session() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    assert_error(
        server.rest().presence(&[alice.id().to_owned()]).await,
        401,
        "unauthorized",
    );
}
