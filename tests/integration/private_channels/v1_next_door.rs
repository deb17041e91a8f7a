//! A dialtone v1 client (raw REST and WebSocket, the v1 envelope and sealing scheme) keeps
//! chatting on a public channel with trust v2 clients, while private channels it cannot see
//! exist beside it (issue 10: wire compatibility).

use std::time::Duration;

use dialtone::client::Authenticity;
use dialtone::client::sealing::V1_UNVERIFIED;
use dialtone::client::trust::identity;
use dialtone::crypto::e2e;

use super::*;
use crate::e2e::{ADMIN, ANN, register};

#[tokio::test]
async fn a_v1_client_chats_on_a_public_channel_next_to_private_ones() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let v1 = server.user("oldtimer").await;
    let mut ann = register(&server, ANN).await;
    for d in [&mut admin, &mut ann] {
        let (rest, store) = d.rest_and_store();
        identity::init(rest, store).await.unwrap();
    }
    // A v2 admin's public channel: the v1 device (no signed list) gets its key on v1 terms.
    let (public, report) = admin.create_channel("lobby").await.unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    let private = ann.create_private_channel("v2 only").await.unwrap();
    let listed: Vec<String> = v1
        .rest
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(
        listed.contains(&public.id) && !listed.contains(&private.id),
        "{listed:?}"
    );
    let env = v1.rest.channel_key(&public.id).await.unwrap().unwrap();
    let key = v1
        .keys
        .unwrap_from(&env.sender_public_key, &env.envelope)
        .unwrap();

    // v1 sends as v1 does; the v2 client reads it, marked unverified.
    let mut ws = server.ws(&v1).await;
    ws.send(&ClientFrame::channel_message(
        &public.id,
        e2e::seal(&key, b"hello from v1"),
        e2e::seal(&key, b"oldtimer"),
        Some("v1-1".into()),
    ))
    .await
    .unwrap();
    let mut seen = None;
    for _ in 0..100 {
        let page = admin
            .history(&public.id, &Default::default())
            .await
            .unwrap();
        if let Some(m) = page.messages.into_iter().next() {
            seen = Some(m.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = seen.expect("the v1 message arrived");
    assert_eq!(
        (m.text.as_str(), m.sender_name.as_str()),
        ("hello from v1", "oldtimer")
    );
    assert_eq!(
        m.authenticity,
        Authenticity::Unverified(V1_UNVERIFIED.into())
    );
    assert!(!m.name_verified);

    // The v2 client's reply on the public channel is plain v1 sealing, which v1 opens.
    admin.send(&public.id, "hello v1").await.unwrap();
    let page = v1
        .rest
        .messages(&public.id, &Default::default())
        .await
        .unwrap();
    let texts: Vec<String> = page
        .messages
        .iter()
        .map(|m| e2e::open_text(&key, &m.body).unwrap())
        .collect();
    assert_eq!(texts, ["hello from v1", "hello v1"]);

    // The private channel does not exist for it: history 404, a send refused.
    assert!(matches!(
        v1.rest.messages(&private.id, &Default::default()).await,
        Err(ClientError::Api { status: 404, .. })
    ));
    ws.send(&ClientFrame::channel_message(
        &private.id,
        "djEuMS5ib2R5",
        NAME_ENC,
        Some("v1-2".into()),
    ))
    .await
    .unwrap();
    let e = ws.expect_event(event_type::ERROR, WAIT).await.unwrap();
    assert_eq!(e.code.as_deref(), Some("channel_not_found"), "{e:?}");
}
