//! Durability on PostgreSQL through the real binary: a `dialtone serve` killed with SIGKILL
//! mid-stream has every message it acknowledged (echoed) in the database. The embedded-store
//! equivalent is `embedded::hard_kill_loses_no_acknowledged_message`.

use std::collections::HashSet;

use dialtone::client::{RestClient, Trust, WsClient, WsOptions};
use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{CreateInviteRequest, RegisterRequest};
use dialtone::protocol::ws::ClientFrame;

use crate::procs::{self, base_env};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_kill_on_postgres_loses_no_acknowledged_message() {
    if backend() == Backend::Sqlite {
        skip(
            "PostgreSQL durability (the embedded store has embedded::hard_kill_loses_no_acknowledged_message)",
        );
        return;
    }
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    env.insert("DIALTONE_WS_SEND_RATE".into(), "0".into());
    let server = procs::serve(&env).await.serving();
    let trust = Trust::Fingerprint(server.fingerprint.clone().expect("serves TLS"));
    let rest = RestClient::new(&server.base_url(), &trust).unwrap();
    let invite = rest
        .clone()
        .with_credentials(dialtone::client::rest::Credentials::AdminToken(
            env["DIALTONE_ADMIN_TOKEN"].clone(),
        ))
        .mint_invite(&CreateInviteRequest::default())
        .await
        .unwrap()
        .token;
    let keys = DeviceKeypair::generate();
    let auth = rest
        .register(&RegisterRequest {
            username: "writer".into(),
            password: "writer-pass-1".into(),
            public_key: keys.public_key_b64(),
            invite_token: invite,
        })
        .await
        .unwrap();
    let channel = rest
        .with_token(&auth.token)
        .create_channel("ZHVyYWJsZQ==")
        .await
        .unwrap();
    let ws = WsClient::connect(&WsOptions::new(&server.base_url(), &auth.token, trust))
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let channel_id = channel.id.clone();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            let frame =
                ClientFrame::channel_message(&channel_id, "ZGF0YQ==", "bg==", Some(i.to_string()));
            if tx.send(&frame).await.is_err() {
                break;
            }
        }
    });
    // Kill mid-stream, once a good number of messages were acknowledged.
    let mut acked = acknowledged(&mut rx, 300).await;
    server.kill().await;
    acknowledged_until_the_end(&mut rx, &mut acked).await;
    sender.abort();

    let stored: HashSet<String> = db
        .strings("SELECT id AS v FROM channel_messages")
        .await
        .into_iter()
        .flatten()
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost after a hard kill",
        lost.len(),
        acked.len()
    );
}
