//! Crash safety and idempotency through the real binary (issue 9, item 6), on both backends:
//! several senders write continuously, `dialtone serve` is killed with SIGKILL mid-load and
//! restarted on the same database.
//!
//! What must hold, precisely:
//! - acknowledged ⊆ stored: every message whose echo a client received is in the database, with
//!   the echoed id and `client_message_id`;
//! - stored ⊆ sent: every stored row is one a client wrote to its socket — its
//!   `(sender, client_message_id)` is among that sender's sent frames — and no pair is stored
//!   twice. (Stored but unacknowledged rows are allowed: a commit whose echo the kill cut off.)
//! - after the restart, resending every sent-but-unacknowledged frame by `client_message_id`
//!   leaves exactly one row per sent `client_message_id`, and each resend is echoed (the stored
//!   original where the first attempt had committed).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use dialtone::client::{Incoming, RestClient, Trust, WsClient, WsOptions};
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{CreateInviteRequest, RegisterRequest};
use dialtone::protocol::ws::{ClientFrame, event_type};

use crate::procs::{self, Serving, base_env};
use crate::support::*;

const SENDERS: usize = 4;
/// Acknowledged messages (all senders) before the kill.
const ACKED_BEFORE_KILL: usize = 400;
/// Frames each sender writes at most (it stops earlier when the kill ends its socket).
const MAX_SENT_EACH: usize = 5000;

fn trust(server: &Serving) -> Trust {
    Trust::Fingerprint(server.fingerprint.clone().expect("serves TLS"))
}

fn frame(channel: &str, client_id: &str) -> ClientFrame {
    ClientFrame::channel_message(channel, "ZGF0YQ==", "bg==", Some(client_id.to_owned()))
}

struct Sender {
    user_id: String,
    token: String,
    /// client_message_ids written to the socket.
    sent: Arc<Mutex<Vec<String>>>,
    /// client_message_id → echoed message id.
    acked: Arc<Mutex<HashMap<String, String>>>,
}

/// `(sender_id, client_message_id, id)` of every stored message.
async fn stored(db: &TestDb) -> Vec<(String, String, String)> {
    let rows = db
        .strings(
            "SELECT sender_id || ' ' || COALESCE(client_message_id, '-') || ' ' || id AS v \
             FROM channel_messages",
        )
        .await;
    rows.into_iter()
        .flatten()
        .map(|r| {
            let mut p = r.split(' ').map(str::to_owned);
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_then_resend_leaves_one_row_per_sent_message() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    env.insert("DIALTONE_WS_SEND_RATE".into(), "0".into());
    let server = procs::serve(&env).await.serving();
    let rest = RestClient::new(&server.base_url(), &trust(&server)).unwrap();
    let invite = rest
        .clone()
        .with_credentials(dialtone::client::rest::Credentials::AdminToken(
            env["DIALTONE_ADMIN_TOKEN"].clone(),
        ))
        .mint_invite(&CreateInviteRequest {
            max_uses: Some(SENDERS as u32),
            ..Default::default()
        })
        .await
        .unwrap()
        .token;
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let auth = rest
            .register(&RegisterRequest {
                username: format!("writer{n}"),
                password: "writer-pass-1".into(),
                public_key: DeviceKeypair::generate().public_key_b64(),
                invite_token: invite.clone(),
            })
            .await
            .unwrap();
        senders.push(Sender {
            user_id: auth.user_id,
            token: auth.token,
            sent: Arc::default(),
            acked: Arc::default(),
        });
    }
    let channel = rest
        .with_token(&senders[0].token)
        .create_channel("ZHVyYWJsZQ==")
        .await
        .unwrap()
        .id;

    // Each sender writes continuously on its own socket and records its echoes.
    let total_acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (n, s) in senders.iter().enumerate() {
        let ws = WsClient::connect(&WsOptions::new(
            &server.base_url(),
            &s.token,
            trust(&server),
        ))
        .await
        .unwrap();
        let (mut tx, mut rx) = ws.split();
        let (sent, acked, channel) = (s.sent.clone(), s.acked.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            // Continuous until the kill (bounded, so a slow kill cannot make the resend huge).
            for i in 0..MAX_SENT_EACH {
                let id = format!("w{n}-{i}");
                if tx.send(&frame(&channel, &id)).await.is_err() {
                    break;
                }
                sent.lock().unwrap().push(id);
            }
        }));
        let me = s.user_id.clone();
        let total = total_acked.clone();
        tasks.push(tokio::spawn(async move {
            // Until the killed server's socket ends.
            while let Ok(Some(incoming)) = rx.next().await {
                if let Incoming::Event(e) = incoming
                    && e.kind == event_type::CHANNEL_MESSAGE_NEW
                    && e.sender == me
                {
                    let cmid = e.client_message_id.clone().expect("echo names its send");
                    acked.lock().unwrap().insert(cmid, e.message_id.clone());
                    total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    eventually(
        "enough messages are acknowledged before the kill",
        || async { total_acked.load(std::sync::atomic::Ordering::Relaxed) >= ACKED_BEFORE_KILL },
    )
    .await;
    server.kill().await;
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .expect("the killed server's sockets end")
            .unwrap();
    }

    // acknowledged ⊆ stored, stored ⊆ sent, no pair twice.
    let rows = stored(&db).await;
    let by_sender: HashMap<&str, &Sender> =
        senders.iter().map(|s| (s.user_id.as_str(), s)).collect();
    let mut pairs = HashSet::new();
    for (sender, cmid, _) in &rows {
        let s = by_sender[sender.as_str()];
        assert!(
            s.sent.lock().unwrap().contains(cmid),
            "stored {cmid} of {sender} was never sent"
        );
        assert!(
            pairs.insert((sender.clone(), cmid.clone())),
            "{cmid} stored twice"
        );
    }
    let ids: HashMap<(String, String), String> = rows
        .iter()
        .map(|(s, c, id)| ((s.clone(), c.clone()), id.clone()))
        .collect();
    let mut acked_total = 0;
    for s in &senders {
        for (cmid, id) in s.acked.lock().unwrap().iter() {
            acked_total += 1;
            assert_eq!(
                ids.get(&(s.user_id.clone(), cmid.clone())),
                Some(id),
                "acknowledged {cmid} is stored with its echoed id"
            );
        }
    }
    assert!(acked_total >= ACKED_BEFORE_KILL);

    // Restart on the same database and resend everything sent but not acknowledged.
    let server = procs::serve(&env).await.serving();
    let mut expected_rows = 0;
    for s in &senders {
        let sent = s.sent.lock().unwrap().clone();
        let acked = s.acked.lock().unwrap().clone();
        expected_rows += sent.len();
        let unacked: Vec<&String> = sent.iter().filter(|c| !acked.contains_key(*c)).collect();
        let mut ws = WsClient::connect(&WsOptions::new(
            &server.base_url(),
            &s.token,
            trust(&server),
        ))
        .await
        .unwrap();
        for cmid in &unacked {
            ws.send(&frame(&channel, cmid)).await.unwrap();
        }
        let mut echoed = HashSet::new();
        while echoed.len() < unacked.len() {
            let Some(Incoming::Event(e)) = ws.next_within(WAIT).await.unwrap() else {
                panic!("the restarted server closed the socket");
            };
            if e.kind == event_type::ERROR {
                // Refused for load (the pending bound): what a client does, resend it.
                assert_eq!(e.code.as_deref(), Some("rate_limited"), "{e:?}");
                let cmid = e
                    .client_message_id
                    .clone()
                    .expect("the refusal names its send");
                ws.send(&frame(&channel, &cmid)).await.unwrap();
                continue;
            }
            if e.kind != event_type::CHANNEL_MESSAGE_NEW || e.sender != s.user_id {
                continue;
            }
            let cmid = e.client_message_id.clone().unwrap();
            assert!(
                !acked.contains_key(&cmid),
                "only resends are echoed: {cmid}"
            );
            // A resend whose first attempt had committed is echoed that original.
            if let Some(id) = ids.get(&(s.user_id.clone(), cmid.clone())) {
                assert_eq!(&e.message_id, id, "{cmid}: the original, not a new row");
            }
            assert!(echoed.insert(cmid.clone()), "{cmid} echoed twice");
        }
    }
    let rows = stored(&db).await;
    assert_eq!(
        rows.len(),
        expected_rows,
        "exactly one row per sent client_message_id"
    );
    let distinct: HashSet<_> = rows.iter().map(|(s, c, _)| (s, c)).collect();
    assert_eq!(distinct.len(), rows.len());
    server.kill().await;
}
