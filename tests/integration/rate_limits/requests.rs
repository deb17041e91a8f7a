//! Throttles and caps on requests: history (REST and `sync`), syncs in order, subscriptions,
//! device, profile and envelope uploads, and the per-user caps.

use std::collections::BTreeMap;

use dialtone::protocol::rest::{ChannelKeysUpload, EnvelopeUpload, LoginRequest};
use dialtone::protocol::ws::{ClientFrame, error_code, event_type};
use reqwest::Method;

use crate::support::*;
use crate::ws_events::expect_error;

use super::*;

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
    assert_eq!(
        e.retry_after,
        Some(60),
        "a cap says when to ask again: {e:?}"
    );
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
        generation: None,
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
async fn devices_sessions_and_envelopes_per_request_and_per_broadcast_are_capped() {
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
        generation: None,
        channel_id: channel.id.clone(),
        envelopes: vec![envelope.clone(), envelope.clone()],
    };
    let req = alice
        .rest
        .request(Method::POST, "/channels/keys")
        .json(&two);
    assert_limited(&send(req).await, "envelopes_per_request");

    // A broadcast's envelopes are capped the same way: over the cap is invalid and not stored,
    // at the cap passes.
    let mut ws = server.ws(&alice).await;
    let over: BTreeMap<String, String> = [
        (alice.device().to_owned(), "ZW52".to_owned()),
        ("not-a-device".to_owned(), "ZW52".to_owned()),
    ]
    .into();
    ws.send(&ClientFrame::broadcast(
        "Ym9keQ==",
        "YWxpY2U=",
        alice.keys.public_key_b64(),
        over,
    ))
    .await
    .unwrap();
    let e = expect_error(&mut ws, error_code::INVALID_MESSAGE).await;
    assert!(
        e.message.as_deref().unwrap_or("").contains("key_envelopes"),
        "{e:?}"
    );
    let at_cap: BTreeMap<String, String> = [(alice.device().to_owned(), "ZW52".to_owned())].into();
    ws.send(&ClientFrame::broadcast(
        "Ym9keQ==",
        "YWxpY2U=",
        alice.keys.public_key_b64(),
        at_cap,
    ))
    .await
    .unwrap();
    let echo = ws
        .expect_event(event_type::MESSAGE_BROADCAST, WAIT)
        .await
        .unwrap();
    assert_eq!(echo.key_envelope.as_deref(), Some("ZW52"));
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM broadcast_messages")
            .await,
        1,
        "only the broadcast at the cap is stored"
    );

    let one = ChannelKeysUpload {
        generation: None,
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

#[tokio::test]
async fn concurrent_device_additions_and_logins_cannot_overrun_the_caps() {
    let server = TestServer::start_with(|s| {
        s.sign_in_unthrottled()
            .set("DIALTONE_MAX_DEVICES_PER_USER", "3")
            .set("DIALTONE_MAX_SESSIONS_PER_USER", "6");
    })
    .await;
    let alice = server.user("alice").await; // device 1, session 1
    let additions = (0..12).map(|_| {
        let key = dialtone::crypto::e2e::DeviceKeypair::generate().public_key_b64();
        let rest = alice.rest.clone();
        let user_id = alice.id().to_owned();
        async move { rest.add_device(&user_id, &key).await.is_ok() }
    });
    let added = futures_util::future::join_all(additions)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(added, 2, "two more devices fit under the cap of 3");
    let devices = format!(
        "SELECT count(*) AS v FROM devices WHERE user_id = '{}'",
        alice.id()
    );
    assert_eq!(server.db.count(&devices).await, 3);

    // Known-device logins race for the 5 sessions left.
    let again = LoginRequest {
        public_key: alice.keys.public_key_b64(),
        ..login_body("alice", &password("alice"))
    };
    let logins = (0..10).map(|_| login_from(&server, None, &again));
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .map(|got| got.0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let sessions = format!(
        "SELECT count(*) AS v FROM sessions WHERE user_id = '{}'",
        alice.id()
    );
    assert_eq!(server.db.count(&sessions).await, 6);
}

#[tokio::test]
async fn private_and_direct_channels_are_capped_per_creator() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_MAX_CHANNELS_PER_USER", "2");
    })
    .await;
    let admin = server.user("admin").await; // the first user: an admin
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    bob.rest.create_channel_of("Y2hhbg==", true).await.unwrap();
    bob.rest.open_direct(carol.id(), "ZG0=").await.unwrap();
    let over =
        |path: &str, body: serde_json::Value| bob.rest.request(Method::POST, path).json(&body);
    assert_limited(
        &send(over(
            "/channels",
            serde_json::json!({"name_enc": "Y2hhbg==", "private": true}),
        ))
        .await,
        "channels_per_user",
    );
    assert_limited(
        &send(over(
            "/channels/direct",
            serde_json::json!({"user_id": admin.id(), "name_enc": "ZG0="}),
        ))
        .await,
        "channels_per_user",
    );
    // An existing direct channel is found, not created; others' caps and public channels are
    // untouched, and being a member of bob's channels costs carol nothing.
    bob.rest.open_direct(carol.id(), "ZG0=").await.unwrap();
    carol
        .rest
        .create_channel_of("Y2hhbg==", true)
        .await
        .unwrap();
    carol.rest.open_direct(admin.id(), "ZG0=").await.unwrap();
    admin.rest.create_channel("Y2hhbg==").await.unwrap();
    let created = format!(
        "SELECT count(*) AS v FROM channels WHERE created_by = '{}'",
        bob.id()
    );
    assert_eq!(server.db.count(&created).await, 2);
    assert_eq!(
        Scrape::of(&server)
            .await
            .counter(&limited("channels_per_user")),
        2
    );
}

#[tokio::test]
async fn listings_share_one_read_bucket_per_user() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_READS", "3/hour");
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Y2hhbg==").await.unwrap();
    for path in ["/channels", "/devices", "/users/profiles"] {
        let got = send(alice.rest.request(Method::GET, path)).await;
        assert_eq!(got.0, 200, "{path}: {:?}", got.2);
    }
    for path in [
        "/devices/keys?all=1".to_owned(),
        format!("/channels/keys?channel_id={}", channel.id),
        "/directory/keys".to_owned(),
        "/channels".to_owned(),
    ] {
        assert_limited(&send(alice.rest.request(Method::GET, &path)).await, "reads");
    }
    // History has its own bucket, and bob his own.
    let history = format!("/channels/messages?channel_id={}", channel.id);
    assert_eq!(send(alice.rest.request(Method::GET, &history)).await.0, 200);
    assert_eq!(
        send(bob.rest.request(Method::GET, "/channels")).await.0,
        200
    );
    assert_eq!(Scrape::of(&server).await.counter(&limited("reads")), 4);
}
