//! Revocation is airtight: a logout, a user disable or a device deletion closes every socket of
//! that session, user or device, including sockets whose upgrade was in progress at that moment.
//!
//! Each test keeps several clients upgrading in a loop with the doomed token while the revocation
//! happens, so upgrades straddle it at every stage (token checked, session registering, 101
//! sent). Every upgrade either is refused with 401 or gets a socket that the server then closes
//! with 1000; no socket may stay open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dialtone::client::WsClient;
use dialtone::protocol::rest::LoginRequest;
use dialtone::protocol::ws::close_code;

use crate::support::*;

/// Clients upgrading at once.
const UPGRADERS: usize = 16;
/// Revocations per test: each is one more chance for an upgrade to be caught mid-way.
const ROUNDS: usize = 6;
/// Sockets opened before the revocation starts, so the loops are in full swing.
const OPEN_BEFORE: usize = 2 * UPGRADERS;

/// A server without the per-user socket cap: the loops hold every socket they open until the
/// revocation lands, and on a slow machine that can be more than the default cap of 100.
async fn racing_server() -> TestServer {
    TestServer::start_with(|s| {
        s.set("DIALTONE_MAX_SOCKETS_PER_USER", "0");
    })
    .await
}

/// A fresh session (and so a fresh token) of `user` on its existing device.
async fn new_session(server: &TestServer, user: &TestUser) -> String {
    server
        .rest()
        .login(&LoginRequest {
            username: user.name.clone(),
            password: password(&user.name),
            public_key: user.keys.public_key_b64(),
            invite_token: None,
        })
        .await
        .expect("login")
        .token
}

/// Upgrade with `token` from [`UPGRADERS`] clients, each in a loop until refused, while `revoke`
/// runs (once [`OPEN_BEFORE`] sockets are open); then check that every socket opened is closed.
/// Returns how many sockets were opened.
async fn upgrades_racing<F, Fut>(server: &TestServer, token: &str, revoke: F) -> usize
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..UPGRADERS {
        let options = server.ws_options(token);
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            let mut sockets = Vec::new();
            loop {
                match WsClient::connect(&options).await {
                    Ok(ws) => {
                        opened.fetch_add(1, Ordering::SeqCst);
                        sockets.push(ws);
                    }
                    Err(e) => {
                        assert_eq!(e.status(), Some(401), "upgrade refused otherwise: {e}");
                        return sockets;
                    }
                }
            }
        }));
    }
    eventually("the upgrade loops have opened sockets", || {
        let opened = opened.clone();
        async move { opened.load(Ordering::SeqCst) >= OPEN_BEFORE }
    })
    .await;
    revoke().await;
    let mut total = 0;
    for task in tasks {
        for mut ws in task.await.expect("upgrade loop") {
            total += 1;
            assert_eq!(
                wait_closed(&mut ws).await,
                close_code::NORMAL,
                "socket {total} survived the revocation"
            );
        }
    }
    total
}

#[tokio::test]
async fn logout_closes_sockets_whose_upgrade_was_in_flight() {
    let server = racing_server().await;
    let alice = server.user("alice").await;
    for _ in 0..ROUNDS {
        let token = new_session(&server, &alice).await;
        let rest = server.rest().with_token(&token);
        let opened = upgrades_racing(&server, &token, || async move {
            rest.logout().await.expect("logout");
        })
        .await;
        assert!(opened >= OPEN_BEFORE);
    }
    // The user's other session was never touched.
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
}

#[tokio::test]
async fn disabling_a_user_closes_sockets_whose_upgrade_was_in_flight() {
    let server = racing_server().await;
    let _admin = server.user("alice").await;
    let bob = server.user("bob").await;
    let admin = server.admin();
    for _ in 0..ROUNDS {
        let token = new_session(&server, &bob).await;
        let (admin, id) = (admin.clone(), bob.id().to_owned());
        upgrades_racing(&server, &token, || async move {
            admin
                .admin_user_action(&id, "disable")
                .await
                .expect("disable");
        })
        .await;
        server
            .admin()
            .admin_user_action(bob.id(), "enable")
            .await
            .expect("enable");
    }
}

#[tokio::test]
async fn deleting_a_device_closes_sockets_whose_upgrade_was_in_flight() {
    let server = racing_server().await;
    let alice = server.user("alice").await;
    for _ in 0..ROUNDS {
        let doomed = server.new_device(&alice).await;
        let (rest, device) = (alice.rest.clone(), doomed.device().to_owned());
        upgrades_racing(&server, doomed.token(), || async move {
            rest.delete_device(&device).await.expect("delete device");
        })
        .await;
    }
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
}

/// A revocation that commits after its caller gave up (the call timed out while the deletion
/// waited for the table) still closes the session's sockets: the notice goes with the commit,
/// not with the answer. A retry would find nothing left to revoke (401).
#[tokio::test]
async fn a_logout_that_commits_after_its_call_timed_out_still_closes_the_socket() {
    let server = TestServer::start_with(|s| {
        // Calls give up after 4 × 250 ms; statements may wait far longer.
        s.set("DIALTONE_DB_TIMEOUT_MS", "250")
            .set("DIALTONE_DB_STATEMENT_TIMEOUT_MS", "30000");
    })
    .await;
    let alice = server.user("alice").await;
    let mut ws = server.ws(&alice).await;
    let gate = WriteGate::hold_table(&server.db, "sessions").await;
    match alice.rest.logout().await {
        Err(dialtone::client::ClientError::Api { status: 503, .. }) => {}
        other => panic!("the call should time out behind the gate: {other:?}"),
    }
    gate.wait_for_blocked_writer(&server.db).await;
    gate.release().await;
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
    let gone = alice.rest.logout().await;
    assert!(
        matches!(
            gone,
            Err(dialtone::client::ClientError::Api { status: 401, .. })
        ),
        "the logout committed: {gone:?}"
    );
}

/// Deleting a device closes every socket of it, not only those of the sessions the deletion read
/// first: a session made meanwhile (a login racing the deletion) is covered. Simulated by taking
/// the socket's session row away before the deletion reads them.
#[tokio::test]
async fn deleting_a_device_closes_its_sockets_whatever_session_they_run_on() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let doomed = server.new_device(&alice).await;
    let mut ws = server.ws(&doomed).await;
    ws_ready(&mut ws).await;
    server
        .db
        .execute(&format!(
            "DELETE FROM sessions WHERE device_id = '{}'",
            doomed.device()
        ))
        .await;
    alice.rest.delete_device(doomed.device()).await.unwrap();
    assert_eq!(wait_closed(&mut ws).await, close_code::NORMAL);
}
