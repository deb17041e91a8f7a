//! The rate-limit layer (README "Rate limits"): every limit refuses with `429 rate_limited` and
//! `Retry-After` (REST) or a `rate_limited` error event naming the frame (WebSocket), is counted
//! in `/metrics`, and leaves everyone else's traffic alone. Limits are set tiny per test, with
//! refill times of minutes, so what passes and what is refused does not depend on speed.

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::rest::{ChannelKeysUpload, EnvelopeUpload, LoginRequest, RegisterRequest};
use dialtone::protocol::ws::{ClientFrame, error_code, event_type};
use reqwest::Method;

use crate::support::*;
use crate::ws_events::expect_error;

fn limited(limit: &str) -> String {
    format!("dialtone_rate_limited_total{{limit=\"{limit}\"}}")
}

/// Send `req`; the status, `Retry-After` (seconds) and the JSON body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Option<u64>, serde_json::Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry, body)
}

/// Assert a `429 rate_limited` whose message names `limit`, with a positive `Retry-After`.
#[track_caller]
fn assert_limited(got: &(u16, Option<u64>, serde_json::Value), limit: &str) {
    let (status, retry, body) = got;
    assert_eq!(*status, 429, "{body}");
    assert_error_body(body, "rate_limited");
    assert!(
        body["error"].as_str().is_some_and(|m| m.contains(limit)),
        "{body}"
    );
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
}

fn login_body(username: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        password: password.into(),
        public_key: dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        invite_token: None,
    }
}

async fn login_from(
    server: &TestServer,
    forwarded_for: Option<&str>,
    body: &LoginRequest,
) -> (u16, Option<u64>, serde_json::Value) {
    let mut req = server
        .rest()
        .request(Method::POST, "/auth/login")
        .json(body);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    send(req).await
}

#[tokio::test]
async fn login_per_address_refuses_with_retry_after_and_spares_signed_in_users() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "3/hour");
    })
    .await;
    let alice = server.user("alice").await;
    for _ in 0..3 {
        let got = login_from(&server, None, &login_body("alice", "wrong-password-1")).await;
        assert_eq!(got.0, 401, "{:?}", got.2);
    }
    // The right password from the same address is refused too: the bucket is the address's.
    let got = login_from(&server, None, &login_body("alice", &password("alice"))).await;
    assert_limited(&got, "login_ip");
    // A signed-in user's requests from that address are not login attempts.
    alice.rest.channels().await.expect("GET /channels");
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("login_ip")), 1);
    assert!(m.counter("dialtone_login_failures_total") >= 3);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let trusted = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "2/hour")
            .set("DIALTONE_TRUSTED_PROXIES", "127.0.0.0/8");
    })
    .await;
    let wrong = login_body("nobody", "wrong-password-1");
    // Behind a trusted proxy, each forwarded client has its own bucket; a forged entry left of
    // the proxy's own does not make a new one.
    for xff in ["198.51.100.1", "6.6.6.6, 198.51.100.1"] {
        assert_eq!(login_from(&trusted, Some(xff), &wrong).await.0, 401);
    }
    assert_limited(
        &login_from(&trusted, Some("7.7.7.7, 198.51.100.1"), &wrong).await,
        "login_ip",
    );
    assert_eq!(
        login_from(&trusted, Some("198.51.100.2"), &wrong).await.0,
        401,
        "another client behind the proxy still gets through"
    );

    // Without trusted proxies the header is the client's word and changes nothing.
    let untrusted = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "2/hour");
    })
    .await;
    for xff in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(login_from(&untrusted, Some(xff), &wrong).await.0, 401);
    }
    assert_limited(
        &login_from(&untrusted, Some("198.51.100.3"), &wrong).await,
        "login_ip",
    );
}

#[tokio::test]
async fn login_per_account_is_keyed_by_the_normalized_username() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "off")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "2/hour");
    })
    .await;
    let _alice = server.user("alice").await;
    let _bob = server.user("bob").await;
    for name in ["alice", "ALICE"] {
        let got = login_from(&server, None, &login_body(name, "wrong-password-1")).await;
        assert_eq!(got.0, 401);
    }
    let got = login_from(&server, None, &login_body(" Alice ", &password("alice"))).await;
    assert_limited(&got, "login_account");
    // Another account is untouched.
    let got = login_from(&server, None, &login_body("bob", &password("bob"))).await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("login_account")),
        1
    );
}

fn register_body(username: &str) -> RegisterRequest {
    RegisterRequest {
        username: username.into(),
        password: "a-long-password-1".into(),
        public_key: dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        invite_token: "no-such-invite".into(),
    }
}

async fn register(
    server: &TestServer,
    body: &RegisterRequest,
) -> (u16, Option<u64>, serde_json::Value) {
    send(
        server
            .rest()
            .request(Method::POST, "/auth/register")
            .json(body),
    )
    .await
}

#[tokio::test]
async fn registration_per_address_and_per_account() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_REGISTER_IP", "4/hour")
            .set("DIALTONE_LIMIT_REGISTER_ACCOUNT", "2/hour");
    })
    .await;
    // Junk invites: each attempt is answered (404) but costs a token.
    for name in ["carol", "carol"] {
        assert_eq!(register(&server, &register_body(name)).await.0, 404);
    }
    assert_limited(
        &register(&server, &register_body("Carol")).await,
        "register_account",
    );
    assert_eq!(register(&server, &register_body("dave")).await.0, 404);
    // The address has spent its four tokens (the account's refusal came after the address's).
    assert_limited(
        &register(&server, &register_body("erin")).await,
        "register_ip",
    );
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("register_account")), 1);
    assert_eq!(m.counter(&limited("register_ip")), 1);
}

#[tokio::test]
async fn websocket_upgrades_per_address() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_WS_UPGRADE_IP", "2/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let mut first = server.ws(&alice).await;
    let _second = server.ws(&alice).await;
    let refused = WsClient::connect(&server.ws_options(alice.token())).await;
    assert_error(refused.map(|_| ()), 429, "rate_limited");
    // Open sockets and REST are not upgrades.
    ws_ready(&mut first).await;
    alice.rest.channels().await.expect("GET /channels");
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("ws_upgrade_ip")),
        1
    );
}

#[tokio::test]
async fn sockets_per_user_are_capped_and_a_closed_socket_frees_its_slot() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_MAX_SOCKETS_PER_USER", "2");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut a1 = server.ws(&alice).await;
    let mut a2 = server.ws(&alice).await;
    ws_ready(&mut a1).await;
    ws_ready(&mut a2).await;
    let refused = WsClient::connect(&server.ws_options(alice.token())).await;
    assert_error(refused.map(|_| ()), 429, "rate_limited");
    let mut b = server.ws(&bob).await;
    ws_ready(&mut b).await;
    a2.close().await.ok();
    drop(a2);
    // The slot comes back when the server has ended that session.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        match WsClient::connect(&server.ws_options(alice.token())).await {
            Ok(ws) => break ws,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the closed socket's slot never came back: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    ws_ready(&mut again).await;
    assert!(
        Scrape::of(&server)
            .await
            .counter(&limited("sockets_per_user"))
            >= 1
    );
}

/// Read events until `n` frames of this socket were answered: (echoes whose client_message_id
/// starts with `prefix`, error events). Echoes of other sockets' sends are skipped.
async fn answers(
    ws: &mut WsClient,
    prefix: &str,
    n: usize,
) -> (Vec<String>, Vec<dialtone::protocol::ws::Event>) {
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    while accepted.len() + refused.len() < n {
        match ws.next_within(WAIT).await.unwrap() {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                let id = e.client_message_id.unwrap_or_default();
                if id.starts_with(prefix) {
                    accepted.push(id);
                }
            }
            Some(Incoming::Event(e)) if e.kind == event_type::ERROR => refused.push(*e),
            Some(Incoming::Event(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (accepted, refused)
}

#[tokio::test]
async fn the_message_budget_is_per_user_across_all_their_sockets() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_MESSAGES", "5/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut ws = server.ws(&alice).await;
        ws_ready(&mut ws).await;
        sockets.push(ws);
    }
    // Three sends on each of three sockets: nine frames, five tokens.
    let (mut accepted, mut refused) = (0, Vec::new());
    for (s, ws) in sockets.iter_mut().enumerate() {
        for i in 0..3 {
            ws.send(&ClientFrame::channel_message(
                &channel.id,
                "eA==",
                "bg==",
                Some(format!("s{s}m{i}")),
            ))
            .await
            .unwrap();
        }
        let (own, errors) = answers(ws, &format!("s{s}"), 3).await;
        accepted += own.len();
        refused.extend(errors);
    }
    assert_eq!(accepted, 5, "five tokens for the user, whatever the socket");
    assert_eq!(refused.len(), 4);
    for e in &refused {
        assert_eq!(e.code.as_deref(), Some(error_code::RATE_LIMITED), "{e:?}");
        assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
        assert!(e.client_message_id.is_some(), "{e:?}");
        assert!(e.message.as_deref().unwrap_or("").contains("user_messages"));
    }
    // Bob's budget is his own.
    let mut b = server.ws(&bob).await;
    b.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        Some("b".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut b, "b", 1).await;
    assert_eq!((ok.len(), errors.len()), (1, 0), "{errors:?}");
    assert_eq!(
        Scrape::of(&server).await.counter(&limited("user_messages")),
        4
    );
}

#[tokio::test]
async fn the_byte_budget_is_per_user_across_sockets() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_BYTES", "100/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let body = "QUFB".repeat(15); // 60 bytes
    let mut one = server.ws(&alice).await;
    let mut two = server.ws(&alice).await;
    ws_ready(&mut two).await;
    one.send(&ClientFrame::channel_message(
        &channel.id,
        &body,
        "bg==",
        Some("a".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut one, "a", 1).await;
    assert_eq!((ok.len(), errors.len()), (1, 0), "{errors:?}");
    two.send(&ClientFrame::channel_message(
        &channel.id,
        &body,
        "bg==",
        Some("b".into()),
    ))
    .await
    .unwrap();
    let (_, errors) = answers(&mut two, "b", 1).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code.as_deref(), Some(error_code::RATE_LIMITED));
    assert_eq!(errors[0].client_message_id.as_deref(), Some("b"));
    // A short message still fits what is left.
    two.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bg==",
        Some("c".into()),
    ))
    .await
    .unwrap();
    let (ok, errors) = answers(&mut two, "c", 1).await;
    assert_eq!((ok, errors.len()), (vec!["c".to_owned()], 0));
    assert_eq!(Scrape::of(&server).await.counter(&limited("user_bytes")), 1);
}

#[tokio::test]
async fn history_is_throttled_across_rest_and_sync() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_HISTORY", "3/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let path = format!("/channels/messages?channel_id={}", channel.id);
    for _ in 0..2 {
        let got = send(alice.rest.request(Method::GET, &path)).await;
        assert_eq!(got.0, 200, "{:?}", got.2);
    }
    let mut ws = server.ws(&alice).await;
    ws.send(&ClientFrame::sync(&channel.id, None))
        .await
        .unwrap();
    ws.expect_event(event_type::SYNC_COMPLETE, WAIT)
        .await
        .unwrap();
    assert_limited(
        &send(alice.rest.request(Method::GET, &path)).await,
        "history",
    );
    ws.send(&ClientFrame::sync(&channel.id, None))
        .await
        .unwrap();
    let e = expect_error(&mut ws, error_code::RATE_LIMITED).await;
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));
    // Bob's bucket is his own.
    let got = send(bob.rest.request(Method::GET, &path)).await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    assert_eq!(Scrape::of(&server).await.counter(&limited("history")), 2);
}

#[tokio::test]
async fn syncs_sent_back_to_back_all_run_in_order() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut channels = Vec::new();
    for i in 0..5 {
        channels.push(
            alice
                .rest
                .create_channel(&format!("Y2hh{i}A=="))
                .await
                .unwrap()
                .id,
        );
    }
    let mut ws = server.ws(&alice).await;
    for id in &channels {
        ws.send(&ClientFrame::sync(id, None)).await.unwrap();
    }
    let mut completed = Vec::new();
    while completed.len() < channels.len() {
        let e = ws
            .expect_event(event_type::SYNC_COMPLETE, WAIT)
            .await
            .unwrap();
        completed.push(e.channel_id.unwrap());
    }
    assert_eq!(completed, channels, "one at a time, in the order sent");
}

#[tokio::test]
async fn a_sync_beyond_the_queue_is_refused_while_one_runs() {
    // A sync held in a stalled database stays in flight for as long as the test wants.
    if backend() == Backend::Sqlite {
        return skip("needs a database that can stall (the TCP proxy in front of PostgreSQL)");
    }
    let db = TestDb::create().await;
    let proxy = Proxy::to(&url_host_port(&db.url));
    let via = url_via(&db.url, proxy.addr());
    let mut server = TestServer::start_on(db, |s| {
        s.set("DIALTONE_DB_URL", via)
            .set("DIALTONE_MAX_QUEUED_SYNCS", "1");
    })
    .await;
    // The stalled sync fails once the proxy cuts its connection.
    server.expect_error("websocket request failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
    proxy.set(ProxyMode::Blackhole);
    for _ in 0..3 {
        ws.send(&ClientFrame::sync(&channel.id, None))
            .await
            .unwrap();
    }
    let e = expect_error(&mut ws, error_code::RATE_LIMITED).await;
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));
    assert!(e.message.as_deref().unwrap_or("").contains("sync_queue"));
    proxy.set(ProxyMode::Forward);
    // The queued one still runs once the database answers again.
    ws.expect_event(event_type::SYNC_COMPLETE, WAIT)
        .await
        .unwrap();
    assert_eq!(Scrape::of(&server).await.counter(&limited("sync_queue")), 1);
}

#[tokio::test]
async fn subscribe_and_unsubscribe_are_throttled_per_user() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_SUBSCRIBE", "2/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let mut one = server.ws(&alice).await;
    let mut two = server.ws(&alice).await;
    one.send(&ClientFrame::unsubscribe(&channel.id))
        .await
        .unwrap();
    ws_ready(&mut one).await;
    two.send(&ClientFrame::unsubscribe(&channel.id))
        .await
        .unwrap();
    ws_ready(&mut two).await;
    one.send(&ClientFrame::subscribe(&channel.id))
        .await
        .unwrap();
    let e = expect_error(&mut one, error_code::RATE_LIMITED).await;
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));
    ws_ready(&mut one).await;
    assert_eq!(Scrape::of(&server).await.counter(&limited("subscribe")), 1);
}

#[tokio::test]
async fn device_profile_and_envelope_uploads_are_throttled_per_user() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_DEVICES", "1/hour")
            .set("DIALTONE_LIMIT_PROFILES", "1/hour")
            .set("DIALTONE_LIMIT_ENVELOPES", "1/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let device = |user: &TestUser| {
        serde_json::json!({
            "user_id": user.id(),
            "public_key": dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64(),
        })
    };
    let profile = serde_json::json!({"name_enc": "bmFtZQ=="});
    let keys = |user: &TestUser| ChannelKeysUpload {
        channel_id: channel.id.clone(),
        envelopes: vec![EnvelopeUpload {
            device_id: user.device().into(),
            sender_device_id: user.device().into(),
            sender_public_key: user.keys.public_key_b64(),
            envelope: "ZW52ZWxvcGU=".into(),
            channel_id: None,
        }],
    };
    let post = |user: &TestUser, path: &str, body: serde_json::Value| {
        user.rest.request(Method::POST, path).json(&body)
    };
    for user in [&alice, &bob] {
        let got = send(post(user, "/devices", device(user))).await;
        assert_eq!(got.0, 201, "{:?}", got.2);
        let got = send(post(user, "/users/profiles", profile.clone())).await;
        assert!(got.0 < 300, "{:?}", got.2);
        // Whatever the upload's fate (bob holds no key of alice's channel), it is not throttled.
        let body = serde_json::to_value(keys(user)).unwrap();
        let got = send(post(user, "/channels/keys", body)).await;
        assert_ne!(got.0, 429, "{:?}", got.2);
    }
    assert_limited(
        &send(post(&alice, "/devices", device(&alice))).await,
        "devices",
    );
    assert_limited(
        &send(post(&alice, "/users/profiles", profile.clone())).await,
        "profiles",
    );
    let body = serde_json::to_value(keys(&alice)).unwrap();
    assert_limited(
        &send(post(&alice, "/channels/keys", body)).await,
        "envelopes",
    );
    assert_limited(
        &send(post(
            &alice,
            "/directory/keys",
            serde_json::json!({"envelopes": []}),
        ))
        .await,
        "envelopes",
    );
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("devices")), 1);
    assert_eq!(m.counter(&limited("profiles")), 1);
    assert_eq!(m.counter(&limited("envelopes")), 2);
}

#[tokio::test]
async fn devices_sessions_and_envelopes_per_request_are_capped() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_MAX_DEVICES_PER_USER", "2")
            .set("DIALTONE_MAX_SESSIONS_PER_USER", "3")
            .set("DIALTONE_MAX_ENVELOPES_PER_REQUEST", "1");
    })
    .await;
    let alice = server.user("alice").await; // device 1, session 1
    let _second = server.new_device(&alice).await; // device 2, session 2
    let got = login_from(&server, None, &login_body("alice", &password("alice"))).await;
    assert_limited(&got, "devices_per_user");
    // A known device may still sign in: session 3 of 3.
    let again = LoginRequest {
        public_key: alice.keys.public_key_b64(),
        ..login_body("alice", &password("alice"))
    };
    let got = login_from(&server, None, &again).await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    assert_limited(
        &login_from(&server, None, &again).await,
        "sessions_per_user",
    );
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT count(*) AS v FROM devices WHERE user_id = '{}'",
                alice.id()
            ))
            .await,
        2
    );

    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    let envelope = EnvelopeUpload {
        device_id: alice.device().into(),
        sender_device_id: alice.device().into(),
        sender_public_key: alice.keys.public_key_b64(),
        envelope: "ZW52ZWxvcGU=".into(),
        channel_id: None,
    };
    let two = ChannelKeysUpload {
        channel_id: channel.id.clone(),
        envelopes: vec![envelope.clone(), envelope.clone()],
    };
    let req = alice
        .rest
        .request(Method::POST, "/channels/keys")
        .json(&two);
    assert_limited(&send(req).await, "envelopes_per_request");
    let one = ChannelKeysUpload {
        channel_id: channel.id.clone(),
        envelopes: vec![envelope],
    };
    let got = send(
        alice
            .rest
            .request(Method::POST, "/channels/keys")
            .json(&one),
    )
    .await;
    assert_ne!(got.0, 429, "{:?}", got.2);
    let m = Scrape::of(&server).await;
    assert_eq!(m.counter(&limited("devices_per_user")), 1);
    assert_eq!(m.counter(&limited("sessions_per_user")), 1);
    assert_eq!(m.counter(&limited("envelopes_per_request")), 1);
}
