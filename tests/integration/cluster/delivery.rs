//! Messages cross nodes in `seq` order, exactly once, and `sync` works on any node.

use std::time::Duration;

use dialtone::client::Incoming;
use dialtone::protocol::ws::{ClientFrame, event_type};

use super::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_sent_on_one_node_reaches_the_others_in_seq_order_exactly_once() {
    let Some(cluster) = TestCluster::start(3).await else {
        return;
    };
    let (admin, channel) = channel(&cluster).await;
    let bob = cluster.nodes[0].user("bob").await;
    let carol = cluster.nodes[0].user("carol").await;
    known_on(&cluster, 1, &bob, &channel).await;
    known_on(&cluster, 2, &carol, &channel).await;
    let mut on_b = cluster.nodes[1].ws(&bob).await;
    let mut on_c = cluster.nodes[2].ws(&carol).await;
    ws_ready(&mut on_b).await;
    ws_ready(&mut on_c).await;

    let echoes = send_messages(&cluster.nodes[0], &admin, &channel, 40).await;
    let sent: Vec<String> = echoes.iter().map(|e| e.message_id.clone()).collect();
    for ws in [&mut on_b, &mut on_c] {
        let got = collect(ws, &channel, 40).await;
        assert_seqs(&got, 1, 40);
        let ids: Vec<String> = got.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, sent, "the commit order, on every node");
        assert_no_more_messages(ws, &channel).await;
    }
    let b = Scrape::of(&cluster.nodes[1]).await;
    assert!(b.counter("dialtone_cluster_bus_in_total") >= 1, "{}", b.0);
    let a = Scrape::of(&cluster.nodes[0]).await;
    assert!(a.counter("dialtone_cluster_bus_out_total") >= 1, "{}", a.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_every_node_give_every_subscriber_the_same_order() {
    const EACH: usize = 40;
    const TOTAL: usize = EACH * 3;
    let Some(cluster) = TestCluster::start(3).await else {
        return;
    };
    let (_admin, channel) = channel(&cluster).await;
    let mut users = Vec::new();
    for i in 0..3 {
        let u = cluster.nodes[0].user(&format!("sender{i}")).await;
        known_on(&cluster, i, &u, &channel).await;
        users.push(u);
    }
    // Every socket is registered before anyone sends: a socket that opens later would rightly
    // miss what was committed before it subscribed.
    let mut sockets = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut ws = cluster.nodes[i].ws(u).await;
        ws_ready(&mut ws).await;
        sockets.push(ws);
    }
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let send = async {
                for j in 0..EACH {
                    tx.send(&ClientFrame::channel_message(
                        &channel,
                        format!("bm9kZQ{i}x{j}"),
                        "bg==",
                        Some(format!("c{i}.{j}")),
                    ))
                    .await
                    .unwrap();
                }
            };
            let recv = async {
                let mut got = Vec::with_capacity(TOTAL);
                while got.len() < TOTAL {
                    match tokio::time::timeout(Duration::from_secs(30), rx.next()).await {
                        Ok(Ok(Some(Incoming::Event(e))))
                            if e.kind == event_type::CHANNEL_MESSAGE_NEW =>
                        {
                            got.push((e.seq.unwrap(), e.message_id))
                        }
                        Ok(Ok(Some(Incoming::Event(e)))) if e.kind == event_type::ERROR => {
                            panic!("sender {i} got {e:?}")
                        }
                        Ok(Ok(Some(_))) => {}
                        other => panic!("sender {i}: socket ended after {}: {other:?}", got.len()),
                    }
                }
                got
            };
            let ((), got) = tokio::join!(send, recv);
            got
        }));
    }
    let mut orders = Vec::new();
    for t in tasks {
        orders.push(t.await.unwrap());
    }
    for got in &orders {
        assert_seqs(got, 1, TOTAL as i64);
    }
    assert_eq!(orders[0], orders[1], "node 0 and node 1 disagree");
    assert_eq!(orders[0], orders[2], "node 0 and node 2 disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_after_reconnecting_to_another_node_catches_up_with_no_gap_or_duplicate() {
    let Some(cluster) = TestCluster::start(2).await else {
        return;
    };
    let (admin, channel) = channel(&cluster).await;
    let bob = cluster.nodes[0].user("bob").await;
    known_on(&cluster, 1, &bob, &channel).await;

    let mut on_a = cluster.nodes[0].ws(&bob).await;
    ws_ready(&mut on_a).await;
    send_messages(&cluster.nodes[1], &admin, &channel, 10).await;
    let first = collect(&mut on_a, &channel, 10).await;
    assert_seqs(&first, 1, 10);
    let last_seen = first.last().unwrap().0;
    on_a.close().await.unwrap();

    // While bob is away, more arrive through node 0; bob comes back on node 1.
    send_messages(&cluster.nodes[0], &admin, &channel, 15).await;
    let mut on_b = cluster.nodes[1].ws(&bob).await;
    on_b.send(&ClientFrame::sync_after_seq(&channel, last_seen))
        .await
        .unwrap();
    let mut tail = Vec::new();
    loop {
        let e = next_of_any(&mut on_b).await;
        match e.kind.as_str() {
            event_type::CHANNEL_MESSAGE_NEW => tail.push((e.seq.unwrap(), e.message_id)),
            event_type::SYNC_COMPLETE => break,
            event_type::ERROR => panic!("sync refused: {e:?}"),
            _ => {}
        }
    }
    assert_seqs(&tail, 11, 25);
    // And live delivery on the new node continues right after the synced tail.
    send_messages(&cluster.nodes[0], &admin, &channel, 3).await;
    assert_seqs(&collect(&mut on_b, &channel, 3).await, 26, 28);
}

async fn next_of_any(ws: &mut dialtone::client::WsClient) -> dialtone::protocol::ws::Event {
    match ws.next_within(WAIT).await {
        Ok(Some(Incoming::Event(e))) => *e,
        other => panic!("socket ended: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_message_that_arrives_late_is_still_delivered_before_later_local_ones() {
    const ROUNDS: usize = 5;
    let Some(nats) = shared_nats() else { return };
    // Node 0's messages reach node 1 50 ms after their commit: node 1 commits its own next
    // message before it hears of node 0's, and must hold it back.
    let cluster = TestCluster::start_on(2, &nats, |i, s| {
        if i == 0 {
            s.publish_delay = Some(Duration::from_millis(50));
        }
    })
    .await;
    let (admin, channel) = channel(&cluster).await;
    let bob = cluster.nodes[0].user("bob").await;
    let carol = cluster.nodes[0].user("carol").await;
    known_on(&cluster, 1, &bob, &channel).await;
    let mut watch_b = cluster.nodes[1].ws(&bob).await;
    let mut on_a = cluster.nodes[0].ws(&admin).await;
    let mut on_b = cluster.nodes[1].ws(&carol).await;
    for ws in [&mut watch_b, &mut on_a, &mut on_b] {
        ws_ready(ws).await;
    }
    let mut expected = Vec::new();
    for round in 0..ROUNDS {
        let first =
            ClientFrame::channel_message(&channel, "Zmlyc3Q=", "bg==", Some(format!("a{round}")));
        on_a.send(&first).await.unwrap();
        expected.push(echo_of(&mut on_a, &format!("a{round}")).await);
        let second =
            ClientFrame::channel_message(&channel, "bGF0ZXI=", "bg==", Some(format!("b{round}")));
        on_b.send(&second).await.unwrap();
        expected.push(echo_of(&mut on_b, &format!("b{round}")).await);
    }
    let got = collect(&mut watch_b, &channel, 2 * ROUNDS).await;
    assert_seqs(&got, 1, (2 * ROUNDS) as i64);
    let ids: Vec<String> = got.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, expected, "commit order on the node that heard late");
}

/// The id of the echo of this socket's message `client_id` (the other messages it receives are
/// passed over).
async fn echo_of(ws: &mut dialtone::client::WsClient, client_id: &str) -> String {
    loop {
        let e = next_of(ws, event_type::CHANNEL_MESSAGE_NEW).await;
        if e.client_message_id.as_deref() == Some(client_id) {
            return e.message_id;
        }
    }
}
