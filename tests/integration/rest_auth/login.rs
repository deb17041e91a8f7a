//! `POST /auth/login`, `POST /auth/logout` and bearer authentication: the answer, v1 invite
//! tokens, wrong passwords alike, device reuse, revocation, schemes and expiry.

use base64::Engine;
use dialtone::client::rest::Credentials;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::LoginRequest;
use dialtone::protocol::ws::close_code;
use reqwest::Method;

use crate::support::*;

use super::*;

#[tokio::test]
async fn login_answers_200_with_the_register_shape() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, body) = send_raw(
        server
            .rest()
            .request(Method::POST, "/auth/login")
            .json(&login_req("alice", &password("alice"), &alice.keys)),
    )
    .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(json_keys(&body), AUTH_FIELDS, "body: {body}");
    assert_eq!(body["user_id"], alice.id());
    assert_eq!(body["device_id"], alice.device());
    assert_eq!(body["username"], "alice");
    assert_eq!(body["device_public_key"], alice.keys.public_key_b64());
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["is_trusted"], true);
    assert_utc(body["expires_at"].as_str().unwrap());
    let token = body["token"].as_str().unwrap();
    assert_ne!(token, alice.token(), "a login is a new session");
    // Both sessions work.
    server.rest().with_token(token).devices().await.unwrap();
    alice.rest.devices().await.unwrap();
}

#[tokio::test]
async fn login_accepts_and_ignores_a_v1_invite_token() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let invite = server.invite().await;
    for extra in ["garbage-token", invite.as_str()] {
        let auth = server
            .rest()
            .login(&LoginRequest {
                invite_token: Some(extra.to_owned()),
                ..login_req("alice", &password("alice"), &alice.keys)
            })
            .await
            .unwrap();
        assert_eq!(auth.user_id, alice.id());
        assert_eq!(auth.device_id, alice.device());
    }
    // The invite sent along was not consumed.
    let bob = register(&server, "bob", &invite).await.unwrap();
    assert_eq!(bob.username, "bob");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_401_alike() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let wrong_pw = assert_error(
        server
            .rest()
            .login(&login_req("alice", "pw-wrong-99999", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    let unknown = assert_error(
        server
            .rest()
            .login(&login_req("mallory", "pw-alice-12345", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    assert_eq!(
        wrong_pw.to_string(),
        unknown.to_string(),
        "the two failures must look the same"
    );
    // An invalid username is just an unknown user, not a validation error.
    assert_error(
        server
            .rest()
            .login(&login_req("x", "pw-alice-12345", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    // A password-less placeholder user cannot log in with any password.
    server.admin().create_user("ghost").await.unwrap();
    assert_error(
        server
            .rest()
            .login(&login_req("ghost", "pw-ghost-12345", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    assert_error(
        server
            .rest()
            .login(&login_req("ghost", "", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    // Failed logins created no devices.
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM devices").await,
        1
    );
}

#[tokio::test]
async fn login_reuses_the_device_of_a_known_key() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let same = server
        .rest()
        .login(&login_req("alice", &password("alice"), &alice.keys))
        .await
        .unwrap();
    assert_eq!(same.device_id, alice.device());

    let laptop = DeviceKeypair::generate();
    let second = server
        .rest()
        .login(&login_req("alice", &password("alice"), &laptop))
        .await
        .unwrap();
    assert_ne!(second.device_id, alice.device());
    assert_uuid(&second.device_id);
    assert_eq!(second.device_public_key, laptop.public_key_b64());

    let third = server
        .rest()
        .login(&login_req("alice", &password("alice"), &laptop))
        .await
        .unwrap();
    assert_eq!(third.device_id, second.device_id);

    let mut ids: Vec<String> = alice
        .rest
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    let mut want = vec![alice.device().to_owned(), second.device_id.clone()];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn logout_revokes_the_session_and_closes_its_socket() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let other = server.new_device(&alice).await;
    let mut ws = server.ws(&alice).await;
    alice.rest.devices().await.unwrap();

    let (status, body) = send_raw(alice.rest.request(Method::POST, "/auth/logout")).await;
    assert_eq!(status, 204, "body: {body}");
    assert_eq!(body, serde_json::Value::Null, "204 has no body");

    assert_error(alice.rest.devices().await, 401, "unauthorized");
    assert_error(alice.rest.channels().await, 401, "unauthorized");
    assert_error(alice.rest.logout().await, 401, "unauthorized");
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
    // The WebSocket cannot be reopened with the revoked token.
    let e = dialtone::client::WsClient::connect(&server.ws_options(alice.token()))
        .await
        .err()
        .expect("revoked token must not upgrade");
    assert_eq!(e.status(), Some(401), "{e}");
    // Another session of the same user is untouched.
    other.rest.devices().await.unwrap();
}

#[tokio::test]
async fn missing_or_garbage_bearer_is_401() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    assert_error(server.rest().channels().await, 401, "unauthorized");
    let garbage = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 32]);
    for token in ["garbage", garbage.as_str(), &format!("{}x", alice.token())] {
        assert_error(
            server.rest().with_token(token).channels().await,
            401,
            "unauthorized",
        );
    }
    for header in [
        format!("Basic {}", alice.token()),
        alice.token().to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let (status, body) = send_raw(
            server
                .rest()
                .request(Method::GET, "/channels")
                .header("Authorization", &header),
        )
        .await;
        assert_eq!(status, 401, "Authorization: {header:?} → {body}");
        assert_error_body(&body, "unauthorized");
    }
    // An admin token is not a session token.
    let as_bearer = server
        .rest()
        .with_credentials(Credentials::Bearer(server.admin_token.clone()));
    assert_error(as_bearer.channels().await, 401, "unauthorized");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    alice.rest.create_channel("bmFtZQ==").await.unwrap();
    for scheme in ["bearer", "BEARER", "BeArEr", "Bearer"] {
        let (status, body) = send_raw(
            server
                .rest()
                .request(Method::GET, "/channels")
                .header("Authorization", format!("{scheme} {}", alice.token())),
        )
        .await;
        assert_eq!(status, 200, "scheme {scheme}: {body}");
        assert_eq!(body["channels"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test]
async fn expired_session_is_401_token_expired() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    server
        .db
        .execute(&format!(
            "UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE user_id = '{}'",
            bob.id()
        ))
        .await;
    let e = assert_error(bob.rest.channels().await, 401, "token_expired");
    match e {
        dialtone::client::ClientError::Api { message, .. } => assert_eq!(message, "token expired"),
        other => panic!("unexpected error {other:?}"),
    }
    alice.rest.channels().await.unwrap();
}
