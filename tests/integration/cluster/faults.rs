//! What the bus loses is repaired from PostgreSQL: a node that never published, and NATS
//! restarted under load.

use std::collections::HashSet;

use dialtone::protocol::ws::ClientFrame;
use reqwest::Method;

use super::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_a_node_committed_but_never_published_reach_the_others_by_repair() {
    let Some(nats) = shared_nats() else { return };
    let cluster = TestCluster::start_on(2, &nats, |i, s| {
        s.skip_message_publish = i == 0;
    })
    .await;
    let (admin, channel) = channel(&cluster).await;
    let bob = cluster.nodes[0].user("bob").await;
    known_on(&cluster, 1, &bob, &channel).await;
    let mut on_b = cluster.nodes[1].ws(&bob).await;
    ws_ready(&mut on_b).await;

    let echoes = send_messages(&cluster.nodes[0], &admin, &channel, 12).await;
    let got = collect(&mut on_b, &channel, 12).await;
    assert_seqs(&got, 1, 12);
    let ids: Vec<String> = got.into_iter().map(|(_, id)| id).collect();
    let sent: Vec<String> = echoes.into_iter().map(|e| e.message_id).collect();
    assert_eq!(ids, sent);
    assert_no_more_messages(&mut on_b, &channel).await;
    let m = Scrape::of(&cluster.nodes[1]).await;
    assert!(
        m.counter("dialtone_cluster_gap_filled_messages_total") >= 12,
        "{}",
        m.0
    );
    assert!(m.counter("dialtone_cluster_repairs_total") >= 1, "{}", m.0);
}

/// Send `n` messages with client ids continuing from `sent`.
async fn send_phase(
    tx: &mut dialtone::client::ws::WsSender,
    channel: &str,
    n: usize,
    sent: &mut usize,
) {
    for _ in 0..n {
        tx.send(&ClientFrame::channel_message(
            channel,
            format!("cmVzdGFydA{sent}"),
            "bg==",
            Some(format!("r{sent}")),
        ))
        .await
        .unwrap();
        *sent += 1;
    }
}

async fn ready_status(server: &TestServer) -> u16 {
    send_raw(server.rest().request(Method::GET, "/ready"))
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restarted_mid_load_loses_no_acknowledged_message() {
    const PHASE: usize = 20;
    if shared_nats().is_none() {
        return;
    }
    let Some(mut nats) = NatsProcess::start() else {
        return;
    };
    let cluster = TestCluster::start_on(2, &nats.url(), |_, _| {}).await;
    let (admin, channel) = channel(&cluster).await;
    let bob = cluster.nodes[0].user("bob").await;
    known_on(&cluster, 1, &bob, &channel).await;
    let mut on_b = cluster.nodes[1].ws(&bob).await;
    ws_ready(&mut on_b).await;
    assert_eq!(ready_status(&cluster.nodes[0]).await, 200);

    let sender = cluster.nodes[0].ws(&admin).await;
    let (mut tx, mut rx) = sender.split();
    let mut acked = HashSet::new();
    let mut sent = 0usize;
    send_phase(&mut tx, &channel, PHASE, &mut sent).await;
    acked.extend(acknowledged(&mut rx, PHASE).await);

    nats.kill();
    let n0 = &cluster.nodes[0];
    eventually("/ready reports the bus down", || async {
        ready_status(n0).await == 503
    })
    .await;
    // Committed and acknowledged while the bus is down: node 1 can only get them by repair.
    send_phase(&mut tx, &channel, PHASE, &mut sent).await;
    acked.extend(acknowledged(&mut rx, PHASE).await);

    nats.restart();
    eventually("/ready recovers", || async {
        ready_status(n0).await == 200
    })
    .await;
    send_phase(&mut tx, &channel, PHASE, &mut sent).await;
    acked.extend(acknowledged(&mut rx, PHASE).await);
    assert_eq!(acked.len(), 3 * PHASE);

    let got = collect(&mut on_b, &channel, 3 * PHASE).await;
    assert_seqs(&got, 1, (3 * PHASE) as i64);
    let delivered: HashSet<String> = got.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        delivered, acked,
        "every acknowledged message, on the other node"
    );
    let m = Scrape::of(&cluster.nodes[1]).await;
    assert!(
        m.counter("dialtone_cluster_bus_reconnects_total") >= 1,
        "{}",
        m.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_bus_message_without_the_cluster_key_is_ignored() {
    let Some(cluster) = TestCluster::start(1).await else {
        return;
    };
    let bob = cluster.nodes[0].user("bob").await;
    let mut ws = cluster.nodes[0].ws(&bob).await;
    ws_ready(&mut ws).await;

    // Anyone who can publish on NATS, without the nodes' key: "bob was disabled".
    let nats = async_nats::connect(cluster.nats.as_str()).await.unwrap();
    let forged = serde_json::json!({
        "node": "intruder",
        "kind": "notice",
        "notice": {"UserDisabled": {"user_id": bob.id()}},
    });
    let body = serde_json::to_vec(&forged).unwrap();
    let mut tagged = vec![0u8; 32];
    tagged.extend_from_slice(&body);
    for payload in [body, tagged] {
        nats.publish(format!("{}.ev", cluster.prefix), payload.into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let node = &cluster.nodes[0];
    eventually("both forgeries counted", || async {
        Scrape::of(node)
            .await
            .counter("dialtone_cluster_bus_undecodable_total")
            >= 2
    })
    .await;
    ws_ready(&mut ws).await;
    assert!(bob.rest.channels().await.is_ok(), "the session still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_bus_message_is_refused() {
    use futures_util::StreamExt;
    let Some(cluster) = TestCluster::start(2).await else {
        return;
    };
    // Capture a genuine, signed heartbeat off the wire and publish it again, as anyone who can
    // read and write the bus (but holds no key) could.
    let nats = async_nats::connect(cluster.nats.as_str()).await.unwrap();
    let mut sub = nats
        .subscribe(format!("{}.presence", cluster.prefix))
        .await
        .unwrap();
    let captured = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a heartbeat within the wait")
        .unwrap();
    let refused = || async {
        let mut total = 0;
        for node in &cluster.nodes {
            total += Scrape::of(node)
                .await
                .counter("dialtone_cluster_bus_undecodable_total");
        }
        total
    };
    assert_eq!(refused().await, 0, "genuine traffic is all accepted");
    for _ in 0..3 {
        nats.publish(captured.subject.clone(), captured.payload.clone())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    eventually("the other node refuses the replays", || async {
        refused().await >= 3
    })
    .await;
}

/// The close code and reason that end `ws` (events before it are skipped).
async fn closed_with(ws: &mut dialtone::client::WsClient) -> (u16, String) {
    loop {
        match ws.next_within(WAIT).await {
            Ok(Some(Incoming::Closed { code, reason })) => return (code, reason),
            Ok(Some(Incoming::Event(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notices_the_bus_lost_are_healed_by_repair_and_the_session_check() {
    let Some(nats) = shared_nats() else { return };
    let cluster = TestCluster::start_on(2, &nats, |i, s| {
        s.skip_notice_publish = i == 0;
    })
    .await;
    let admin = cluster.nodes[0].user("admin").await;
    let bob = cluster.nodes[0].user("bob").await;
    let carol = cluster.nodes[0].user("carol").await;
    let mut bob_b = cluster.nodes[1].ws(&bob).await;
    let mut carol_b = cluster.nodes[1].ws(&carol).await;
    ws_ready(&mut bob_b).await;
    ws_ready(&mut carol_b).await;

    // A channel created on node 0 is announced on node 1 once its repair reads it.
    let ch = admin.rest.create_channel("bG9zdA==").await.unwrap();
    let e = next_of(&mut carol_b, event_type::CHANNEL_UPDATED).await;
    assert_eq!(e.channel_id.as_deref(), Some(ch.id.as_str()));
    assert_eq!(e.channel_name_enc.as_deref(), Some("bG9zdA=="));

    // Revocations whose notices were lost close the sockets with the reason the notice gives.
    bob.rest.logout().await.unwrap();
    assert_eq!(
        closed_with(&mut bob_b).await,
        (1000, "session revoked".into())
    );
    cluster.nodes[0]
        .admin()
        .admin_user_action(carol.id(), "disable")
        .await
        .unwrap();
    assert_eq!(
        closed_with(&mut carol_b).await,
        (1000, "account disabled".into())
    );
    let m = Scrape::of(&cluster.nodes[1]).await;
    assert!(
        m.counter("dialtone_cluster_sessions_closed_by_check_total") >= 2,
        "{}",
        m.0
    );
}
