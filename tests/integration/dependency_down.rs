//! The database going away under a running server and coming back (README: `/ready`,
//! `DIALTONE_DB_TIMEOUT_MS`): PostgreSQL is reached through a [`Proxy`] that the tests switch to
//! refusing connections or to holding them without an answer. Readiness turns 503 with the JSON
//! error body, liveness stays 200, REST calls get a clean 503 (never a 500 or a hang), and
//! everything works again once the database is back, without a restart.
//!
//! The embedded store lives in the server's own process, so it cannot be "down": skipped there.

use std::time::Duration;

use dialtone::client::{RestClient, WsClient};
use dialtone::protocol::ws::{ClientFrame, Event, close_code, event_type};
use reqwest::Method;

use crate::support::*;

/// The server's database timeout in these tests: short, so a hung database answers 503 quickly.
const DB_TIMEOUT_MS: u64 = 500;

/// Far beyond what any answer needs (the server's own bound is `DB_TIMEOUT_MS` × 4): a request
/// still unanswered by then hangs.
const HUNG: Duration = Duration::from_secs(30);

/// A server whose PostgreSQL connections all go through a proxy; `None` on SQLite.
async fn proxied_server() -> Option<(TestServer, Proxy)> {
    proxied_server_with(|_| {}).await
}

/// [`proxied_server`] with settings adjusted by `tweak` (after the proxy and timeout settings).
async fn proxied_server_with(
    tweak: impl FnOnce(&mut ServerSettings),
) -> Option<(TestServer, Proxy)> {
    if backend() == Backend::Sqlite {
        skip("the embedded store runs in the server's process: it cannot go down on its own");
        return None;
    }
    let db = TestDb::create().await;
    let proxy = Proxy::to(&url_host_port(&db.url));
    let via = url_via(&db.url, proxy.addr());
    let server = TestServer::start_on(db, |s| {
        s.set("DIALTONE_DB_URL", via)
            .set("DIALTONE_DB_TIMEOUT_MS", DB_TIMEOUT_MS.to_string());
        tweak(s);
    })
    .await;
    Some((server, proxy))
}

/// `GET path` with `client`: status and body; panics if it hangs.
async fn get(client: &RestClient, path: &str) -> (u16, serde_json::Value) {
    tokio::time::timeout(HUNG, send_raw(client.request(Method::GET, path)))
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung"))
}

/// Wait until `/ready` answers `status`; a 503 must carry the `unavailable` error body.
async fn wait_ready_status(server: &TestServer, status: u16) {
    let rest = server.rest();
    eventually(&format!("/ready answers {status}"), || {
        let rest = rest.clone();
        async move {
            let (got, body) = get(&rest, "/ready").await;
            if got == 503 {
                assert_error_body(&body, "unavailable");
            } else {
                assert_eq!(got, 200, "/ready answers 200 or 503 only: {body}");
            }
            got == status
        }
    })
    .await;
}

/// While the database is down: liveness is fine, and every REST call that needs the database is
/// refused with 503 — as many calls as the pool has connections, so each stale one is tried.
async fn assert_down_behaviour(server: &TestServer, user: &TestUser) {
    let (status, body) = get(&server.rest(), "/health").await;
    assert_eq!((status, body.as_str()), (200, Some("ok")), "liveness");
    for _ in 0..5 {
        let (status, body) = get(&user.rest, "/channels").await;
        assert_eq!(status, 503, "GET /channels with the database down: {body}");
        assert_error_body(&body, "unavailable");
    }
}

/// After the database is back: reads and writes work, for existing and new users alike.
async fn assert_recovered(server: &TestServer, user: &TestUser, name: &str) {
    wait_ready_status(server, 200).await;
    let before = user.rest.channels().await.expect("list channels").len();
    user.rest
        .create_channel("YmFjaw==")
        .await
        .expect("create a channel");
    assert_eq!(user.rest.channels().await.unwrap().len(), before + 1);
    let newcomer = server.user(name).await;
    newcomer
        .rest
        .channels()
        .await
        .expect("a new user's request");
}

#[tokio::test]
async fn ready_is_503_while_postgres_refuses_connections_and_recovers() {
    let Some((server, proxy)) = proxied_server().await else {
        return;
    };
    let alice = server.user("alice").await;
    alice.rest.create_channel("Zmlyc3Q=").await.unwrap();
    wait_ready_status(&server, 200).await;

    proxy.set(ProxyMode::Refuse);
    wait_ready_status(&server, 503).await;
    assert_down_behaviour(&server, &alice).await;

    proxy.set(ProxyMode::Forward);
    assert_recovered(&server, &alice, "bob").await;
}

#[tokio::test]
async fn ready_is_503_while_postgres_stops_answering_and_recovers() {
    let Some((server, proxy)) = proxied_server().await else {
        return;
    };
    let alice = server.user("alice").await;
    wait_ready_status(&server, 200).await;

    // Pooled connections stay open but nothing comes back; new ones connect and get no answer.
    proxy.set(ProxyMode::Blackhole);
    wait_ready_status(&server, 503).await;
    assert_down_behaviour(&server, &alice).await;

    proxy.set(ProxyMode::Forward);
    assert_recovered(&server, &alice, "bob").await;

    // And once more: a server that recovered once recovers again.
    proxy.set(ProxyMode::Refuse);
    wait_ready_status(&server, 503).await;
    proxy.set(ProxyMode::Forward);
    assert_recovered(&server, &alice, "carol").await;
}

#[tokio::test]
async fn a_database_that_stops_answering_fails_sends_in_time_and_shutdown_stays_bounded() {
    let Some((mut server, proxy)) = proxied_server_with(|s| {
        s.set("DIALTONE_DB_TIMEOUT_MS", "200")
            .set("DIALTONE_DB_STATEMENT_TIMEOUT_MS", "500");
    })
    .await
    else {
        return;
    };
    server.expect_error("group commit failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;

    // No answer and no reset: neither PostgreSQL's statement timeout nor TCP can end the commit;
    // the server's own bound on it does, and the sender is told.
    proxy.set(ProxyMode::Blackhole);
    ws.send(&ClientFrame::channel_message(
        &channel.id,
        "eA==",
        "bmFtZQ==",
        Some("m0".into()),
    ))
    .await
    .unwrap();
    let e = ws.expect_event(event_type::ERROR, HUNG).await.unwrap();
    assert_eq!(
        (e.code.as_deref(), e.client_message_id.as_deref()),
        (Some("server_error"), Some("m0")),
        "{e:?}"
    );
    let (status, body) = get(&alice.rest, "/channels").await;
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "unavailable");

    // Shutdown does not wait on the hung database past its own bound.
    tokio::time::timeout(HUNG, server.stop())
        .await
        .expect("shutdown finished")
        .expect("shutdown succeeded");
    assert_eq!(wait_closed(&mut ws).await, close_code::GOING_AWAY);
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        0
    );
}

/// Send `ids` on `ws` and wait until each has its one answer: the echo (true) or an error event
/// naming it (false). Anything else for these ids, or a second answer, fails the test.
async fn answers(
    ws: &mut dialtone::client::WsClient,
    channel: &str,
    ids: &[String],
) -> std::collections::HashMap<String, bool> {
    use dialtone::client::Incoming;
    for id in ids {
        ws.send(&ClientFrame::channel_message(
            channel,
            "eA==",
            "bmFtZQ==",
            Some(id.clone()),
        ))
        .await
        .unwrap();
    }
    let mut got = std::collections::HashMap::new();
    while got.len() < ids.len() {
        let (id, ok) = match ws.next_within(HUNG).await.expect("an answer") {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                (e.client_message_id.clone(), true)
            }
            Some(Incoming::Event(e)) if e.kind == event_type::ERROR => {
                assert_eq!(e.code.as_deref(), Some("server_error"), "{e:?}");
                (e.client_message_id.clone(), false)
            }
            Some(Incoming::Event(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        };
        let id = id.expect("every answer names its message");
        assert!(got.insert(id.clone(), ok).is_none(), "{id} answered twice");
    }
    got
}

#[tokio::test]
async fn a_database_restart_under_load_loses_no_acknowledged_message() {
    let Some((mut server, proxy)) = proxied_server().await else {
        return;
    };
    server.expect_error("group commit failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;

    // Chunks of messages before, during and after the outage ("restart": every connection cut,
    // new ones refused, then accepted again).
    let chunk = |n: usize| {
        (n * 50..(n + 1) * 50)
            .map(|i| format!("m{i}"))
            .collect::<Vec<_>>()
    };
    let mut all = std::collections::HashMap::new();
    for n in 0..2 {
        all.extend(answers(&mut ws, &channel.id, &chunk(n)).await);
    }
    proxy.set(ProxyMode::Refuse);
    for n in 2..4 {
        all.extend(answers(&mut ws, &channel.id, &chunk(n)).await);
    }
    proxy.set(ProxyMode::Forward);
    wait_ready_status(&server, 200).await;
    for n in 4..6 {
        all.extend(answers(&mut ws, &channel.id, &chunk(n)).await);
    }
    let refused: Vec<String> = all
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!refused.is_empty(), "the outage refused nothing: {all:?}");

    // Every acknowledged message is stored.
    let stored: std::collections::HashSet<String> = server
        .db
        .strings("SELECT client_message_id AS v FROM channel_messages")
        .await
        .into_iter()
        .flatten()
        .collect();
    for (id, ok) in &all {
        assert!(
            !ok || stored.contains(id),
            "{id} was acknowledged but is not stored"
        );
    }
    // The refused ones, sent again with the same ids, are stored exactly once each (a refusal
    // whose commit did land is answered with the original).
    let again = answers(&mut ws, &channel.id, &refused).await;
    assert!(again.values().all(|ok| *ok), "{again:?}");
    assert_eq!(
        server
            .db
            .count("SELECT count(DISTINCT client_message_id) AS v FROM channel_messages")
            .await,
        300
    );
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        300
    );
    server.stop().await.unwrap();
}

/// Two members of one public channel (`a` created it, `b` joined), both connected, on a proxied
/// server whose commits are bounded by a statement timeout and may lose their answers.
struct Lossy {
    server: TestServer,
    proxy: Proxy,
    channel: dialtone::protocol::rest::Channel,
    a: WsClient,
    b: WsClient,
}

/// [`Lossy`] with `DIALTONE_DB_STATEMENT_TIMEOUT_MS` = `statement_timeout_ms`; `None` on SQLite.
async fn lossy(statement_timeout_ms: u64) -> Option<Lossy> {
    let (mut server, proxy) = proxied_server_with(|s| {
        s.set(
            "DIALTONE_DB_STATEMENT_TIMEOUT_MS",
            statement_timeout_ms.to_string(),
        );
    })
    .await?;
    server.expect_error("group commit failed");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut a = server.ws(&alice).await;
    let mut b = server.ws(&bob).await;
    ws_ready(&mut a).await;
    ws_ready(&mut b).await;
    Some(Lossy {
        server,
        proxy,
        channel,
        a,
        b,
    })
}

/// The network fails between a group commit's `COMMIT` and its answer: the message is stored,
/// but the server never hears so. It must not tell the sender "not saved" (a lie) nor leave the
/// other subscribers without it: it settles the outcome behind the channel's counter lock, then
/// acknowledges and fans the message out like any other.
#[tokio::test]
async fn a_commit_whose_answer_is_lost_is_settled_acknowledged_and_delivered() {
    let Some(Lossy {
        server,
        proxy,
        channel,
        mut a,
        mut b,
    }) = lossy(1000).await
    else {
        return;
    };

    proxy.lose_next_commit_reply();
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "bG9zdA==",
        "bmFtZQ==",
        Some("lost-reply".into()),
    ))
    .await
    .unwrap();
    let echo = a
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, HUNG)
        .await
        .unwrap();
    assert!(
        proxy.commit_reply_lost(),
        "the trap fired on the group commit"
    );
    assert_eq!(echo.client_message_id.as_deref(), Some("lost-reply"));
    let seen = b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, HUNG)
        .await
        .unwrap();
    assert_eq!(seen.message_id, echo.message_id);
    assert_eq!(seen.seq, Some(1));
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        1
    );

    // The lane goes on: the next message commits and is numbered after it.
    a.send(&ClientFrame::channel_message(
        &channel.id,
        "bmV4dA==",
        "bmFtZQ==",
        Some("next".into()),
    ))
    .await
    .unwrap();
    let next = b
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, HUNG)
        .await
        .unwrap();
    assert_eq!(
        (next.client_message_id.as_deref(), next.seq),
        (Some("next"), Some(2))
    );
}

/// A batch the database refuses is split and its rows committed one by one; when the answer to
/// one row's own commit is lost, that row is settled like a whole batch: it is stored, so it is
/// acknowledged and delivered in order, not reported "not saved".
#[tokio::test]
async fn a_row_of_a_split_batch_whose_answer_is_lost_is_settled_too() {
    // The gate below holds the first commit: the bound must outlast that setup.
    let Some(Lossy {
        mut server,
        proxy,
        channel,
        mut a,
        mut b,
    }) = lossy(3000).await
    else {
        return;
    };
    server.expect_error("message refused by the database");
    install_commit_fault(&server.db, "RkFVTFQ").await;
    let send = |body: &str, id: &str| {
        ClientFrame::channel_message(&channel.id, body, "bmFtZQ==", Some(id.into()))
    };

    // g0 commits alone (held by the gate); bad and g1 queue and form the next batch together.
    let gate = WriteGate::hold(&server.db).await;
    a.send(&send("ZzA=", "g0")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    a.send(&send("RkFVTFQ=", "bad")).await.unwrap();
    b.send(&send("ZzE=", "g1")).await.unwrap();
    assert_nothing_queued(&mut a, "before the batch formed").await;
    assert_nothing_queued(&mut b, "before the batch formed").await;
    // Group commits: g0, then g1 alone (the refused batch and `bad` alone roll back).
    proxy.lose_commit_reply(2);
    gate.release().await;

    let ids = |events: &[Event]| -> Vec<(Option<String>, Option<i64>)> {
        events
            .iter()
            .map(|e| (e.client_message_id.clone(), e.seq))
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(
            b.expect_event(event_type::CHANNEL_MESSAGE_NEW, HUNG)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        ids(&seen),
        [(Some("g0".into()), Some(1)), (Some("g1".into()), Some(2))]
    );
    assert!(proxy.commit_reply_lost(), "the trap fired on g1's commit");
    let refused = a.expect_event(event_type::ERROR, HUNG).await.unwrap();
    assert_eq!(
        refused.client_message_id.as_deref(),
        Some("bad"),
        "{refused:?}"
    );
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM channel_messages")
            .await,
        2
    );
}
