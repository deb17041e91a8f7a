//! Per-channel sequence numbers (issue 11, item 1): assigned inside the group commit, 1, 2, 3, ...
//! per channel with no gap and no duplicate, in the order sockets receive them — under concurrent
//! senders, across a refused row's isolation, for idempotent resends — plus `sync` by `after_seq`,
//! history by seq (message-id cursors too: `cursors`), and the migration that numbers existing rows.

use std::collections::HashMap;

use dialtone::client::WsClient;
use dialtone::protocol::ws::{ClientFrame, Event, error_code, event_type};
use reqwest::Method;

use crate::support::*;

mod cursors;

fn message(channel: &str, body: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, body, "bmFtZQ==", Some(client_id.to_owned()))
}

/// A socket past its own arrival's presence event (nothing else is then on its way to it).
async fn connected(server: &TestServer, user: &TestUser) -> WsClient {
    let mut ws = server.ws(user).await;
    let e = ws
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, user.id());
    ws
}

async fn echo(ws: &mut WsClient, client_id: &str) -> Event {
    let e = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(e.client_message_id.as_deref(), Some(client_id), "{e:?}");
    e
}

/// The next `n` message and error events on `ws`, as (client_message_id, seq or None for an
/// error), sorted: a refusal and a resend's echo go to the sender directly, so they may overtake
/// the fan-out of the same batch.
async fn outcomes(ws: &mut WsClient, n: usize) -> Vec<(String, Option<i64>)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let e = ws.next_within(WAIT).await.unwrap();
        let Some(dialtone::client::Incoming::Event(e)) = e else {
            panic!("socket ended: {e:?}");
        };
        let seq = match e.kind.as_str() {
            event_type::CHANNEL_MESSAGE_NEW => e.seq,
            event_type::ERROR => None,
            _ => continue,
        };
        got.push((e.client_message_id.clone().unwrap_or_default(), seq));
    }
    got.sort();
    got
}

fn outcome(id: &str, seq: Option<i64>) -> (String, Option<i64>) {
    (id.to_owned(), seq)
}

/// Every stored seq of `channel`, ascending.
async fn stored_seqs(server: &TestServer, channel: &str) -> Vec<i64> {
    server
        .db
        .strings(&format!(
            "SELECT seq AS v FROM channel_messages WHERE channel_id = '{channel}' ORDER BY seq"
        ))
        .await
        .into_iter()
        .map(|v| v.unwrap().parse().unwrap())
        .collect()
}

async fn last_seq(server: &TestServer, channel: &str) -> i64 {
    server
        .db
        .count(&format!(
            "SELECT last_seq AS v FROM channels WHERE id = '{channel}'"
        ))
        .await
}

/// The `channel.message.new` events of `channel` up to the `sync.complete` of a `sync`.
async fn synced(ws: &mut WsClient, channel: &str) -> (Vec<Event>, bool) {
    let mut got = Vec::new();
    loop {
        let e = ws.next_within(WAIT).await.unwrap();
        let Some(dialtone::client::Incoming::Event(e)) = e else {
            panic!("socket ended during sync: {e:?}");
        };
        match e.kind.as_str() {
            event_type::CHANNEL_MESSAGE_NEW if e.channel_id.as_deref() == Some(channel) => {
                got.push(*e)
            }
            event_type::SYNC_COMPLETE => return (got, e.has_more.unwrap()),
            event_type::ERROR => panic!("sync refused: {e:?}"),
            _ => {}
        }
    }
}

/// Send `n` messages on `ws` (all at once), then read until `total` messages of `channel` have
/// arrived: every socket is subscribed, so it receives everyone's. Returns their seqs in arrival
/// order, and the seqs of this socket's own messages.
async fn send_and_watch(
    ws: &mut WsClient,
    me: &str,
    channel: &str,
    n: usize,
    total: usize,
) -> (Vec<i64>, HashMap<i64, String>) {
    for i in 0..n {
        ws.send(&message(channel, "eA==", &format!("{me}.{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::with_capacity(total);
    let mut by_seq = HashMap::new();
    while seen.len() < total {
        let e = ws
            .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
            .await
            .unwrap();
        let seq = e.seq.unwrap();
        seen.push(seq);
        by_seq.insert(seq, e.message_id);
    }
    (seen, by_seq)
}

#[tokio::test]
async fn concurrent_senders_get_seqs_one_to_n_and_every_subscriber_sees_them_in_order() {
    const SENDERS: usize = 4;
    const EACH: usize = 60;
    const TOTAL: usize = SENDERS * EACH;
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_MESSAGES", "off")
            .set("DIALTONE_LIMIT_USER_BYTES", "off")
            .set("DIALTONE_LIMIT_LOGIN_IP", "off")
            .set("DIALTONE_LIMIT_LOGIN_ACCOUNT", "off");
    })
    .await;
    let admin = server.user("admin").await;
    let channel = admin.rest.create_channel("aG90").await.unwrap();
    let mut sockets = Vec::new();
    for i in 0..SENDERS {
        let user = server.user(&format!("sender{i}")).await;
        sockets.push((format!("s{i}"), connected(&server, &user).await));
    }
    // Two more subscribers that only watch.
    let watcher = server.user("watcher").await;
    let mut watchers = [
        connected(&server, &watcher).await,
        connected(&server, &admin).await,
    ];

    let runs = sockets.iter_mut().map(|(me, ws)| {
        let channel = channel.id.clone();
        async move { send_and_watch(ws, me, &channel, EACH, TOTAL).await }
    });
    let runs = futures_util::future::join_all(runs).await;
    let one_to_n: Vec<i64> = (1..=TOTAL as i64).collect();
    // Every sending socket received exactly 1, 2, ..., N (no gap, no duplicate, in order), and
    // every seq names the same message on every socket.
    let (_, reference) = &runs[0];
    for (i, (seen, by_seq)) in runs.iter().enumerate() {
        assert_eq!(seen, &one_to_n, "sender socket {i}");
        assert_eq!(by_seq, reference, "sender socket {i}");
    }
    for (w, ws) in watchers.iter_mut().enumerate() {
        let (seen, by_seq) = send_and_watch(ws, "none", &channel.id, 0, TOTAL).await;
        assert_eq!(seen, one_to_n, "watcher {w}");
        assert_eq!(&by_seq, reference, "watcher {w}");
    }
    assert_eq!(stored_seqs(&server, &channel.id).await, one_to_n);
    assert_eq!(last_seq(&server, &channel.id).await, TOTAL as i64);
}

#[tokio::test]
async fn sync_after_seq_returns_exactly_the_tail_and_history_pages_by_seq() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let other = alice.rest.create_channel("Yw==").await.unwrap();
    // Another channel's messages interleave: seqs are per channel.
    send_messages(&server, &alice, &other.id, 3).await;
    let echoes = send_messages(&server, &alice, &channel.id, 10).await;
    let seqs: Vec<i64> = echoes.iter().map(|e| e.seq.unwrap()).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());

    let mut ws = connected(&server, &alice).await;
    ws.send(&ClientFrame::sync_after_seq(&channel.id, 7))
        .await
        .unwrap();
    let (tail, has_more) = synced(&mut ws, &channel.id).await;
    let got: Vec<(i64, String)> = tail
        .iter()
        .map(|e| (e.seq.unwrap(), e.message_id.clone()))
        .collect();
    let want: Vec<(i64, String)> = echoes[7..]
        .iter()
        .map(|e| (e.seq.unwrap(), e.message_id.clone()))
        .collect();
    assert_eq!(got, want);
    assert!(!has_more);

    ws.send(&ClientFrame::sync_after_seq(&channel.id, 10))
        .await
        .unwrap();
    assert_eq!(synced(&mut ws, &channel.id).await, (Vec::new(), false));

    // The v1 cursor still works, and its events carry seqs too.
    ws.send(&ClientFrame::sync(
        &channel.id,
        Some(echoes[8].message_id.clone()),
    ))
    .await
    .unwrap();
    let (tail, _) = synced(&mut ws, &channel.id).await;
    assert_eq!(
        tail.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        [10]
    );

    // Both cursors at once: a clear refusal.
    ws.send(&ClientFrame {
        after_seq: Some(3),
        ..ClientFrame::sync(&channel.id, Some(echoes[0].message_id.clone()))
    })
    .await
    .unwrap();
    let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
    assert_eq!(
        e.code.as_deref(),
        Some(error_code::INVALID_MESSAGE),
        "{e:?}"
    );
    assert_eq!(
        e.message.as_deref(),
        Some("use only one cursor: before, after, before_seq or after_seq")
    );
    assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()));

    // REST history: items carry seq; after_seq and before_seq page in seq order.
    let channel_id = channel.id.as_str();
    let page = |query: String| {
        let alice = &alice;
        async move {
            send_raw(alice.rest.request(
                Method::GET,
                &format!("/channels/messages?channel_id={channel_id}&{query}"),
            ))
            .await
        }
    };
    let seqs_of = |body: &serde_json::Value| -> Vec<i64> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let (status, body) = page("after_seq=2&limit=3".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs_of(&body), [3, 4, 5]);
    assert_eq!(body["has_more"], true);
    let (status, body) = page("before_seq=4&limit=2".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs_of(&body), [2, 3]);
    assert_eq!(body["has_more"], true);
    let (status, body) = page("before_seq=3".into()).await;
    assert_eq!((status, seqs_of(&body)), (200, vec![1, 2]));
    assert_eq!(body["has_more"], false);
    let (status, body) = page(format!("after_seq=1&before={}", echoes[5].message_id)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_request");
    let (status, body) = page("after_seq=-1".into()).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_refused_row_and_a_failed_batch_leave_no_gap() {
    let mut server = TestServer::start().await;
    server
        .expect_error("message refused by the database")
        .expect_error("group commit failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut a = connected(&server, &alice).await;
    install_commit_fault(&server.db, "RkFVTFQ").await;

    // A batch of one refused message: nothing is numbered.
    a.send(&message(&channel.id, "RkFVTFQ=", "alone"))
        .await
        .unwrap();
    let e = a.expect_event(event_type::ERROR, WAIT).await.unwrap();
    assert_eq!(e.code.as_deref(), Some(error_code::SERVER_ERROR), "{e:?}");

    // g0 commits alone (held by the gate); g1, bad and g2 form the next batch, which the database
    // refuses and which is then committed row by row.
    let gate = WriteGate::hold(&server.db).await;
    a.send(&message(&channel.id, "ZzA=", "g0")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    a.send(&message(&channel.id, "ZzE=", "g1")).await.unwrap();
    a.send(&message(&channel.id, "RkFVTFQ=", "bad"))
        .await
        .unwrap();
    a.send(&message(&channel.id, "ZzI=", "g2")).await.unwrap();
    assert_nothing_queued(&mut a, "before the batch formed").await;
    gate.release().await;

    assert_eq!(
        outcomes(&mut a, 4).await,
        [
            outcome("bad", None),
            outcome("g0", Some(1)),
            outcome("g1", Some(2)),
            outcome("g2", Some(3)),
        ]
    );
    remove_commit_fault(&server.db).await;
    a.send(&message(&channel.id, "ZzM=", "g3")).await.unwrap();
    assert_eq!(echo(&mut a, "g3").await.seq, Some(4));
    assert_eq!(stored_seqs(&server, &channel.id).await, [1, 2, 3, 4]);
    assert_eq!(last_seq(&server, &channel.id).await, 4);
}

#[tokio::test]
async fn an_idempotent_resend_keeps_its_seq_and_takes_none() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut a = connected(&server, &alice).await;

    a.send(&message(&channel.id, "bTE=", "m1")).await.unwrap();
    let m1 = echo(&mut a, "m1").await;
    a.send(&message(&channel.id, "bTI=", "m2")).await.unwrap();
    assert_eq!(echo(&mut a, "m2").await.seq, Some(2));
    // A resend of a message committed earlier: the original, seq included.
    a.send(&message(&channel.id, "bTE=", "m1")).await.unwrap();
    let again = echo(&mut a, "m1").await;
    assert_eq!((again.message_id, again.seq), (m1.message_id, Some(1)));

    // A resend in the same batch as its original, with a new message after it.
    let gate = WriteGate::hold(&server.db).await;
    a.send(&message(&channel.id, "eDA=", "x0")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    a.send(&message(&channel.id, "eDE=", "x1")).await.unwrap();
    a.send(&message(&channel.id, "eDE=", "x1")).await.unwrap();
    a.send(&message(&channel.id, "eDI=", "x2")).await.unwrap();
    assert_nothing_queued(&mut a, "before the batch formed").await;
    gate.release().await;
    // The resend's echo (the original: same seq) and the new messages, each once.
    assert_eq!(
        outcomes(&mut a, 4).await,
        [
            outcome("x0", Some(3)),
            outcome("x1", Some(4)),
            outcome("x1", Some(4)),
            outcome("x2", Some(5)),
        ]
    );
    assert_eq!(stored_seqs(&server, &channel.id).await, [1, 2, 3, 4, 5]);
    assert_eq!(last_seq(&server, &channel.id).await, 5);
}

fn seq_migration(db: &TestDb) -> (&'static str, &'static str) {
    match db.backend() {
        Backend::Postgres => (
            "20261201000004",
            include_str!("../../../migrations/postgres/2026-12-01-000004_channel_seq/down.sql"),
        ),
        Backend::Sqlite => (
            "20261201000003",
            include_str!("../../../migrations/sqlite/2026-12-01-000003_channel_seq/down.sql"),
        ),
    }
}

#[tokio::test]
async fn the_seq_migration_numbers_existing_rows_in_history_order() {
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let a = alice.rest.create_channel("YQ==").await.unwrap();
    let b = alice.rest.create_channel("Yg==").await.unwrap();
    let empty = alice.rest.create_channel("Yw==").await.unwrap();
    let mut ws = connected(&server, &alice).await;
    let mut ids = Vec::new();
    for (ch, cid) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&b, "b2"), (&a, "a3")] {
        ws.send(&message(&ch.id, "eA==", cid)).await.unwrap();
        ids.push(echo(&mut ws, cid).await.message_id);
    }
    drop(ws);
    server.stop().await.unwrap();

    // Back to the schema before seqs (the migration's own down.sql), plus a row with an earlier
    // time than all of them, as an older server could have stored it.
    let db = &server.db;
    let (version, down) = seq_migration(db);
    db.execute(&format!(
        "{down} DELETE FROM __diesel_schema_migrations WHERE version = '{version}'; \
         INSERT INTO channel_messages (id, channel_id, sender_id, sender_name_enc, body, sent_at) \
         SELECT '00000000-0000-7000-8000-000000000000', channel_id, sender_id, sender_name_enc, \
                body, sent_at FROM channel_messages WHERE id = '{first}'; \
         UPDATE channel_messages SET sent_at = (SELECT min(sent_at) FROM channel_messages) \
         WHERE id = '00000000-0000-7000-8000-000000000000'",
        first = ids[4],
    ))
    .await;
    // Same sent_at as a1, lower id: history order puts it first.
    server.restart().await;

    let numbered = |channel: String| {
        let server = &server;
        async move {
            server
                .db
                .strings(&format!(
                    "SELECT id || ':' || seq AS v FROM channel_messages \
                     WHERE channel_id = '{channel}' ORDER BY seq"
                ))
                .await
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        numbered(a.id.clone()).await,
        [
            "00000000-0000-7000-8000-000000000000:1".to_owned(),
            format!("{}:2", ids[0]),
            format!("{}:3", ids[2]),
            format!("{}:4", ids[4]),
        ]
    );
    assert_eq!(
        numbered(b.id.clone()).await,
        [format!("{}:1", ids[1]), format!("{}:2", ids[3])]
    );
    assert_eq!(last_seq(&server, &a.id).await, 4);
    assert_eq!(last_seq(&server, &b.id).await, 2);
    assert_eq!(last_seq(&server, &empty.id).await, 0);

    // New messages continue each channel's count.
    let mut ws = connected(&server, &alice).await;
    ws.send(&message(&b.id, "eA==", "b3")).await.unwrap();
    assert_eq!(echo(&mut ws, "b3").await.seq, Some(3));
    ws.send(&message(&empty.id, "eA==", "c1")).await.unwrap();
    assert_eq!(echo(&mut ws, "c1").await.seq, Some(1));
}
