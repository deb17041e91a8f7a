//! The commit path when it cannot keep up or fails (issue 13): the pending bound, an exhausted
//! pool, a stalled database actor, and a failing commit — each with its exact error, its metrics,
//! and recovery once the fault is gone. Faults come from `support::faults` (database locks and
//! triggers, no product hooks).

use dialtone::client::WsClient;
use dialtone::client::rest::Page;
use dialtone::protocol::ws::{ClientFrame, Event, error_code, event_type};

use crate::support::*;

fn message(channel: &str, body: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, body, "bmFtZQ==", Some(client_id.to_owned()))
}

/// Wait for `user`'s own arrival on `ws`: after it nothing else is on its way to the socket.
async fn connected(server: &TestServer, user: &TestUser) -> WsClient {
    let mut ws = server.ws(user).await;
    let e = ws
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, user.id());
    ws
}

/// The next event, which must be an `error` with `code` for message `client_id`.
async fn expect_refusal(ws: &mut WsClient, channel: &str, client_id: &str, code: &str) -> Event {
    let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
    assert_eq!(e.code.as_deref(), Some(code), "{e:?}");
    assert_eq!(e.client_message_id.as_deref(), Some(client_id), "{e:?}");
    assert_eq!(e.channel_id.as_deref(), Some(channel), "{e:?}");
    assert!(e.message.as_deref().is_some_and(|m| !m.is_empty()));
    e
}

async fn expect_echo(ws: &mut WsClient, client_id: &str) -> Event {
    let e = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(e.client_message_id.as_deref(), Some(client_id), "{e:?}");
    e
}

/// Send a readiness probe; every event that came before its answer.
async fn until_probe_answer(ws: &mut WsClient) -> Vec<Event> {
    ws.send(&ClientFrame {
        kind: "test.ready.probe".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut before = Vec::new();
    loop {
        let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
        if e.code.as_deref() == Some(error_code::UNSUPPORTED_TYPE) {
            return before;
        }
        before.push(e);
    }
}

/// A history read: it goes through the database actor's mailbox, so by its answer every message
/// handed to the actor before it has been taken up (queued, refused or committed).
async fn history_len(user: &TestUser, channel: &str) -> usize {
    user.rest
        .messages(channel, &Page::default())
        .await
        .unwrap()
        .messages
        .len()
}

async fn stored(server: &TestServer) -> i64 {
    server
        .db
        .count("SELECT count(*) AS v FROM channel_messages")
        .await
}

#[tokio::test]
async fn pending_limit_refuses_with_rate_limited_then_commits_the_accepted() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_MAX_PENDING", "3");
    })
    .await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = connected(&server, &alice).await;

    let gate = WriteGate::hold(&server.db).await;
    // m0 starts a commit of its own (blocked); m1..m3 fill the pending queue; m4, m5 are over it.
    ws.send(&message(&channel.id, "eA==", "m0")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    for i in 1..6 {
        ws.send(&message(&channel.id, "eA==", &format!("m{i}")))
            .await
            .unwrap();
    }
    // The refusals come from the database actor, on their own path: they may arrive before or
    // after the probe's answer, but by the history read's answer they are on their way.
    let mut refused = until_probe_answer(&mut ws).await;
    assert_eq!(history_len(&alice, &channel.id).await, 0);
    while refused.len() < 2 {
        refused.push(ws.expect_event(event_type::ERROR, WAIT).await.unwrap());
    }
    for (e, id) in refused.iter().zip(["m4", "m5"]) {
        assert_eq!(e.code.as_deref(), Some(error_code::RATE_LIMITED), "{e:?}");
        assert_eq!(e.client_message_id.as_deref(), Some(id), "{e:?}");
        assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
        assert_eq!(e.message.as_deref(), Some("server busy; retry later"));
    }
    assert_nothing_queued(&mut ws, "only the two over the bound are refused").await;
    assert_eq!(stored(&server).await, 0);

    gate.release().await;
    for i in 0..4 {
        expect_echo(&mut ws, &format!("m{i}")).await;
    }
    assert_nothing_queued(&mut ws, "the accepted four are echoed once each").await;
    let ids = server
        .db
        .strings("SELECT client_message_id AS v FROM channel_messages ORDER BY sent_at")
        .await;
    let ids: Vec<_> = ids.into_iter().flatten().collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3"]);
    assert_eq!(
        counter(&server, "dialtone_messages_rejected_total").await,
        2.0
    );
    assert_eq!(
        counter(&server, "dialtone_ws_errors_total{code=\"rate_limited\"}").await,
        2.0
    );
    assert_eq!(
        counter(&server, "dialtone_messages_persisted_total").await,
        4.0
    );
}

#[tokio::test]
async fn exhausted_pool_answers_503_unavailable_then_recovers() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_POOL_SIZE", "1")
            .set("DIALTONE_DB_TIMEOUT_MS", "200");
    })
    .await;
    let alice = server.user("alice").await;
    let doomed = alice.rest.create_channel("Yg==").await.unwrap();
    let kept = alice.rest.create_channel("Yw==").await.unwrap();
    let mut ws = connected(&server, &alice).await;

    // A channel delete cascades into channel_messages: blocked behind the gate, it holds the
    // request pool's only connection.
    let gate = WriteGate::hold(&server.db).await;
    let path = format!("/channels?channel_id={}", doomed.id);
    let blocked = tokio::spawn(send_raw(alice.rest.request(reqwest::Method::DELETE, &path)));
    gate.wait_for_blocked_writer(&server.db).await;
    eventually(
        "the blocked delete holds the pool's only connection",
        || async { counter(&server, "dialtone_db_pool_in_use").await == 1.0 },
    )
    .await;
    let (status, body) = send_raw(alice.rest.request(reqwest::Method::GET, "/channels")).await;
    // Answered while the gate is still held: the wait for a connection is bounded.
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "unavailable");
    assert_eq!(body["error"], "database unavailable; retry later");
    // A message sent meanwhile waits for the gate, and commits once it opens.
    ws.send(&message(&kept.id, "eA==", "m0")).await.unwrap();

    gate.release().await;
    expect_echo(&mut ws, "m0").await;
    let (status, body) = blocked.await.unwrap();
    assert!(
        status == 204 || (status == 503 && body["code"] == "unavailable"),
        "the blocked delete answered {status}: {body}"
    );
    let listed = alice.rest.channels().await.unwrap();
    assert_eq!(listed.len(), 1, "the delete ran once unblocked: {listed:?}");
    assert_eq!(stored(&server).await, 1);
    let refused = counter(&server, "dialtone_http_responses_total{status=\"503\"}").await;
    assert_eq!(refused, if status == 503 { 2.0 } else { 1.0 });
}

#[tokio::test]
async fn a_call_whose_caller_gave_up_before_it_started_never_runs() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_MAX_INFLIGHT", "1")
            .set("DIALTONE_DB_TIMEOUT_MS", "100");
    })
    .await;
    let alice = server.user("alice").await;
    let first = alice.rest.create_channel("Yg==").await.unwrap();
    let second = alice.rest.create_channel("Yw==").await.unwrap();

    // The first delete cascades into channel_messages: it blocks behind the gate, holding the
    // only operation slot, and its caller gives up after the call timeout.
    let gate = WriteGate::hold(&server.db).await;
    let delete = |id: &str| {
        let path = format!("/channels?channel_id={id}");
        send_raw(alice.rest.request(reqwest::Method::DELETE, &path))
    };
    let (status, body) = delete(&first.id).await;
    assert_eq!(status, 503, "{body}");
    assert_error_body(&body, "unavailable");
    assert_eq!(body["error"], "database busy; retry later");
    // The second waits for the slot the whole time, and gives up too.
    let (status, body) = delete(&second.id).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "database busy; retry later");

    gate.release().await;
    // The started delete ran to its end; the one that never got a slot never runs.
    eventually("the actor answers again", || async {
        alice.rest.channels().await.is_ok()
    })
    .await;
    let left: Vec<String> = alice
        .rest
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, std::slice::from_ref(&second.id));
    assert_eq!(
        counter(&server, "dialtone_db_call_timeouts_total").await,
        2.0
    );
    assert_eq!(
        counter(&server, "dialtone_http_responses_total{status=\"503\"}").await,
        2.0
    );
}

#[tokio::test]
async fn failed_commit_tells_the_sender_server_error_and_the_socket_stays_usable() {
    let mut server = TestServer::start().await;
    server.expect_error("group commit failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = connected(&server, &alice).await;
    const MARKER: &str = "RkFVTFQ";
    install_commit_fault(&server.db, MARKER).await;

    ws.send(&message(&channel.id, "RkFVTFQ=", "bad"))
        .await
        .unwrap();
    let e = expect_refusal(&mut ws, &channel.id, "bad", error_code::SERVER_ERROR).await;
    assert_eq!(
        e.message.as_deref(),
        Some("message not saved; please retry")
    );
    assert_eq!(stored(&server).await, 0);
    assert_eq!(
        counter(&server, "dialtone_messages_rejected_total").await,
        1.0
    );
    assert_eq!(
        counter(&server, "dialtone_ws_errors_total{code=\"server_error\"}").await,
        1.0
    );

    // The socket is still usable, and good messages commit.
    ws.send(&message(&channel.id, "b2s=", "good"))
        .await
        .unwrap();
    expect_echo(&mut ws, "good").await;
    remove_commit_fault(&server.db).await;
    ws.send(&message(&channel.id, "RkFVTFQ=", "retried"))
        .await
        .unwrap();
    expect_echo(&mut ws, "retried").await;
    assert_eq!(stored(&server).await, 2);
}

#[tokio::test]
async fn one_failing_message_does_not_sink_the_others_in_its_batch() {
    let mut server = TestServer::start().await;
    server.expect_error("message refused by the database");
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut a = connected(&server, &alice).await;
    let mut b = connected(&server, &bob).await;
    let e = a
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, bob.id());
    install_commit_fault(&server.db, "RkFVTFQ").await;

    // g0 commits alone (held by the gate); bad and g1 queue and form the next batch together.
    let gate = WriteGate::hold(&server.db).await;
    a.send(&message(&channel.id, "ZzA=", "g0")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    a.send(&message(&channel.id, "RkFVTFQ=", "bad"))
        .await
        .unwrap();
    b.send(&message(&channel.id, "ZzE=", "g1")).await.unwrap();
    assert_nothing_queued(&mut a, "before the batch formed").await;
    assert_nothing_queued(&mut b, "before the batch formed").await;
    assert_eq!(history_len(&alice, &channel.id).await, 0);
    gate.release().await;

    expect_echo(&mut a, "g0").await;
    expect_refusal(&mut a, &channel.id, "bad", error_code::SERVER_ERROR).await;
    expect_echo(&mut b, "g0").await;
    expect_echo(&mut b, "g1").await;
    let ids: Vec<_> = server
        .db
        .strings("SELECT client_message_id AS v FROM channel_messages ORDER BY sent_at")
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(ids, ["g0", "g1"]);
}

#[tokio::test]
async fn a_commit_blocked_past_the_statement_timeout_fails_in_time_then_recovers() {
    let mut server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_STATEMENT_TIMEOUT_MS", "300");
    })
    .await;
    server.expect_error("group commit failed");
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = connected(&server, &alice).await;

    // Held far longer than the statement timeout: PostgreSQL cancels the blocked insert, SQLite
    // stops waiting for the write lock. The sender hears it (a lock wait is no fault of the
    // message: the batch is not split up and retried row by row).
    let gate = WriteGate::hold(&server.db).await;
    ws.send(&message(&channel.id, "eA==", "m0")).await.unwrap();
    let e = expect_refusal(&mut ws, &channel.id, "m0", error_code::SERVER_ERROR).await;
    assert_eq!(
        e.message.as_deref(),
        Some("message not saved; please retry")
    );
    gate.release().await;

    ws.send(&message(&channel.id, "eA==", "m0")).await.unwrap();
    expect_echo(&mut ws, "m0").await;
    assert_eq!(stored(&server).await, 1);
    assert_eq!(
        counter(&server, "dialtone_messages_rejected_total").await,
        1.0
    );
}

/// channel_messages has no foreign keys (they cost half of each batch insert): a channel deleted
/// while its messages are committing must still leave none of them behind, and no message may
/// land after the deletion.
#[tokio::test]
async fn a_channel_deleted_while_its_messages_commit_leaves_none_behind() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("ZG9vbWVk").await.unwrap();
    let mut ws = connected(&server, &alice).await;
    const N: usize = 300;
    // The race made certain: the gate stops the commit of these messages inside its transaction
    // (on PostgreSQL it has bumped the channel's counter row and its INSERT waits), and the
    // deletion starts while it is stopped there.
    let gate = WriteGate::hold(&server.db).await;
    for i in 0..N {
        ws.send(&message(&channel.id, "Ym9keQ==", &format!("d{i}")))
            .await
            .unwrap();
    }
    gate.wait_for_blocked_writer(&server.db).await;
    let deletion = {
        let rest = alice.rest.clone();
        let id = channel.id.clone();
        tokio::spawn(async move { rest.delete_channel(&id).await })
    };
    // The deletion waits for the commit's row lock on the channel: two writers are stopped.
    gate.wait_for_blocked_writers(&server.db, 2).await;
    gate.release().await;
    deletion.await.unwrap().unwrap();
    assert_eq!(server.db.messages_in(&channel.id).await, 0);
    // Every send is answered: committed before the deletion (and deleted with the channel), or
    // refused after it.
    let (mut echoed, mut refused) = (0, 0);
    while echoed + refused < N {
        match ws.next_within(WAIT).await.unwrap() {
            Some(dialtone::client::Incoming::Event(e)) => match e.kind.as_str() {
                event_type::CHANNEL_MESSAGE_NEW => echoed += 1,
                event_type::ERROR if e.client_message_id.is_some() => refused += 1,
                _ => {}
            },
            other => panic!("socket ended: {other:?}"),
        }
    }
    assert_eq!(
        server.db.messages_in(&channel.id).await,
        0,
        "{echoed} echoed, {refused} refused"
    );
    assert_eq!(
        server
            .db
            .count(
                "SELECT count(*) AS v FROM channel_messages m \
                 WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = m.channel_id)"
            )
            .await,
        0
    );
}

/// The other order of the same race: the deletion holds the channel's row first, and a commit of
/// its messages waits for it. Once the deletion has committed, the commit finds no channel to
/// number them in (there is no foreign key to refuse them): each send is refused by name and none
/// is stored.
#[tokio::test]
async fn messages_committing_behind_their_channels_deletion_are_refused_and_not_stored() {
    if backend() == Backend::Sqlite {
        skip("SQLite has one writer: a deletion and a commit never interleave");
        return;
    }
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("ZG9vbWVk").await.unwrap();
    let mut ws = connected(&server, &alice).await;
    const N: usize = 20;
    // The gate holds the channel's row: the deletion queues on it first, then the commit.
    let gate = WriteGate::hold_channel(&server.db, &channel.id).await;
    let deletion = {
        let rest = alice.rest.clone();
        let id = channel.id.clone();
        tokio::spawn(async move { rest.delete_channel(&id).await })
    };
    gate.wait_for_blocked_writer(&server.db).await;
    for i in 0..N {
        ws.send(&message(&channel.id, "Ym9keQ==", &format!("d{i}")))
            .await
            .unwrap();
    }
    // The commit waits behind the deletion.
    gate.wait_for_blocked_writers(&server.db, 2).await;
    gate.release().await;
    deletion.await.unwrap().unwrap();
    let mut refused = std::collections::BTreeSet::new();
    while refused.len() < N {
        let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
        assert_eq!(
            e.code.as_deref(),
            Some(error_code::CHANNEL_NOT_FOUND),
            "{e:?}"
        );
        assert_eq!(e.channel_id.as_deref(), Some(channel.id.as_str()), "{e:?}");
        let id = e.client_message_id.expect("a refusal names its message");
        assert!(refused.insert(id.clone()), "{id} refused twice");
    }
    let want: std::collections::BTreeSet<String> = (0..N).map(|i| format!("d{i}")).collect();
    assert_eq!(refused, want);
    assert_eq!(server.db.messages_in(&channel.id).await, 0);
    assert_eq!(
        counter(&server, "dialtone_messages_rejected_total").await,
        N as f64
    );
}
