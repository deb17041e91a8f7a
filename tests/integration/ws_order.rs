//! Ordering and flow control: concurrent senders see one commit order everywhere, and a socket
//! that stops reading is closed as a slow consumer without holding anyone else back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    // The sender stays at most this many messages (128 KiB) ahead of the slower fast reader, so
    // however slowly this machine runs the test's tasks, a fast reader's outbox never nears its
    // 256 KiB bound; only the stalled socket's does.
    const WINDOW: usize = 8;
    let body = "A".repeat(16_000);
    let read = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicUsize::new(0));
    let seen = read.clone();
    let reading = tokio::spawn(async move {
        let mut got = 0usize;
        while got < COUNT {
            match reader.next_within(Duration::from_secs(60)).await.unwrap() {
                Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                    got += 1;
                    seen.store(got, Ordering::Release);
                }
                Some(Incoming::Event(_)) => {}
                other => panic!("reader ended after {got}: {other:?}"),
            }
        }
        got
    });
    // The sender reads its echoes while it sends: it is a fast reader too.
    let (mut tx, mut rx) = sender.split();
    let seen = echoed.clone();
    let echoes = tokio::spawn(async move {
        let mut got = 0usize;
        while got < COUNT {
            match rx.next().await.unwrap() {
                Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                    got += 1;
                    seen.store(got, Ordering::Release);
                }
                Some(Incoming::Event(_)) => {}
                other => panic!("sender ended after {got}: {other:?}"),
            }
        }
        got
    });
    for i in 0..COUNT {
        let behind = || {
            read.load(Ordering::Acquire)
                .min(echoed.load(Ordering::Acquire))
        };
        while behind() + WINDOW < i {
            assert!(
                !reading.is_finished() && !echoes.is_finished(),
                "a fast reader stopped reading"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
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

/// Read `n` channel messages of `channel` from `rx` (other events skipped); their client ids.
async fn read_messages(
    rx: &mut dialtone::client::ws::WsReceiver,
    who: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: nothing for 60 s after {} messages", ids.len()))
            .unwrap()
        {
            Some(Incoming::Event(e)) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                ids.push(e.client_message_id.unwrap_or_default());
            }
            Some(Incoming::Event(_)) => {}
            other => panic!("{who} ended after {} messages: {other:?}", ids.len()),
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outbox_past_its_hard_bound_is_closed_with_1008_and_counted_once_per_socket() {
    const HARD: usize = 512 * 1024;
    let server = TestServer::start_with(|s| {
        // Soft bound = hard bound and a grace longer than the test: only the hard bound can close.
        s.set("DIALTONE_WS_OUTBOX_BYTES", HARD.to_string())
            .set("DIALTONE_WS_OUTBOX_HARD_BYTES", HARD.to_string())
            .set("DIALTONE_WS_OUTBOX_GRACE_MS", "600000")
            .set("DIALTONE_WS_CLOSE_TIMEOUT_SECS", "120");
    })
    .await;
    let admin = server.user("admin").await;
    let channel = admin.rest.create_channel("aGFyZA==").await.unwrap();
    let reader_user = server.user("reader").await;
    let mut stalled = Vec::new();
    for name in ["stalled1", "stalled2"] {
        let user = server.user(name).await;
        let mut ws = server.ws(&user).await;
        ws_ready(&mut ws).await;
        stalled.push(ws);
    }
    let mut reader = server.ws(&reader_user).await;
    ws_ready(&mut reader).await;
    let (_reader_tx, mut reader_rx) = reader.split();
    let mut sender = server.ws(&admin).await;
    ws_ready(&mut sender).await;
    let (mut tx, mut echoes) = sender.split();
    let closes_before = Scrape::of(&server).await.counter(SLOW_CONSUMER_CLOSES);

    // ~24 MiB, far more than the loopback socket buffers plus the stalled outboxes can hold. Sent
    // in windows whose echoes (and the reader's copies) are read before the next window: what
    // waits for the fast sockets stays far below the bound, so only the stalled ones pass it.
    const COUNT: usize = 1536;
    const WINDOW: usize = 16;
    let body = "H".repeat(16_000);
    let mut echoed = Vec::with_capacity(COUNT);
    let mut read = Vec::with_capacity(COUNT);
    for start in (0..COUNT).step_by(WINDOW) {
        for i in start..start + WINDOW {
            tx.send(&ClientFrame::channel_message(
                &channel.id,
                &body,
                "bg==",
                Some(i.to_string()),
            ))
            .await
            .unwrap();
        }
        echoed.extend(read_messages(&mut echoes, "sender", WINDOW).await);
        read.extend(read_messages(&mut reader_rx, "reader", WINDOW).await);
    }
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(echoed, expected, "the sender's echoes, all and in order");
    assert_eq!(read, expected, "the reader got every message, in order");

    let want = closes_before + stalled.len() as u64;
    eventually(
        "both stalled sockets are counted as slow consumers",
        || async { Scrape::of(&server).await.counter(SLOW_CONSUMER_CLOSES) >= want },
    )
    .await;
    // Each stalled socket drains what reached it, then finds a real 1008 close frame.
    for (n, ws) in stalled.iter_mut().enumerate() {
        let mut received = 0usize;
        let (code, reason) = loop {
            match ws.next_within(Duration::from_secs(30)).await {
                Ok(Some(Incoming::Event(e))) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                    received += 1
                }
                Ok(Some(Incoming::Event(_))) => {}
                Ok(Some(Incoming::Closed { code, reason })) => break (code, reason),
                other => panic!(
                    "stalled socket {n}: expected a close frame, got {other:?} after {received} \
                     messages"
                ),
            }
        };
        assert_eq!(
            (code, reason.as_str()),
            (close_code::POLICY, "slow consumer"),
            "stalled socket {n}"
        );
        assert!(
            received < COUNT,
            "stalled socket {n} cannot have got everything"
        );
    }
    // The fast sockets are still served.
    tx.send(&ClientFrame::channel_message(
        &channel.id,
        "YWZ0ZXI=",
        "bg==",
        Some("after".into()),
    ))
    .await
    .unwrap();
    assert_eq!(read_messages(&mut echoes, "sender", 1).await, ["after"]);
    assert_eq!(read_messages(&mut reader_rx, "reader", 1).await, ["after"]);
    assert_eq!(
        Scrape::of(&server).await.counter(SLOW_CONSUMER_CLOSES),
        want,
        "exactly one count per stalled socket"
    );
}

/// `DIALTONE_WS_WRITE_DELAY_MS`: frames held back to share a write still arrive, each once and
/// in commit order, and the socket still closes cleanly (a close frame is never held).
#[tokio::test]
async fn with_a_write_delay_everything_arrives_in_order_and_closes_cleanly() {
    const COUNT: usize = 100;
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_WRITE_DELAY_MS", "30");
    })
    .await;
    let admin = server.user("admin").await;
    let channel = admin.rest.create_channel("ZGVsYXk=").await.unwrap();
    let reader_user = server.user("reader").await;
    let mut reader = server.ws(&reader_user).await;
    let mut sender = server.ws(&admin).await;
    for i in 0..COUNT {
        sender
            .send(&ClientFrame::channel_message(
                &channel.id,
                format!("ZA{i}"),
                "bg==",
                None,
            ))
            .await
            .unwrap();
    }
    let got = collect(&mut reader, &channel.id, COUNT).await;
    assert_eq!(got, history(&admin, &channel.id).await);
    assert_nothing_queued(&mut reader, "each message arrives once").await;
    tokio::time::timeout(WAIT, reader.close())
        .await
        .expect("the close handshake finished")
        .expect("a clean close");
}
