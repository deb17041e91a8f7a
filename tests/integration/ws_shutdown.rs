//! Graceful shutdown with messages provably in flight: a write gate holds the group commit while
//! messages are accepted, shutdown begins, and only then is the commit let through.

use std::collections::{HashMap, HashSet};

use dialtone::client::{Incoming, WsClient};
use dialtone::protocol::ws::{ClientFrame, Event, close_code, error_code, event_type};

use crate::support::*;

fn message(channel: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, "eA==", "bg==", Some(client_id.to_owned()))
}

/// What the server said about the messages of one socket, by client_message_id.
#[derive(Default)]
struct Outcomes {
    /// client_message_id → message_id.
    echoed: HashMap<String, String>,
    /// client_message_id → error code.
    rejected: HashMap<String, String>,
}

impl Outcomes {
    fn record(&mut self, e: &Event) {
        if e.kind == event_type::PRESENCE_UPDATED {
            return;
        }
        let Some(client_id) = e.client_message_id.clone() else {
            panic!("an event without correlation id: {e:?}");
        };
        let fresh = match e.kind.as_str() {
            event_type::CHANNEL_MESSAGE_NEW => self
                .echoed
                .insert(client_id.clone(), e.message_id.clone())
                .is_none(),
            event_type::ERROR => self
                .rejected
                .insert(client_id.clone(), e.code.clone().unwrap_or_default())
                .is_none(),
            _ => panic!("unexpected event {e:?}"),
        };
        assert!(fresh, "two answers for {client_id}");
        assert!(
            !(self.echoed.contains_key(&client_id) && self.rejected.contains_key(&client_id)),
            "{client_id} was both acknowledged and rejected"
        );
    }
}

/// Is `e` the answer to a readiness probe?
fn is_probe_answer(e: &Event) -> bool {
    e.kind == event_type::ERROR && e.code.as_deref() == Some(error_code::UNSUPPORTED_TYPE)
}

async fn next_event(ws: &mut WsClient) -> Result<Event, Option<u16>> {
    match ws.next_within(WAIT).await {
        Ok(Some(Incoming::Event(e))) => Ok(*e),
        Ok(Some(Incoming::Closed { code, .. })) => Err(Some(code)),
        Ok(None) | Err(dialtone::client::ClientError::Transport(_)) => Err(None),
        Err(e) => panic!("socket neither answered nor closed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_or_rejects_in_flight_messages_then_closes_1001() {
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let channel = alice.rest.create_channel("Yg==").await.unwrap();
    let mut ws = server.ws(&alice).await;
    // Her own arrival is announced to her: after it, nothing else is on its way.
    let e = ws
        .expect_event(event_type::PRESENCE_UPDATED, WAIT)
        .await
        .unwrap();
    assert_eq!(e.sender, alice.id());

    let gate = WriteGate::hold(&server.db).await;
    const QUEUED: usize = 50;
    let mut sent: Vec<String> = (0..QUEUED).map(|i| format!("m{i}")).collect();
    for id in &sent {
        ws.send(&message(&channel.id, id)).await.unwrap();
    }
    gate.wait_for_blocked_writer(&server.db).await;
    // No answer before the probe's: every message was accepted, and none is committed.
    assert_nothing_queued(&mut ws, "queued messages are answered before shutdown").await;

    let stopping = server.stop();
    let in_flight = async {
        let mut outcomes = Outcomes::default();
        // Until shutdown reaches this session, late messages queue behind the gate like the
        // others; the first one refused shows that shutdown has begun — with all of them pending.
        for k in 0.. {
            let id = format!("late{k}");
            ws.send(&message(&channel.id, &id)).await.unwrap();
            sent.push(id);
            ws.send(&ClientFrame {
                kind: "test.ready.probe".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            let first = next_event(&mut ws).await.expect("an answer");
            if is_probe_answer(&first) {
                continue;
            }
            outcomes.record(&first);
            assert!(is_probe_answer(
                &next_event(&mut ws).await.expect("probe answer")
            ));
            break;
        }
        assert!(
            outcomes.echoed.is_empty(),
            "nothing commits while the gate is held"
        );
        gate.release().await;
        let close = loop {
            match next_event(&mut ws).await {
                Ok(e) => outcomes.record(&e),
                Err(code) => break code,
            }
        };
        (outcomes, close)
    };
    let (stopped, (outcomes, close)) = tokio::join!(stopping, in_flight);
    stopped.expect("clean shutdown");

    assert_eq!(close, Some(close_code::GOING_AWAY));
    for (id, code) in &outcomes.rejected {
        assert_eq!(code, error_code::SERVER_ERROR, "{id} rejected with {code}");
    }
    let answered: HashSet<&String> = outcomes
        .echoed
        .keys()
        .chain(outcomes.rejected.keys())
        .collect();
    let unanswered: Vec<&String> = sent.iter().filter(|id| !answered.contains(id)).collect();
    assert!(
        unanswered.is_empty(),
        "{} messages neither acknowledged nor rejected: {unanswered:?}",
        unanswered.len()
    );
    // Shutdown drains the queue: what was pending when it began is committed, not dropped.
    for id in &sent[..QUEUED] {
        assert!(
            outcomes.echoed.contains_key(id),
            "{id} was pending when shutdown began but not committed"
        );
    }
    assert_eq!(
        outcomes.rejected.len(),
        1,
        "only the message sent after shutdown began is refused"
    );

    let stored: HashMap<String, String> = server
        .db
        .strings("SELECT id || ' ' || client_message_id AS v FROM channel_messages")
        .await
        .into_iter()
        .flatten()
        .map(|v| {
            let (id, client_id) = v.split_once(' ').unwrap();
            (client_id.to_owned(), id.to_owned())
        })
        .collect();
    assert_eq!(
        stored, outcomes.echoed,
        "every acknowledged message is stored under its id, and nothing unacknowledged is"
    );
}
