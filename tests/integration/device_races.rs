//! Races on one user's devices: logins and `POST /devices` presenting the same new key, and a
//! device deleted while its owner logs in with it. The device lookup that decides runs under the
//! user's row lock, which logins, additions and deletions all take.

use std::collections::BTreeSet;
use std::sync::Arc;

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::LoginRequest;
use reqwest::Method;
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::*;

/// Logins and additions get room to race: neither the per-account buckets nor the password queue
/// may refuse any of them (their own bounds are tested in `rate_limits` and `password_work`).
async fn racing_server() -> TestServer {
    TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_DEVICES", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT_ALL", "1000/min")
            .set("DIALTONE_LIMIT_LOGIN_IP", "1000/min")
            .set("DIALTONE_PASSWORD_QUEUE", "64");
    })
    .await
}

fn login_with(user: &TestUser, public_key: &str) -> LoginRequest {
    LoginRequest {
        username: user.name.clone(),
        password: password(&user.name),
        public_key: public_key.to_owned(),
        invite_token: None,
    }
}

/// `(status, body)` of simultaneous logins, lined up on a barrier.
async fn login_all(
    server: &TestServer,
    bodies: Vec<LoginRequest>,
) -> Vec<(u16, serde_json::Value)> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let rest = server.rest();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                send_raw(rest.request(Method::POST, "/auth/login").json(&body)).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn devices_of(user: &TestUser) -> String {
    format!(
        "SELECT count(*) AS v FROM devices WHERE user_id = '{}'",
        user.id()
    )
}

#[tokio::test]
async fn logins_and_additions_racing_with_one_new_key_make_one_device() {
    let server = racing_server().await;
    let alice = server.user("alice").await;
    let laptop = DeviceKeypair::generate().public_key_b64();

    let logins = login_all(&server, vec![login_with(&alice, &laptop); 8]);
    let additions = futures_util::future::join_all((0..4).map(|_| {
        send_raw(
            alice
                .rest
                .request(Method::POST, "/devices")
                .json(&json!({"user_id": alice.id(), "public_key": laptop})),
        )
    }));
    let (logins, additions) = tokio::join!(logins, additions);

    let mut device_ids = BTreeSet::new();
    for (status, body) in &logins {
        assert_eq!(*status, 200, "{body}");
        device_ids.insert(body["device_id"].as_str().unwrap().to_owned());
    }
    for (status, body) in &additions {
        // v1 clients expect 201 whether the key was new or known.
        assert_eq!(*status, 201, "{body}");
        device_ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        device_ids.len(),
        1,
        "one device for one key: {device_ids:?}"
    );
    assert!(!device_ids.contains(alice.device()));
    assert_eq!(server.db.count(&devices_of(&alice)).await, 2);
}

#[tokio::test]
async fn a_device_deleted_while_its_owner_signs_in_with_it_leaves_no_session_on_it() {
    let server = racing_server().await;
    let alice = server.user("alice").await;
    for _ in 0..3 {
        let phone = server.new_device(&alice).await;
        let key = phone.keys.public_key_b64();
        let logins = login_all(&server, vec![login_with(&alice, &key); 6]);
        let delete = send_raw(
            alice
                .rest
                .request(Method::DELETE, &format!("/devices/{}", phone.device())),
        );
        let (logins, (deleted, body)) = tokio::join!(logins, delete);
        assert_eq!(deleted, 204, "{body}");
        for (status, body) in &logins {
            // Before the delete, the login signs into the device and the delete revokes it;
            // after, it adds the key as a new device. Never a server error.
            assert_eq!(*status, 200, "{body}");
        }
        let on_deleted = format!(
            "SELECT count(*) AS v FROM sessions WHERE device_id = '{}'",
            phone.device()
        );
        assert_eq!(server.db.count(&on_deleted).await, 0);
        // Every login after the delete signed into the same one new device (if any came after).
        let revived: BTreeSet<&str> = logins
            .iter()
            .map(|(_, b)| b["device_id"].as_str().unwrap())
            .filter(|id| *id != phone.device())
            .collect();
        assert!(revived.len() <= 1, "{revived:?}");
        // Clean up the revived device, so the next round starts with alice's own only.
        if let Some(id) = revived.first() {
            alice.rest.delete_device(id).await.unwrap();
        }
        assert_eq!(server.db.count(&devices_of(&alice)).await, 1);
    }
}
