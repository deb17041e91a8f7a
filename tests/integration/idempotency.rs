//! Idempotent sends (issue 9, item 6): a resend with the same `client_message_id` after a lost
//! echo is echoed the ORIGINAL message (same id, same `sent_at`, same body) and stored once —
//! whether the original committed long ago (even before a restart) or in the same group-commit
//! batch — and other subscribers see the message once. The migration that adds the unique index
//! keeps every message of a database that already holds duplicates.

use dialtone::client::WsClient;
use dialtone::protocol::ws::{ClientFrame, Event, event_type};

use crate::support::*;

fn message(channel: &str, body: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, body, "bmFtZQ==", Some(client_id.to_owned()))
}

async fn echo(ws: &mut WsClient, client_id: &str) -> Event {
    let e = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(e.client_message_id.as_deref(), Some(client_id), "{e:?}");
    e
}

async fn rows_with(server: &TestServer, client_id: &str) -> i64 {
    server
        .db
        .count(&format!(
            "SELECT COUNT(*) AS v FROM channel_messages WHERE client_message_id = '{client_id}'"
        ))
        .await
}

/// Nothing but presence on its way to `ws`: a probe round trip, and no message before its answer.
async fn no_message_queued(ws: &mut WsClient, what: &str) {
    ws.send(&ClientFrame {
        kind: "test.ready.probe".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    loop {
        let Some(dialtone::client::Incoming::Event(e)) = ws.next_within(WAIT).await.unwrap() else {
            panic!("{what}: the socket closed");
        };
        assert_ne!(e.kind, event_type::CHANNEL_MESSAGE_NEW, "{what}: {e:?}");
        if e.kind == event_type::ERROR && e.code.as_deref() == Some("unsupported_type") {
            return;
        }
    }
}

#[track_caller]
fn assert_same_message(resent: &Event, original: &Event) {
    assert_eq!(resent.message_id, original.message_id, "same id");
    assert_eq!(resent.sent_at, original.sent_at, "same sent_at");
    assert_eq!(resent.body, original.body, "the original body");
    assert_eq!(resent.channel_id, original.channel_id);
}

#[tokio::test]
async fn a_resend_after_a_lost_echo_is_echoed_the_original() {
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;

    let mut ws = server.ws(&alice).await;
    ws.send(&message(&channel.id, "b3JpZ2luYWw=", "m1"))
        .await
        .unwrap();
    let original = echo(&mut ws, "m1").await;
    assert_eq!(
        echo(&mut bob_ws, "m1").await.message_id,
        original.message_id
    );
    // The echo is "lost": the socket goes; the client resends on a new one (a retry may even
    // re-encrypt the body: the stored original wins).
    drop(ws);
    let mut ws = server.ws(&alice).await;
    ws.send(&message(&channel.id, "cmVzZW50", "m1"))
        .await
        .unwrap();
    assert_same_message(&echo(&mut ws, "m1").await, &original);
    assert_eq!(rows_with(&server, "m1").await, 1);
    no_message_queued(&mut bob_ws, "bob saw the message once").await;
    // Another sender may use the same client_message_id: it is per sender.
    let mut bob_send = server.ws(&bob).await;
    bob_send
        .send(&message(&channel.id, "Ym9i", "m1"))
        .await
        .unwrap();
    assert_ne!(
        echo(&mut bob_send, "m1").await.message_id,
        original.message_id
    );
    assert_eq!(rows_with(&server, "m1").await, 2);

    // Long after, across a restart: still the original.
    drop((ws, bob_send, bob_ws));
    server.restart().await;
    let mut ws = server.ws(&alice).await;
    ws.send(&message(&channel.id, "YWdhaW4=", "m1"))
        .await
        .unwrap();
    assert_same_message(&echo(&mut ws, "m1").await, &original);
    assert_eq!(rows_with(&server, "m1").await, 2);
}

#[tokio::test]
async fn an_original_and_its_resend_in_one_batch_store_one_row() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut bob_ws = server.ws(&bob).await;
    ws_ready(&mut bob_ws).await;
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;

    // The gate blocks the first batch (m0); m1 and its resend then wait in the queue together
    // and form the next batch.
    let gate = WriteGate::hold(&server.db).await;
    ws.send(&message(&channel.id, "YmxvY2tlcg==", "m0"))
        .await
        .unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    ws.send(&message(&channel.id, "Zmlyc3Q=", "m1"))
        .await
        .unwrap();
    ws.send(&message(&channel.id, "c2Vjb25k", "m1"))
        .await
        .unwrap();
    // Both are with the database actor once the probe after them is answered.
    ws_ready(&mut ws).await;
    gate.release().await;

    echo(&mut ws, "m0").await;
    let first = echo(&mut ws, "m1").await;
    let second = echo(&mut ws, "m1").await;
    assert_same_message(&second, &first);
    assert_eq!(
        first.body, "Zmlyc3Q=",
        "the first of the batch is the original"
    );
    assert_eq!(rows_with(&server, "m1").await, 1);
    echo(&mut bob_ws, "m0").await;
    assert_eq!(echo(&mut bob_ws, "m1").await.message_id, first.message_id);
    no_message_queued(&mut bob_ws, "bob saw m1 once").await;
}

/// The migration's version on this backend (its directory name without separators).
fn idempotency_migration(db: &TestDb) -> &'static str {
    match db.backend() {
        Backend::Postgres => "20261201000003",
        Backend::Sqlite => "20261201000002",
    }
}

#[tokio::test]
async fn the_unique_index_migration_keeps_every_message_of_a_database_with_duplicates() {
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Z2VuZXJhbA==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    ws.send(&message(&channel.id, "b25l", "dup")).await.unwrap();
    let original = echo(&mut ws, "dup").await;
    drop(ws);
    server.stop().await.unwrap();

    // Back to the schema before the index, then a later copy of the same send, as a server
    // without the index stored it (numbered next, as the seq migration, which runs later on a
    // real upgrade, would have numbered it).
    let db = &server.db;
    db.execute(&format!(
        "DROP INDEX channel_messages_sender_client_id; \
         DELETE FROM __diesel_schema_migrations WHERE version = '{}'; \
         INSERT INTO channel_messages (id, channel_id, sender_id, sender_name_enc, body, sent_at, client_message_id, seq) \
         SELECT 'ffffffff-0000-7000-8000-000000000000', channel_id, sender_id, sender_name_enc, 'dHdv', sent_at, client_message_id, seq + 1 \
         FROM channel_messages WHERE client_message_id = 'dup'; \
         UPDATE channels SET last_seq = last_seq + 1",
        idempotency_migration(db)
    ))
    .await;
    assert_eq!(rows_with(&server, "dup").await, 2);

    server.restart().await;
    assert_eq!(
        server
            .db
            .count("SELECT COUNT(*) AS v FROM channel_messages")
            .await,
        2,
        "no message is dropped"
    );
    assert_eq!(
        server
            .db
            .strings("SELECT id AS v FROM channel_messages WHERE client_message_id = 'dup'")
            .await,
        [Some(original.message_id.clone())],
        "the earliest (same sent_at, lower id) keeps its client_message_id"
    );
    let mut ws = server.ws(&alice).await;
    ws.send(&message(&channel.id, "dGhyZWU=", "dup"))
        .await
        .unwrap();
    assert_same_message(&echo(&mut ws, "dup").await, &original);
}
