//! People chat through the E2E layer; the database dump and every server log line (refusals
//! included) are searched for plaintext, passwords and tokens.

use dialtone::client::rest::Page;
use dialtone::client::{KeyRef, WsClient};
use dialtone::crypto::e2e;
use dialtone::protocol::ws::event_type;

use crate::support::*;

use super::*;

/// Every `(table, column)` of the dump whose value contains `needle` (case-insensitive).
fn found_in<'a>(dump: &'a [(String, String, String)], needle: &str) -> Vec<(&'a str, &'a str)> {
    let needle = needle.to_lowercase();
    dump.iter()
        .filter(|(_, _, v)| v.to_lowercase().contains(&needle))
        .map(|(t, c, _)| (t.as_str(), c.as_str()))
        .collect()
}

/// Provoke the refusals whose inputs are secret: a wrong password, an unknown user, malformed
/// registrations (bad username, password or key, on a valid invite token that is then left
/// unused), and a malformed frame carrying text (refused: its `sender_name_enc` is empty). Returns every secret string sent.
async fn refusals(server: &TestServer, channel_id: &str, ws: &mut WsClient) -> Vec<String> {
    const GHOST: &str = "platypus-ghost";
    const WRONG: &str = "pw-not-quokkas-67890";
    const FRAME_TEXT: &str = "the bilby password is swordfish";
    let key = e2e::DeviceKeypair::generate().public_key_b64();
    let anon = server.rest();
    for (who, pw) in [(ANN, WRONG), (GHOST, WRONG)] {
        let login = serde_json::json!({"username": who, "password": pw, "public_key": key});
        let (status, body) = post_json(&anon, "/auth/login", &login).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
    }
    let invite = server.invite().await;
    for (who, pw, public_key) in [
        (format!("{GHOST} with spaces"), password(GHOST), key.clone()),
        (GHOST.to_owned(), "short1".to_owned(), key.clone()),
        (
            GHOST.to_owned(),
            password(GHOST),
            format!("{GHOST}-not-a-key"),
        ),
    ] {
        let register = serde_json::json!({
            "username": who, "password": pw, "public_key": public_key, "invite_token": invite,
        });
        let (status, body) = post_json(&anon, "/auth/register", &register).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let frame = serde_json::json!({
        "type": "channel.message.send", "channel_id": channel_id,
        "body": FRAME_TEXT, "sender_name_enc": "", "client_message_id": FRAME_TEXT,
    });
    ws.send_raw(tokio_tungstenite::tungstenite::Message::text(
        frame.to_string(),
    ))
    .await
    .unwrap();
    let e = next_of(ws, &[event_type::ERROR]).await;
    assert_eq!(e.code.as_deref(), Some("invalid_message"), "{e:?}");
    vec![
        GHOST.to_owned(),
        WRONG.to_owned(),
        password(GHOST),
        "short1".to_owned(),
        FRAME_TEXT.to_owned(),
        invite,
    ]
}

#[tokio::test]
async fn e2e_people_chat_and_the_server_never_sees_plaintext() {
    const CHANNEL: &str = "marsupial-planning";
    const RENAMED: &str = "marsupial-summit";
    const MSG_ANN: &str = "the quokka parade starts at noon";
    const MSG_BOB: &str = "wombats bring the eucalyptus snacks";
    const BROADCAST: &str = "fire drill in five minutes everybody";

    let logs = LogCapture::start();
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let mut ann = register(&server, ANN).await;
    let mut bob = register(&server, BOB).await;
    assert!(admin.store().profile().unwrap().is_admin);
    assert!(
        admin.store().directory_key().is_some(),
        "the first user creates the directory key"
    );
    assert!(ann.store().directory_key().is_none());

    // The channel key goes to every device when the channel is made.
    let (channel, report) = admin.create_channel(CHANNEL).await.unwrap();
    assert!(
        report.skipped.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.envelopes(), 3);
    // The directory key reaches the others by an explicit share; then they publish their names.
    let report = admin.share_keys(None, None).await.unwrap();
    assert!(
        report.shared.contains(&(KeyRef::Directory, 2)),
        "{report:?}"
    );
    assert!(
        report
            .shared
            .contains(&(KeyRef::Channel(channel.id.clone()), 2)),
        "{report:?}"
    );
    ann.refresh().await.unwrap();
    bob.refresh().await.unwrap();
    for d in [&ann, &bob] {
        assert!(d.store().directory_key().is_some());
        assert!(d.store().profile().unwrap().profile_published);
    }

    let mut ws_admin = online(&admin).await;
    let mut ws_ann = online(&ann).await;
    let mut ws_bob = online(&bob).await;

    // Ann writes; the echo is her acknowledgement; admin and bob decrypt it.
    let sent = ann
        .send_on(&mut ws_ann, &channel.id, MSG_ANN)
        .await
        .unwrap();
    assert_eq!(
        (sent.sender_name.as_str(), sent.text.as_str()),
        (ANN, MSG_ANN)
    );
    for (d, ws) in [(&mut admin, &mut ws_admin), (&mut bob, &mut ws_bob)] {
        let e = next_of(ws, &[event_type::CHANNEL_MESSAGE_NEW]).await;
        let m = d.open_message_event(&e).await.unwrap();
        assert_eq!(
            (m.sender_name.as_str(), m.text.as_str(), m.id.as_str()),
            (ANN, MSG_ANN, sent.id.as_str())
        );
    }
    let sent = bob
        .send_on(&mut ws_bob, &channel.id, MSG_BOB)
        .await
        .unwrap();
    for (d, ws) in [(&mut admin, &mut ws_admin), (&mut ann, &mut ws_ann)] {
        let e = next_of(ws, &[event_type::CHANNEL_MESSAGE_NEW]).await;
        let m = d.open_message_event(&e).await.unwrap();
        assert_eq!(
            (m.sender_name.as_str(), m.text.as_str(), m.id.as_str()),
            (BOB, MSG_BOB, sent.id.as_str())
        );
    }

    // A broadcast: a fresh key per message, wrapped for every device.
    let (echo, skipped) = admin.broadcast_on(&mut ws_admin, BROADCAST).await.unwrap();
    assert!(skipped.is_empty());
    assert_eq!(
        (echo.sender_name.as_str(), echo.text.as_str()),
        (ADMIN, BROADCAST)
    );
    for (d, ws) in [(&ann, &mut ws_ann), (&bob, &mut ws_bob)] {
        let e = next_of(ws, &[event_type::MESSAGE_BROADCAST]).await;
        let m = d.open_broadcast(&e).unwrap();
        assert_eq!(
            (m.sender_name.as_str(), m.text.as_str()),
            (ADMIN, BROADCAST)
        );
    }

    // A rename reaches everyone, decryptable.
    admin.rename_channel(&channel.id, RENAMED).await.unwrap();
    for (d, ws) in [
        (&mut admin, &mut ws_admin),
        (&mut ann, &mut ws_ann),
        (&mut bob, &mut ws_bob),
    ] {
        let e = next_of(ws, &[event_type::CHANNEL_UPDATED]).await;
        let name = d
            .decrypt_channel_name(
                e.channel_id.as_deref().unwrap(),
                e.channel_name_enc.as_deref().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(name, RENAMED);
    }

    // History, channel names and profile names decrypt for everyone.
    for d in [&mut admin, &mut ann, &mut bob] {
        let h = d.history(&channel.id, &Page::default()).await.unwrap();
        let got: Vec<(String, String)> = h
            .messages
            .into_iter()
            .map(|m| {
                let m = m.unwrap();
                (m.sender_name, m.text)
            })
            .collect();
        assert_eq!(
            got,
            [
                (ANN.to_owned(), MSG_ANN.to_owned()),
                (BOB.to_owned(), MSG_BOB.to_owned())
            ]
        );
        let channels = d.channels().await.unwrap();
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0].name.as_deref().unwrap(), RENAMED);
        assert_eq!(d.resolve_channel(RENAMED).await.unwrap().id, channel.id);
        let mut names: Vec<String> = d
            .profiles()
            .await
            .unwrap()
            .into_iter()
            .map(|(_, n)| n.unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [ADMIN, ANN, BOB]);
    }
    // Refusals log too: failed logins, validation errors, and the secrets they carry.
    let refused = refusals(&server, &channel.id, &mut ws_ann).await;
    for ws in [&mut ws_admin, &mut ws_ann, &mut ws_bob] {
        ws.close().await.unwrap();
    }

    // What the server holds and logged: no plaintext anywhere.
    let dump = server.db.dump().await;
    assert!(dump.len() > 20, "the dump covers the session");
    let tokens: Vec<String> = [&admin, &ann, &bob]
        .iter()
        .map(|d| d.rest().token().unwrap().to_owned())
        .collect();
    let log = logs.text();
    assert!(
        log.contains("channel key envelopes stored"),
        "the capture sees the server's debug log from every thread:\n{log}"
    );
    assert!(
        log.contains("TRACE") && log.contains("rustls"),
        "the capture sees every target at TRACE:\n{log}"
    );
    let secrets = [
        CHANNEL, RENAMED, MSG_ANN, MSG_BOB, BROADCAST, ADMIN, ANN, BOB,
    ];
    let passwords = [ADMIN, ANN, BOB].map(password);
    for s in secrets
        .iter()
        .copied()
        .chain(tokens.iter().map(String::as_str))
        .chain(passwords.iter().map(String::as_str))
        .chain(refused.iter().map(String::as_str))
        .chain([server.admin_token.as_str()])
    {
        let hits = found_in(&dump, s);
        assert!(hits.is_empty(), "{s:?} stored in plaintext in {hits:?}");
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains(&s.to_lowercase()))
            .collect();
        assert!(lines.is_empty(), "{s:?} appears in the log: {lines:#?}");
    }
    // Usernames exist on the server only as enc:v1 values and keyed hashes.
    let usernames = server.db.strings("SELECT username AS v FROM users").await;
    assert_eq!(usernames.len(), 3);
    for u in usernames {
        assert!(u.unwrap().starts_with("enc:v1:"));
    }
    let hashes = server
        .db
        .strings("SELECT username_hash AS v FROM users")
        .await;
    for h in hashes {
        let h = h.unwrap();
        assert!(
            h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()),
            "{h}"
        );
    }
}
