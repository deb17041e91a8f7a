//! `POST /auth/register`: the answer, username and password rules, public keys, invites, duplicate
//! names and the first admin.

use base64::Engine;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{CreateInviteRequest, LoginRequest};
use reqwest::Method;

use crate::support::*;

use super::*;

#[tokio::test]
async fn register_answers_201_with_every_field() {
    let server = TestServer::start().await;
    let keys = DeviceKeypair::generate();
    let invite = server.invite().await;
    let before = chrono::Utc::now();
    let (status, body) = send_raw(server.rest().request(Method::POST, "/auth/register").json(
        &register_req("alice", "pw-alice-12345", &keys.public_key_b64(), &invite),
    ))
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(json_keys(&body), AUTH_FIELDS, "body: {body}");

    let token = body["token"].as_str().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .expect("token is base64url");
    assert_eq!(raw.len(), 32, "token is 32 random bytes");
    let user_id = body["user_id"].as_str().unwrap();
    let device_id = body["device_id"].as_str().unwrap();
    assert_uuid(user_id);
    assert_uuid(device_id);
    assert_ne!(user_id, device_id);
    let expires = assert_utc(body["expires_at"].as_str().unwrap());
    let ttl = expires - before;
    assert!(
        ttl > chrono::Duration::hours(23)
            && ttl <= chrono::Duration::hours(24) + chrono::Duration::minutes(1),
        "session TTL is 24 h, got {ttl}"
    );
    assert_eq!(body["username"], "alice");
    assert_eq!(body["device_public_key"], keys.public_key_b64());
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["is_trusted"], true);

    // The token is a live session on the device just created.
    let me = server.rest().with_token(token);
    let devices = me.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, device_id);
    assert_eq!(devices[0].user_id, user_id);
    assert_eq!(devices[0].public_key, keys.public_key_b64());
}

#[tokio::test]
async fn username_is_trimmed_and_lowercased() {
    let server = TestServer::start().await;
    let keys = DeviceKeypair::generate();
    let invite = server.invite().await;
    let auth = server
        .rest()
        .register(&register_req(
            "  MiXeD_Case ",
            "pw-mixed-12345",
            &keys.public_key_b64(),
            &invite,
        ))
        .await
        .unwrap();
    assert_eq!(auth.username, "mixed_case");

    // Login normalizes the same way.
    for name in ["mixed_case", "MIXED_CASE", "\tMixed_Case  "] {
        let again = server
            .rest()
            .login(&login_req(name, "pw-mixed-12345", &keys))
            .await
            .unwrap();
        assert_eq!(again.user_id, auth.user_id, "login as {name:?}");
        assert_eq!(again.username, "mixed_case");
    }

    // The normalized name is taken: another spelling of it is a duplicate.
    let invite = server.invite().await;
    assert_error(
        register(&server, " MIXED_case", &invite).await,
        409,
        "conflict",
    );

    // Non-ASCII letters are lowercased too.
    let invite = server.invite().await;
    let auth = register(&server, "ÄBÇ", &invite).await.unwrap();
    assert_eq!(auth.username, "äbç");
}

#[tokio::test]
async fn username_length_and_characters_are_checked() {
    let server = TestServer::start().await;
    let invite = invite_with(
        &server,
        CreateInviteRequest {
            max_uses: Some(3),
            ..Default::default()
        },
    )
    .await;
    let too_long = "x".repeat(33);
    let bad = [
        "",
        "a",
        "   a   ",
        too_long.as_str(),
        "al ice",
        "al\tice",
        "al\u{a0}ice",
        "al\u{7}ice",
        "al\nice",
        "al\u{0}ice",
    ];
    for name in bad {
        let e = assert_error(
            register(&server, name, &invite).await,
            400,
            "invalid_request",
        );
        assert!(!e.to_string().is_empty());
    }
    // Refused registrations did not use the invite; the boundaries are accepted.
    let two = register(&server, "ab", &invite).await.unwrap();
    assert_eq!(two.username, "ab");
    let max = "y".repeat(32);
    let long = register(&server, &max, &invite).await.unwrap();
    assert_eq!(long.username, max);
    // 32 characters, 64 bytes: length is counted in characters.
    let wide = "é".repeat(32);
    let wide_user = register(&server, &wide, &invite).await.unwrap();
    assert_eq!(wide_user.username, wide);
}

#[tokio::test]
async fn new_usernames_refuse_invisible_and_bidi_characters() {
    let server = TestServer::start().await;
    let invite = invite_with(
        &server,
        CreateInviteRequest {
            max_uses: Some(2),
            ..Default::default()
        },
    )
    .await;
    for name in [
        "al\u{200B}ice",
        "al\u{200D}ice",
        "\u{FEFF}alice",
        "al\u{202E}ecila",
        "al\u{2066}ice",
        "al\u{00AD}ice",
        "al\u{3164}ice",
    ] {
        let e = assert_error(
            register(&server, name, &invite).await,
            400,
            "invalid_request",
        );
        assert!(
            e.to_string()
                .contains("invisible, formatting or bidirectional"),
            "{name:?}: {e}"
        );
        let (status, body) = send_raw(
            server
                .admin()
                .request(Method::POST, "/users")
                .json(&serde_json::json!({ "username": name })),
        )
        .await;
        assert_eq!(status, 400, "POST /users {name:?}: {body}");
    }
    // None of that used the invite.
    register(&server, "alice", &invite).await.unwrap();
}

#[tokio::test]
async fn a_v1_name_with_an_invisible_character_still_logs_in() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    // What a v1 server stored for "al<ZWSP>ice": v1 normalized by trim and lowercase only.
    let v1_name = "al\u{200B}ice";
    server
        .db
        .execute(&format!(
            "UPDATE users SET username_hash = '{}' WHERE id = '{}'",
            username_hash("test-pepper-0123456789", v1_name),
            alice.id()
        ))
        .await;
    let ok = server
        .rest()
        .login(&login_req(
            " AL\u{200B}ICE ",
            &password("alice"),
            &alice.keys,
        ))
        .await
        .expect("the v1 account logs in under its v1 name");
    assert_eq!(ok.user_id, alice.id());
    // A wrong password on such a name is the ordinary 401, never a validation 400.
    assert_error(
        server
            .rest()
            .login(&login_req(v1_name, "pw-wrong-99999", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
    assert_error(
        server
            .rest()
            .login(&login_req("bo\u{202E}b", "pw-wrong-99999", &alice.keys))
            .await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn password_rules_are_enforced() {
    let server = TestServer::start().await;
    let keys = DeviceKeypair::generate();
    let invite = invite_with(
        &server,
        CreateInviteRequest {
            max_uses: Some(2),
            ..Default::default()
        },
    )
    .await;
    let too_long = format!("a1{}", "x".repeat(1023)); // 1025 bytes
    let bad = [
        "",
        "abcdef1",
        "abcdefgh",
        "12345678",
        "        ",
        too_long.as_str(),
    ];
    for (i, pw) in bad.into_iter().enumerate() {
        let r = server
            .rest()
            .register(&register_req(
                &format!("user{i}"),
                pw,
                &keys.public_key_b64(),
                &invite,
            ))
            .await;
        assert_error(r, 400, "invalid_request");
    }
    // Boundaries: exactly 8 bytes, exactly 1024 bytes.
    let eight = server
        .rest()
        .register(&register_req(
            "eight",
            "abcdefg1",
            &keys.public_key_b64(),
            &invite,
        ))
        .await
        .unwrap();
    assert_eq!(eight.username, "eight");
    let max = format!("a1{}", "x".repeat(1022));
    assert_eq!(max.len(), 1024);
    let long = server
        .rest()
        .register(&register_req(
            "longpw",
            &max,
            &DeviceKeypair::generate().public_key_b64(),
            &invite,
        ))
        .await
        .unwrap();
    // The password really is the one stored.
    let again = server
        .rest()
        .login(&LoginRequest {
            username: "longpw".into(),
            password: max.clone(),
            public_key: long.device_public_key.clone(),
            invite_token: None,
        })
        .await
        .unwrap();
    assert_eq!(again.user_id, long.user_id);
}

#[tokio::test]
async fn public_key_must_be_base64_of_32_bytes() {
    let server = TestServer::start().await;
    let invite = server.invite().await;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let short = b64(31);
    let long = b64(33);
    let hex64 = "ab".repeat(32);
    let bad = [
        "",
        "not base64 at all!!",
        "AAAA",
        short.as_str(),
        long.as_str(),
        hex64.as_str(),
    ];
    for key in bad {
        let r = server
            .rest()
            .register(&register_req("alice", "pw-alice-12345", key, &invite))
            .await;
        assert_error(r, 400, "invalid_request");
    }
    // The invite is still good for a valid key.
    let ok = register(&server, "alice", &invite).await.unwrap();
    assert_eq!(ok.username, "alice");
}

#[tokio::test]
async fn unknown_invite_is_404() {
    let server = TestServer::start().await;
    let e = assert_error(
        register(&server, "alice", "no-such-invite-token").await,
        404,
        "not_found",
    );
    assert!(e.to_string().contains("invite"), "{e}");
    // A well-formed but never minted token is unknown too.
    let fake = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 32]);
    assert_error(register(&server, "alice", &fake).await, 404, "not_found");
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 0);
}

#[tokio::test]
async fn used_invite_is_410_invite_used() {
    let server = TestServer::start().await;
    let invite = server.invite().await;
    register(&server, "alice", &invite).await.unwrap();
    let e = assert_error(register(&server, "bob", &invite).await, 410, "invite_used");
    match e {
        dialtone::client::ClientError::Api { message, .. } => {
            assert_eq!(message, "invite already used")
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 1);
}

#[tokio::test]
async fn expired_invite_is_410_invite_expired() {
    let server = TestServer::start().await;
    let invite = server
        .admin()
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: Some(1),
            max_uses: None,
        })
        .await
        .unwrap();
    let expires = assert_utc(&invite.expires_at);
    // Wait until the clock (the server's: same machine) has passed the expiry the server reported
    // (microseconds, as stored); no margin to guess.
    while let Ok(left) = (expires - chrono::Utc::now()).to_std() {
        tokio::time::sleep(left + std::time::Duration::from_millis(1)).await;
    }
    let e = assert_error(
        register(&server, "alice", &invite.token).await,
        410,
        "invite_expired",
    );
    match e {
        dialtone::client::ClientError::Api { message, .. } => assert_eq!(message, "invite expired"),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 0);
}

#[tokio::test]
async fn duplicate_username_is_409_and_keeps_the_invite() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let invite = server.invite().await;
    assert_error(register(&server, "alice", &invite).await, 409, "conflict");
    assert_error(
        register(&server, "  ALICE ", &invite).await,
        409,
        "conflict",
    );
    assert_eq!(server.db.count("SELECT count(*) AS v FROM users").await, 1);
    assert_eq!(
        server.db.count("SELECT count(*) AS v FROM devices").await,
        1
    );
    // The same invite still registers someone else.
    let bob = register(&server, "bob", &invite).await.unwrap();
    assert_eq!(bob.username, "bob");
    assert_ne!(bob.user_id, alice.id());
    // ...and now it is used.
    assert_error(
        register(&server, "carol", &invite).await,
        410,
        "invite_used",
    );
}

#[tokio::test]
async fn first_user_is_admin_and_everyone_is_trusted() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    assert!(alice.auth.is_admin);
    assert!(!bob.auth.is_admin);
    assert!(!carol.auth.is_admin);
    for u in [&alice, &bob, &carol] {
        assert!(u.auth.is_trusted, "{} is trusted", u.name);
    }
    // Login reports the same flags.
    let bob2 = server.new_device(&bob).await;
    assert!(!bob2.auth.is_admin);
    assert!(bob2.auth.is_trusted);
    let alice2 = server.new_device(&alice).await;
    assert!(alice2.auth.is_admin);
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM users WHERE is_admin")
            .await,
        1
    );
}
