//! Several real nodes on one database and the machine's NATS (issue 11): delivery across nodes in
//! `seq` order and exactly once, `sync` on any node, presence and revocation across nodes, and
//! repair when NATS or a node loses messages. PostgreSQL only; see `support::cluster`.

mod delivery;
mod faults;
mod presence;

use std::collections::HashSet;
use std::time::Duration;

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, Event, event_type};

use crate::support::*;

/// Read `n` messages of `channel`; returns `(seq, id)` in arrival order. A repeated id fails.
pub async fn collect(ws: &mut WsClient, channel: &str, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::with_capacity(n);
    let mut seen = HashSet::new();
    while got.len() < n {
        match ws.next_within(Duration::from_secs(30)).await {
            Ok(Some(Incoming::Event(e))) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                if e.channel_id.as_deref() != Some(channel) {
                    continue;
                }
                assert!(
                    seen.insert(e.message_id.clone()),
                    "duplicate delivery {e:?}"
                );
                got.push((e.seq.expect("seq on every message"), e.message_id));
            }
            Ok(Some(Incoming::Event(e))) if e.kind == event_type::ERROR => {
                panic!("error event: {e:?}")
            }
            Ok(Some(Incoming::Event(_))) => {}
            other => panic!("socket ended after {} messages: {other:?}", got.len()),
        }
    }
    got
}

/// After a probe round trip, no further message of `channel` came (no late duplicate).
pub async fn assert_no_more_messages(ws: &mut WsClient, channel: &str) {
    send_probe(ws).await;
    loop {
        match ws.next_within(WAIT).await {
            Ok(Some(Incoming::Event(e))) if e.kind == event_type::CHANNEL_MESSAGE_NEW => {
                assert_ne!(
                    e.channel_id.as_deref(),
                    Some(channel),
                    "a late duplicate: {e:?}"
                );
            }
            Ok(Some(Incoming::Event(e))) if e.code.as_deref() == Some("unsupported_type") => {
                return;
            }
            Ok(Some(Incoming::Event(_))) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The seqs of `got` are exactly `from..=to`, ascending.
#[track_caller]
pub fn assert_seqs(got: &[(i64, String)], from: i64, to: i64) {
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (from..=to).collect::<Vec<_>>());
}

/// The next event of `kind` on `ws` (others skipped).
pub async fn next_of(ws: &mut WsClient, kind: &str) -> Event {
    ws.expect_event(kind, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("no {kind}: {e}"))
}

/// An admin and a channel, created through node 0.
pub async fn channel(cluster: &TestCluster) -> (TestUser, String) {
    let admin = cluster.nodes[0].user("admin").await;
    let ch = admin.rest.create_channel("Y2x1c3Rlcg==").await.unwrap();
    (admin, ch.id)
}

/// Wait until node `i` knows the channel (its creation notice crossed the bus): a `subscribe`
/// there is answered by nothing (accepted) rather than `channel_not_found`, which the probe that
/// follows it shows.
pub async fn known_on(cluster: &TestCluster, i: usize, user: &TestUser, channel: &str) {
    let node = &cluster.nodes[i];
    eventually("the channel is known on the node", || async {
        let mut ws = node.ws(user).await;
        ws.send(&ClientFrame::subscribe(channel)).await.unwrap();
        send_probe(&mut ws).await;
        loop {
            match ws.next_within(WAIT).await {
                Ok(Some(Incoming::Event(e))) if e.kind == event_type::ERROR => {
                    return e.code.as_deref() == Some("unsupported_type");
                }
                Ok(Some(Incoming::Event(_))) => {}
                _ => return false,
            }
        }
    })
    .await;
}
