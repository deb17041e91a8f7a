//! Ordering and flow control: concurrent senders see one commit order everywhere, and a socket
//! that stops reading is closed as a slow consumer without holding anyone else back.

use std::time::Duration;

use dialtone::client::rest::Page;
use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, close_code, event_type};

use crate::support::*;

/// Collect `n` channel messages of `channel` from `ws` (ids in arrival order).
async fn collect(ws: &mut WsClient, channel: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        match ws.next_within(Duration::from_secs(60)).await.unwrap() {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                assert_eq!(e.channel_id.as_deref(), Some(channel));
                ids.push(e.message_id);
            }
            Some(Incoming::Event(_)) => {}
            other => panic!("socket ended after {} messages: {other:?}", ids.len()),
        }
    }
    ids
}

/// All of a channel's history, oldest first: the newest page, then older pages with `before`.
async fn history(user: &TestUser, channel: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = user
            .rest
            .messages(
                channel,
                &Page {
                    limit: Some(500),
                    before: before.clone(),
                    after: None,
                },
            )
            .await
            .unwrap();
        let mut older: Vec<String> = page.messages.iter().map(|m| m.id.clone()).collect();
        before = older.first().cloned();
        older.extend(ids);
        ids = older;
        if !page.has_more {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_one_order_for_everyone() {
    const SENDERS: usize = 8;
    const EACH: usize = 200;
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WORKERS", "2");
    })
    .await;
    let admin = server.user("admin").await;
    let channel = admin.rest.create_channel("b3JkZXI=").await.unwrap();

    let total = SENDERS * EACH;
    // Every socket is read from the moment it opens, as a live client's is: a socket left unread
    // answers no pings, and on a loaded machine the setup and the run can outlast the idle
    // timeout (the server then drops it without a close frame: a TLS EOF here).
    let mut listeners = Vec::new();
    for i in 0..3 {
        let u = server.user(&format!("listener{i}")).await;
        let mut ws = server.ws(&u).await;
        let channel = channel.id.clone();
        listeners.push(tokio::spawn(async move {
            collect(&mut ws, &channel, total).await
        }));
    }
    let mut sender_users = Vec::new();
    for i in 0..SENDERS {
        sender_users.push(server.user(&format!("sender{i}")).await);
    }
    // Registrations are slow (password hashing): open the senders' sockets only once all are done.
    let mut senders = Vec::new();
    for u in &sender_users {
        senders.push(server.ws(u).await);
    }

    let mut tasks = Vec::new();
    for (i, ws) in senders.into_iter().enumerate() {
        let channel = channel.id.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let send = async {
                for j in 0..EACH {
                    tx.send(&ClientFrame::channel_message(
                        &channel,
                        format!("bXNn{i}x{j}"),
                        "bg==",
                        None,
                    ))
                    .await
                    .unwrap();
                }
            };
            let recv = async {
                let mut ids = Vec::with_capacity(total);
                while ids.len() < total {
                    match rx.next().await.unwrap() {
                        Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                            ids.push(e.message_id)
                        }
                        Some(Incoming::Event(e)) if e.kind == event_type::ERROR => {
                            panic!("sender got {e:?}")
                        }
                        Some(_) => {}
                        None => panic!("sender socket ended"),
                    }
                }
                ids
            };
            let ((), ids) = tokio::join!(send, recv);
            ids
        }));
    }
    let mut sequences = Vec::new();
    for t in listeners.into_iter().chain(tasks) {
        sequences.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }

    let stored = history(&admin, &channel.id).await;
    assert_eq!(stored.len(), total);
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq.len(), total);
        assert!(
            seq == &stored,
            "subscriber {i} saw an order different from history"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_stalls_is_closed_and_others_get_everything() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_OUTBOX_BYTES", "262144")
            .set("DIALTONE_WS_OUTBOX_GRACE_MS", "1000")
            // Keep the stalled connection until the test reads it: the close frame waits behind
            // what the kernel already buffered.
            .set("DIALTONE_WS_CLOSE_TIMEOUT_SECS", "120");
    })
    .await;
    let admin = server.user("admin").await;
    let channel = admin.rest.create_channel("c2xvdw==").await.unwrap();
    let stalled_user = server.user("stalled").await;
    let reader_user = server.user("reader").await;
    let mut stalled = server.ws(&stalled_user).await;
    let mut reader = server.ws(&reader_user).await;
    let sender = server.ws(&admin).await;

    // ~24 MiB in total: far more than the loopback socket buffers and the 256 KiB outbox of the
    // stalled socket, which reads nothing until the end.
    const COUNT: usize = 1500;
    let body = "A".repeat(16_000);
    let reading = tokio::spawn(async move {
        let mut got = 0usize;
        while got < COUNT {
            match reader.next_within(Duration::from_secs(60)).await.unwrap() {
                Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => got += 1,
                Some(Incoming::Event(_)) => {}
                other => panic!("reader ended after {got}: {other:?}"),
            }
        }
        got
    });
    // The sender reads its echoes while it sends: it is a fast reader too.
    let (mut tx, mut rx) = sender.split();
    let echoes = tokio::spawn(async move {
        let mut got = 0usize;
        while got < COUNT {
            match rx.next().await.unwrap() {
                Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => got += 1,
                Some(Incoming::Event(_)) => {}
                other => panic!("sender ended after {got}: {other:?}"),
            }
        }
        got
    });
    for i in 0..COUNT {
        tx.send(&ClientFrame::channel_message(
            &channel.id,
            &body,
            "bg==",
            Some(i.to_string()),
        ))
        .await
        .unwrap();
    }
    // Wait until the server has given up on the stalled socket, then read it.
    let admin_rest = server.admin();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while admin_rest.admin_stats().await.unwrap()["slow_consumer_closes"].as_u64() == Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slow consumer was closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stalled socket now drains what reached it, then finds the 1008 close.
    let mut received = 0usize;
    let code = loop {
        match stalled.next_within(Duration::from_secs(30)).await {
            Ok(Some(Incoming::Event(e))) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                received += 1
            }
            Ok(Some(Incoming::Event(_))) => {}
            Ok(Some(Incoming::Closed { code, reason })) => {
                assert_eq!(reason, "slow consumer");
                break code;
            }
            other => panic!(
                "stalled socket: expected a 1008 close, got {other:?} after {received} messages"
            ),
        }
    };
    assert_eq!(code, close_code::POLICY);
    assert!(
        received < COUNT,
        "the stalled socket cannot have received everything"
    );

    // Nobody else was held back.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(120), echoes)
            .await
            .unwrap()
            .unwrap(),
        COUNT
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(120), reading)
            .await
            .unwrap()
            .unwrap(),
        COUNT
    );
    let stats = server.admin().admin_stats().await.unwrap();
    assert_eq!(stats["slow_consumer_closes"].as_u64(), Some(1));
}
