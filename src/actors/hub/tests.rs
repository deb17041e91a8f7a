//! Hub unit tests: presence, subscriptions, fan-out, shutdown.
use super::*;
use crate::actors::probe::{self, Sync};

fn connect(hub: &HubHandle, handle: &SessionHandle, user: &str) {
    hub.tell(Connect {
        handle: handle.clone(),
        user_id: user.to_owned(),
        device_id: format!("dev-{}", handle.key.0),
        db_session_id: format!("sess-{}", handle.key.0),
        subscribe_all: true,
    });
}

fn presence_events(log: &std::sync::Mutex<probe::Log>) -> Vec<(String, bool)> {
    log.lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| e.kind == "presence.updated")
        .map(|e| (e.sender.clone(), e.online.unwrap_or_default()))
        .collect()
}

#[actix::test]
async fn presence_counts_sockets_per_user() {
    let metrics = Metrics::new();
    let hub = Hub::start(vec![], vec![], 1, 64, 64, metrics.clone(), None);
    let (watcher, wh, wlog) = probe::spawn(&metrics);
    let (_b1, bh1, _) = probe::spawn(&metrics);
    let (_b2, bh2, _) = probe::spawn(&metrics);
    connect(&hub, &wh, "watcher");
    connect(&hub, &bh1, "bob");
    connect(&hub, &bh2, "bob");
    let online = hub
        .ask(Presence(vec!["bob".into(), "nobody".into()]))
        .await
        .unwrap();
    assert_eq!(online.get("bob"), Some(&true));
    assert_eq!(online.get("nobody"), Some(&false));

    hub.tell(Disconnect(bh1.key));
    let still = hub.ask(Presence(vec!["bob".into()])).await.unwrap();
    assert_eq!(still.get("bob"), Some(&true), "one socket left");
    hub.tell(Disconnect(bh2.key));
    let gone = hub.ask(Presence(vec!["bob".into()])).await.unwrap();
    assert_eq!(gone.get("bob"), Some(&false));

    watcher.send(Sync).await.unwrap();
    assert_eq!(
        presence_events(&wlog),
        [
            ("watcher".to_owned(), true),
            ("bob".to_owned(), true),
            ("bob".to_owned(), false)
        ],
        "one event per first and last socket"
    );
    assert_eq!(metrics.users_online.get(), 1);
}

#[actix::test]
async fn subscriptions_follow_channel_lifecycle() {
    let metrics = Metrics::new();
    let hub = Hub::start(vec!["c1".into()], vec![], 1, 64, 64, metrics.clone(), None);
    let (p, h, log) = probe::spawn(&metrics);
    hub.tell(Connect {
        handle: h.clone(),
        user_id: "u".into(),
        device_id: "d".into(),
        db_session_id: "s".into(),
        subscribe_all: false,
    });
    assert_eq!(
        hub.ask(Subscribe {
            key: h.key,
            channel_id: "nope".into()
        })
        .await
        .unwrap(),
        Err(())
    );
    assert_eq!(
        hub.ask(Subscribe {
            key: h.key,
            channel_id: "c1".into()
        })
        .await
        .unwrap(),
        Ok(())
    );
    let stats = hub.ask(Stats).await.unwrap();
    assert_eq!(
        (stats.connections, stats.channels, stats.channel_actors),
        (1, 1, 1)
    );

    hub.tell(Notice::ChannelDeleted("c1".into()));
    assert_eq!(
        hub.ask(Unsubscribe {
            key: h.key,
            channel_id: "c1".into()
        })
        .await
        .unwrap(),
        Err(()),
        "a deleted channel is unknown"
    );
    hub.tell(Notice::SessionsRevoked {
        session_ids: vec!["s".into()],
    });
    hub.ask(Stats).await.unwrap();
    p.send(Sync).await.unwrap();
    let log = log.lock().unwrap();
    assert!(log.events.iter().any(|e| e.kind == "channel.deleted"));
    assert_eq!(log.closes, [crate::protocol::ws::close_code::NORMAL]);
}

#[actix::test]
async fn a_wedged_or_stopped_channel_arbiter_fails_the_liveness_probe() {
    use crate::actors::liveness::Dead;
    let hub = Hub::start(vec![], vec![], 2, 64, 64, Metrics::new(), None);
    let bound = Duration::from_millis(100);
    assert_eq!(hub.arbiters_alive(bound).await, Ok(()));

    // A channel actor that blocks its thread: the thread's pinger cannot answer.
    let (unblock, blocked) = std::sync::mpsc::channel::<()>();
    // Probe only once the thread is blocked: a probe answered before the blocking task ran would
    // prove nothing.
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    assert!(hub.arbiters[1].spawn(async move {
        let _ = started.send(());
        let _ = blocked.recv_timeout(Duration::from_secs(10));
    }));
    running.await.unwrap();
    assert_eq!(
        hub.arbiters_alive(bound).await,
        Err(Dead::Unresponsive("channel arbiter 1".into(), bound))
    );
    unblock.send(()).unwrap();
    assert_eq!(
        hub.arbiters_alive(PROBE).await,
        Ok(()),
        "answers once unblocked"
    );

    // A thread that ended (what a panic in a channel actor leaves).
    hub.arbiters[0].stop();
    let deadline = tokio::time::Instant::now() + PROBE;
    let dead = loop {
        match hub.arbiters_alive(bound).await {
            Err(dead) => break dead,
            Ok(()) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Ok(()) => panic!("a stopped arbiter still passes its probe"),
        }
    };
    assert_eq!(dead, Dead::Stopped("channel arbiter 0".into()));
    assert_eq!(dead.to_string(), "channel arbiter 0 has stopped");
    hub.stop_arbiters();
}

const PROBE: Duration = crate::actors::liveness::PROBE_BOUND;

#[test]
fn a_spliced_broadcast_frame_is_byte_for_byte_the_frame_of_the_event_with_that_envelope() {
    let event = crate::protocol::ws::Event {
        kind: "message.broadcast".into(),
        message_id: "m-1".into(),
        sender: "u-1".into(),
        body: "Ym9keQ==".into(),
        sent_at: "2026-12-03T10:00:00.000000Z".into(),
        sender_name_enc: Some("bmFtZQ==".into()),
        sender_public_key: Some("a2V5".into()),
        key_envelope: Some(String::new()),
        ..Default::default()
    };
    let slot = events::EnvelopeSlot::of(&event);
    for envelope in ["", "djIuZW52ZWxvcGU=", "a \"quoted\" \\ value\u{1}\n"] {
        let whole = crate::actors::frame(&crate::protocol::ws::Event {
            key_envelope: Some(envelope.into()),
            ..event.clone()
        });
        assert_eq!(slot.frame(envelope), whole, "envelope {envelope:?}");
    }
}
