//! Races on one user's devices: logins and `POST /devices` presenting the same new key, and a
//! device deleted while its owner logs in with it. The device lookup that decides runs under the
//! user's row lock, which logins, additions and deletions all take.

use std::collections::BTreeSet;

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::LoginRequest;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

/// Logins and additions get room to race: neither the per-account buckets nor the password queue
/// may refuse any of them (their own bounds are tested in `rate_limits` and `password_work`), and
/// the pool has a connection for each one waiting at the user's row lock at once.
async fn racing_server() -> TestServer {
    TestServer::start_with(|s| {
        s.sign_in_unthrottled().set("DIALTONE_DB_POOL_SIZE", "16");
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

/// Simultaneous logins, each on its own connection (see [`all_at_once`]).
fn login_all(
    server: &TestServer,
    bodies: Vec<LoginRequest>,
) -> impl Future<Output = Vec<(u16, serde_json::Value)>> + 'static {
    all_at_once(
        bodies
            .into_iter()
            .map(|body| {
                send_raw(
                    server
                        .rest()
                        .request(Method::POST, "/auth/login")
                        .json(&body),
                )
            })
            .collect(),
    )
}

/// `POST /devices` of `public_key` for `user`, `n` times at once.
fn add_all(
    user: &TestUser,
    public_key: &str,
    n: usize,
) -> impl Future<Output = Vec<(u16, serde_json::Value)>> + 'static {
    let body = json!({"user_id": user.id(), "public_key": public_key});
    all_at_once(
        (0..n)
            .map(|_| send_raw(user.rest.request(Method::POST, "/devices").json(&body)))
            .collect(),
    )
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

    // On PostgreSQL every request is first made to queue at alice's row lock, past any lookup
    // made before it; the embedded store runs one write transaction at a time anyway.
    let gate = match server.db.backend() {
        Backend::Postgres => Some(WriteGate::hold_user(&server.db, alice.id()).await),
        Backend::Sqlite => None,
    };
    let logins = login_all(&server, vec![login_with(&alice, &laptop); 6]);
    let additions = add_all(&alice, &laptop, 3);
    if let Some(gate) = gate {
        gate.wait_for_blocked_writers(&server.db, 9).await;
        gate.release().await;
    }
    let (logins, additions) = (logins.await, additions.await);

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

/// Logins that looked their device up before its deletion, and reach the user's row lock after
/// it (PostgreSQL: held by the test meanwhile), sign into no deleted device: the delete waits for
/// the lock too, so either their sessions commit first and are revoked with the device, or they
/// run after it and add the key again. (It was a foreign-key 500.)
#[tokio::test]
async fn a_device_deleted_while_its_owner_signs_in_with_it_leaves_no_session_on_it() {
    let server = racing_server().await;
    if server.db.backend() == Backend::Sqlite {
        skip("the embedded store runs one write transaction at a time: there is no window");
        return;
    }
    let alice = server.user("alice").await;
    let phone = server.new_device(&alice).await;
    let key = phone.keys.public_key_b64();
    let gate = WriteGate::hold_user(&server.db, alice.id()).await;
    let logins = login_all(&server, vec![login_with(&alice, &key); 4]);
    gate.wait_for_blocked_writers(&server.db, 4).await;
    let rest = alice.rest.clone();
    let path = format!("/devices/{}", phone.device());
    let delete = tokio::spawn(async move { send_raw(rest.request(Method::DELETE, &path)).await });
    // The delete queues behind the gate as well (or, without the lock, is done already).
    let queued = tokio::time::timeout(WAIT, gate.wait_for_blocked_writers(&server.db, 5)).await;
    assert!(
        queued.is_ok() || delete.is_finished(),
        "the delete neither queued nor ran"
    );
    gate.release().await;

    let (deleted, body) = delete.await.unwrap();
    assert_eq!(deleted, 204, "{body}");
    let logins = logins.await;
    for (status, body) in &logins {
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
    assert_eq!(
        server.db.count(&devices_of(&alice)).await,
        1 + revived.len() as i64
    );
}
