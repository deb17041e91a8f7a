//! Races and lifecycles: concurrent registrations against invite use limits, duplicate usernames
//! and the first-admin rule; sessions surviving a restart; logout revoking only its own session.

use dialtone::client::WsClient;
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{
    AuthResponse, CreateInviteRequest, ErrorBody, LoginRequest, RegisterRequest,
};
use dialtone::protocol::ws::{ClientFrame, close_code, event_type};

use crate::support::*;

/// What one registration attempt got back.
#[derive(Debug)]
enum Outcome {
    Created(AuthResponse),
    Failed(u16, ErrorBody),
}

/// Run `requests` as simultaneous `POST /auth/register` calls (lined up on a barrier, each on its
/// own task and connection).
async fn register_all(server: &TestServer, requests: Vec<RegisterRequest>) -> Vec<Outcome> {
    let calls = requests.into_iter().map(|req| {
        let rest = server.rest();
        async move {
            let (status, body) = post_json(&rest, "/auth/register", &req).await;
            if status == 201 {
                Outcome::Created(serde_json::from_value(body).expect("auth response"))
            } else {
                Outcome::Failed(
                    status,
                    serde_json::from_value(body.clone())
                        .unwrap_or_else(|_| panic!("error body: {body}")),
                )
            }
        }
    });
    all_at_once(calls.collect()).await
}

/// A server whose password queue holds a whole race: these tests need every registration to reach
/// the transaction (the queue's own bound is tested in `password_work`).
async fn racing_server() -> TestServer {
    TestServer::start_with(|s| {
        s.set("DIALTONE_PASSWORD_QUEUE", "256");
    })
    .await
}

fn registration(name: &str, invite: &str) -> RegisterRequest {
    RegisterRequest {
        username: name.to_owned(),
        password: password(name),
        public_key: DeviceKeypair::generate().public_key_b64(),
        invite_token: invite.to_owned(),
    }
}

fn created(outcomes: &[Outcome]) -> Vec<&AuthResponse> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Created(a) => Some(a),
            Outcome::Failed(..) => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invite_max_uses_holds_under_concurrent_registrations() {
    let server = racing_server().await;
    let invite = server
        .admin()
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: None,
            max_uses: Some(5),
        })
        .await
        .unwrap();
    assert_eq!(invite.max_uses, 5);

    let requests = (0..20)
        .map(|i| registration(&format!("racer{i:02}"), &invite.token))
        .collect();
    let outcomes = register_all(&server, requests).await;

    let ok = created(&outcomes);
    assert_eq!(ok.len(), 5, "{outcomes:#?}");
    for o in &outcomes {
        if let Outcome::Failed(status, body) = o {
            assert_eq!(
                (*status, body.code.as_str()),
                (410, "invite_used"),
                "{body:?}"
            );
            assert_eq!(body.error, "invite already used");
        }
    }
    assert_eq!(outcomes.len() - ok.len(), 15);
    // Exactly one of the five is the first user, hence admin.
    assert_eq!(ok.iter().filter(|a| a.is_admin).count(), 1);

    let db = &server.db;
    assert_eq!(
        db.count(&format!(
            "SELECT uses AS v FROM server_invites WHERE id = '{}'",
            invite.id
        ))
        .await,
        5
    );
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM users").await, 5);
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM devices").await, 5);
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM sessions").await, 5);
    // Exhausted: the v1 consumed_* columns are set.
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) AS v FROM server_invites WHERE id = '{}' AND consumed_at IS NOT NULL",
            invite.id
        ))
        .await,
        1
    );
    // The winners are real accounts.
    for a in ok {
        let keys = server
            .rest()
            .with_token(&a.token)
            .device_keys(&a.user_id)
            .await
            .unwrap();
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].device_id, a.device_id);
    }
    // And the invite stays used up.
    let (status, body) = post_json(
        &server.rest(),
        "/auth/register",
        &registration("latecomer", &invite.token),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("invite_used")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_registrations_make_exactly_one_admin() {
    let server = racing_server().await;
    let mut invites = Vec::new();
    for _ in 0..10 {
        invites.push(server.invite().await);
    }
    let requests = invites
        .iter()
        .enumerate()
        .map(|(i, inv)| registration(&format!("founder{i}"), inv))
        .collect();
    let outcomes = register_all(&server, requests).await;
    let ok = created(&outcomes);
    assert_eq!(ok.len(), 10, "every registration succeeds: {outcomes:#?}");
    let admins: Vec<_> = ok.iter().filter(|a| a.is_admin).collect();
    assert_eq!(admins.len(), 1, "{ok:#?}");
    assert!(ok.iter().all(|a| a.is_trusted));

    let db = &server.db;
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM users").await, 10);
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM users WHERE is_admin")
            .await,
        1
    );
    assert_eq!(
        db.string("SELECT id AS v FROM users WHERE is_admin")
            .await
            .as_deref(),
        Some(admins[0].user_id.as_str())
    );
    // The admin flag is real: only that user may create a channel.
    for a in &ok {
        let r = server
            .rest()
            .with_token(&a.token)
            .create_channel("bmFtZQ==")
            .await;
        if a.is_admin {
            r.unwrap();
        } else {
            let e = assert_status(r, 403);
            assert_eq!(e.code(), Some("forbidden"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_usernames_register_once_and_keep_invites() {
    let server = racing_server().await;
    let mut invites = Vec::new();
    for _ in 0..8 {
        invites.push(
            server
                .admin()
                .mint_invite(&CreateInviteRequest::default())
                .await
                .unwrap(),
        );
    }
    let requests = invites
        .iter()
        .map(|inv| registration("samename", &inv.token))
        .collect();
    let outcomes = register_all(&server, requests).await;
    let ok = created(&outcomes);
    assert_eq!(ok.len(), 1, "{outcomes:#?}");
    for o in &outcomes {
        if let Outcome::Failed(status, body) = o {
            assert_eq!((*status, body.code.as_str()), (409, "conflict"), "{body:?}");
        }
    }
    let db = &server.db;
    assert_eq!(db.count("SELECT COUNT(*) AS v FROM users").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM server_invites WHERE uses = 1")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS v FROM server_invites WHERE uses = 0")
            .await,
        7
    );
    // A refused registration's invite is still good.
    let spare = db
        .strings("SELECT id AS v FROM server_invites WHERE uses = 0")
        .await
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let spare_token = invites
        .iter()
        .find(|inv| spare.contains(&inv.id))
        .expect("an unconsumed invite")
        .token
        .clone();
    let (status, body) = post_json(
        &server.rest(),
        "/auth/register",
        &registration("othername", &spare_token),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.user("restartalice").await;
    let bob = server.user("restartbob").await;
    let channel = alice.rest.create_channel("Y2hhbm5lbA==").await.unwrap();
    let mut before = server.ws(&bob).await;
    ws_ready(&mut before).await;
    let old_url = server.base_url.clone();

    server.restart().await;
    assert_ne!(server.base_url, old_url, "restarted on a new port");
    // Shutdown closed the open socket with 1001 (SPEC §5).
    assert_eq!(wait_closed(&mut before).await, close_code::GOING_AWAY);

    // The same tokens authenticate REST calls...
    let a = server.rest().with_token(alice.token());
    let devices = a.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, alice.device());
    assert_eq!(a.channels().await.unwrap()[0].id, channel.id);
    // ...and WebSockets, as the same user and device.
    let mut ws_alice = WsClient::connect(&server.ws_options(alice.token()))
        .await
        .unwrap();
    let mut ws_bob = WsClient::connect(&server.ws_options(bob.token()))
        .await
        .unwrap();
    ws_ready(&mut ws_alice).await;
    ws_ready(&mut ws_bob).await;
    ws_alice
        .send(&ClientFrame::channel_message(
            &channel.id,
            "YWZ0ZXItcmVzdGFydA==",
            "bmFtZQ==",
            Some("r1".into()),
        ))
        .await
        .unwrap();
    let echo = ws_alice
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(echo.sender, alice.id());
    assert_eq!(echo.client_message_id.as_deref(), Some("r1"));
    let got = ws_bob
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(got.message_id, echo.message_id);
    assert_eq!(got.sender, alice.id());
    // Admin rights came back with the session.
    a.create_channel("c2Vjb25k").await.unwrap();

    // Unknown tokens are still refused (the restart did not open the doors).
    let e = assert_status(
        server.rest().with_token("not-a-real-token").devices().await,
        401,
    );
    assert_eq!(e.code(), Some("unauthorized"));
    match WsClient::connect(&server.ws_options("not-a-real-token")).await {
        Err(e) => assert_eq!(e.status(), Some(401), "{e}"),
        Ok(_) => panic!("WebSocket accepted an unknown token"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_revokes_only_its_own_session() {
    let server = TestServer::start().await;
    let alice = server.user("logoutalice").await;
    // A second session on the same device, and a third on another device.
    let same_device = server
        .rest()
        .login(&LoginRequest {
            username: alice.name.clone(),
            password: password(&alice.name),
            public_key: alice.keys.public_key_b64(),
            invite_token: None,
        })
        .await
        .unwrap();
    assert_eq!(same_device.device_id, alice.device());
    assert_ne!(same_device.token, alice.token());
    let other_device = server.new_device(&alice).await;
    assert_ne!(other_device.device(), alice.device());
    let b = server.rest().with_token(&same_device.token);
    let c = &other_device.rest;

    let mut ws_a = server.ws(&alice).await;
    let mut ws_b = WsClient::connect(&server.ws_options(&same_device.token))
        .await
        .unwrap();
    let mut ws_c = server.ws(&other_device).await;
    for ws in [&mut ws_a, &mut ws_b, &mut ws_c] {
        ws_ready(ws).await;
    }
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT COUNT(*) AS v FROM sessions WHERE user_id = '{}'",
                alice.id()
            ))
            .await,
        3
    );

    // Log the first session out: 204.
    let res = alice
        .rest
        .request(reqwest::Method::POST, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);

    // Its token is dead for REST and WebSocket, and its socket was closed.
    let e = assert_status(alice.rest.devices().await, 401);
    assert_eq!(e.code(), Some("unauthorized"));
    assert_eq!(
        wait_closed(&mut ws_a).await,
        close_code::NORMAL,
        "logout closes the socket with a normal close frame"
    );
    match WsClient::connect(&server.ws_options(alice.token())).await {
        Err(e) => assert_eq!(e.status(), Some(401), "{e}"),
        Ok(_) => panic!("WebSocket accepted a logged-out token"),
    }
    assert_status(alice.rest.logout().await, 401);
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT COUNT(*) AS v FROM sessions WHERE user_id = '{}'",
                alice.id()
            ))
            .await,
        2
    );

    // The other two sessions (same device, other device) are untouched.
    assert_eq!(b.devices().await.unwrap().len(), 2);
    assert_eq!(c.devices().await.unwrap().len(), 2);
    b.set_profile("cHJvZmlsZQ==", None).await.unwrap();
    for ws in [&mut ws_b, &mut ws_c] {
        let e = ws
            .expect_event(event_type::USER_PROFILE_UPDATED, WAIT)
            .await
            .unwrap();
        assert_eq!(e.sender, alice.id());
    }
    // Their sockets still carry traffic both ways.
    let channel = b.create_channel("Y2g=").await.unwrap();
    ws_c.send(&ClientFrame::channel_message(
        &channel.id,
        "Ym9keQ==",
        "bmFtZQ==",
        Some("x".into()),
    ))
    .await
    .unwrap();
    let echo = ws_c
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    let seen = ws_b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(seen.message_id, echo.message_id);

    // Logging out the other device's session leaves the same-device one alive.
    c.logout().await.unwrap();
    assert_status(c.devices().await, 401);
    assert_eq!(
        wait_closed(&mut ws_c).await,
        close_code::NORMAL,
        "logout closes the socket"
    );
    assert_eq!(b.devices().await.unwrap().len(), 2);
    assert_eq!(
        server
            .db
            .count(&format!(
                "SELECT COUNT(*) AS v FROM sessions WHERE user_id = '{}'",
                alice.id()
            ))
            .await,
        1
    );
}
