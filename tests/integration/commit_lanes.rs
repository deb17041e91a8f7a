//! Commit lanes (`DIALTONE_DB_COMMIT_LANES`): channels are split between group commits that run
//! side by side, so a commit waiting on one channel holds up only its own lane, while the order
//! within a lane (hence within a channel) stays commit order.

use dialtone::actors::db::commit_lane;
use dialtone::protocol::ws::{ClientFrame, event_type};

use crate::support::*;

const LANES: usize = 2;

fn message(channel: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, "eA==", "bmFtZQ==", Some(client_id.to_owned()))
}

#[tokio::test]
async fn a_commit_waiting_on_one_channel_holds_up_only_its_own_lane() {
    if backend() == Backend::Sqlite {
        skip("SQLite has one writer: it always commits in one lane");
        return;
    }
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_DB_COMMIT_LANES", LANES.to_string());
    })
    .await;
    let alice = server.user("alice").await;
    let held = alice.rest.create_channel("aGVsZA==").await.unwrap().id;
    // One more channel in `held`'s lane and one in the other (the lane is a function of the id).
    let lane = commit_lane(&held, LANES);
    let (mut same, mut other) = (None, None);
    while same.is_none() || other.is_none() {
        let id = alice.rest.create_channel("Yw==").await.unwrap().id;
        if commit_lane(&id, LANES) == lane {
            same.get_or_insert(id);
        } else {
            other.get_or_insert(id);
        }
    }
    let (same, other) = (same.unwrap(), other.unwrap());
    let mut ws = server.ws(&alice).await;

    // Holding `held`'s counter row blocks the commit that numbers its message.
    let gate = WriteGate::hold_channel(&server.db, &held).await;
    ws.send(&message(&held, "h")).await.unwrap();
    gate.wait_for_blocked_writer(&server.db).await;
    ws.send(&message(&same, "s")).await.unwrap();
    ws.send(&message(&other, "o")).await.unwrap();

    // The other lane commits meanwhile; `same` queues behind the blocked batch of its lane.
    let e = ws
        .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
        .await
        .unwrap();
    assert_eq!(e.client_message_id.as_deref(), Some("o"), "{e:?}");
    assert_eq!(server.db.messages_in(&other).await, 1);
    assert_eq!(server.db.messages_in(&held).await, 0);
    assert_eq!(server.db.messages_in(&same).await, 0, "its lane was free");

    gate.release().await;
    for id in ["h", "s"] {
        let e = ws
            .expect_event(event_type::CHANNEL_MESSAGE_NEW, WAIT)
            .await
            .unwrap();
        assert_eq!(
            e.client_message_id.as_deref(),
            Some(id),
            "lane order: {e:?}"
        );
        assert_eq!(e.seq, Some(1));
    }
}
