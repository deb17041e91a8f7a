//! Invites: minting with the admin token or an admin bearer, use and expiry limits, bad options,
//! listing without tokens, revocation.

use std::time::Duration;

use dialtone::client::rest::Credentials;
use dialtone::protocol::rest::CreateInviteRequest;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

use super::*;

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
