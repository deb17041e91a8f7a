//! End to end encryption, client side (SPEC §7) against the real server: people chat through the
//! E2E layer (`dialtone::client::Chat`, each device with its own key store), and the database and
//! the server's log are searched for any plaintext. Also: a device without the key, a tampered
//! body, key distribution to new devices on `device.joined`, a junk device key, `tail` surviving a
//! dropped connection, and the `dialtone-cli` binary.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dialtone::client::rest::Page;
use dialtone::client::sealing;
use dialtone::client::{
    Chat, ChatError, ChatEvent, ChatResult, FollowOptions, KeyRef, KeyStore, ServerSpec, WsClient,
};
use dialtone::crypto::e2e;
use dialtone::protocol::ws::{Event, event_type};

use crate::support::*;

const PASSPHRASE: &str = "a passphrase for tests";

/// Usernames long and odd enough that finding one inside random base64 would be no accident.
const ADMIN: &str = "numbat-admin";
const ANN: &str = "quokka-ann";
const BOB: &str = "wombat-bob";

fn spec(server: &TestServer) -> ServerSpec {
    ServerSpec {
        url: server.base_url.clone(),
        trust: server.trust(),
    }
}

/// A device: its E2E session and the folder holding its key store.
struct Device {
    chat: Chat,
    home: tempfile::TempDir,
}

impl std::ops::Deref for Device {
    type Target = Chat;
    fn deref(&self) -> &Chat {
        &self.chat
    }
}

impl std::ops::DerefMut for Device {
    fn deref_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }
}

async fn register_at(server: &TestServer, at: &ServerSpec, name: &str) -> Device {
    let home = tempfile::tempdir().unwrap();
    let store = KeyStore::create(
        &KeyStore::path_for(home.path(), "default").unwrap(),
        PASSPHRASE,
    )
    .unwrap();
    let invite = server.invite().await;
    let mut chat = Chat::register(store, at, name, &password(name), &invite)
        .await
        .unwrap();
    assert_eq!(chat.take_warnings(), Vec::<String>::new());
    Device { chat, home }
}

async fn register(server: &TestServer, name: &str) -> Device {
    register_at(server, &spec(server), name).await
}

/// Log `name` in from a fresh key store: a new device.
async fn new_device(server: &TestServer, name: &str) -> Device {
    let home = tempfile::tempdir().unwrap();
    let store = KeyStore::create(
        &KeyStore::path_for(home.path(), "default").unwrap(),
        PASSPHRASE,
    )
    .unwrap();
    let (chat, outcome) = Chat::login(store, &spec(server), name, &password(name))
        .await
        .unwrap();
    assert!(outcome.new_device);
    Device { chat, home }
}

/// A live socket, set up on the server before it is used.
async fn online(chat: &Chat) -> WsClient {
    let mut ws = chat.connect(false).await.unwrap();
    ws_ready(&mut ws).await;
    ws
}

/// The next event of one of `kinds` (others skipped).
async fn next_of(ws: &mut WsClient, kinds: &[&str]) -> Event {
    loop {
        match ws.next_within(WAIT).await.unwrap() {
            Some(dialtone::client::Incoming::Event(e)) if kinds.contains(&e.kind.as_str()) => {
                return *e;
            }
            Some(dialtone::client::Incoming::Event(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// `Chat::follow` running in a task, its events forwarded to the test.
struct Follower {
    events: tokio::sync::mpsc::UnboundedReceiver<ChatEvent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<(Chat, ChatResult<()>)>,
}

fn follow(mut chat: Chat, opts: FollowOptions) -> Follower {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A plain tokio::spawn: the follow future must be Send.
    let task = tokio::spawn(async move {
        let r = chat
            .follow(
                opts,
                move |e| {
                    let _ = tx.send(e);
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await;
        (chat, r)
    });
    Follower {
        events,
        stop: Some(stop),
        task,
    }
}

impl Follower {
    /// The first event matching `wanted` (earlier ones are dropped).
    async fn wait_for(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&ChatEvent) -> bool,
    ) -> ChatEvent {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e)) if wanted(&e) => return e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("follow ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// The texts of the next `n` channel messages (decryption failures as `!<error>`).
    async fn messages(&mut self, n: usize) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        while out.len() < n {
            if let ChatEvent::Message {
                message, replayed, ..
            } = self
                .wait_for("a channel message", |e| {
                    matches!(e, ChatEvent::Message { .. })
                })
                .await
            {
                out.push((
                    message.map(|m| m.text).unwrap_or_else(|e| format!("!{e}")),
                    replayed,
                ));
            }
        }
        out
    }

    async fn stop(mut self) -> Chat {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let (chat, r) = self.task.await.unwrap();
        r.unwrap();
        chat
    }
}

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

#[tokio::test]
async fn e2e_without_the_key_only_ciphertext_and_tampering_is_detected() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let (channel, _) = admin.create_channel("vault-of-secrets").await.unwrap();
    let first = admin.send(&channel.id, "first secret line").await.unwrap();
    let second = admin.send(&channel.id, "second secret line").await.unwrap();

    // Carol arrives when nobody is online to share: she sees only ciphertext.
    let mut carol = register(&server, "echidna-carol").await;
    let err = carol
        .history(&channel.id, &Page::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::NoChannelKey(_)), "{err}");
    assert!(err.to_string().contains("no key for channel"), "{err}");
    let err = carol.send(&channel.id, "hello?").await.unwrap_err();
    assert!(matches!(err, ChatError::NoChannelKey(_)), "{err}");
    let listed = carol.channels().await.unwrap();
    assert_eq!(listed[0].display_name(), "(no key on this device)");
    let raw = carol
        .rest()
        .messages(&channel.id, &Page::default())
        .await
        .unwrap();
    assert_eq!(raw.messages.len(), 2);
    let guess = e2e::generate_key();
    for m in &raw.messages {
        assert!(!m.body.contains("secret") && !m.sender_name_enc.contains(ADMIN));
        assert!(
            STANDARD.decode(&m.body).unwrap().len() >= 12 + 16,
            "nonce, ciphertext and tag"
        );
        let err = sealing::open_message(&guess, m).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot decrypt message {}: authentication failed (wrong key or tampered)",
                m.id
            )
        );
    }

    // Flip one bit of a stored body: the holder of the key gets a clear error for that message
    // only, never garbage.
    let body = server
        .db
        .string(&format!(
            "SELECT body AS v FROM channel_messages WHERE id = '{}'",
            first.id
        ))
        .await
        .unwrap();
    let mut raw = STANDARD.decode(&body).unwrap();
    raw[20] ^= 0x01;
    server
        .db
        .execute(&format!(
            "UPDATE channel_messages SET body = '{}' WHERE id = '{}'",
            STANDARD.encode(raw),
            first.id
        ))
        .await;
    let h = admin.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages.len(), 2);
    let err = h.messages[0].as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot decrypt message {}: authentication failed (wrong key or tampered)",
            first.id
        )
    );
    let ok = h.messages[1].as_ref().unwrap();
    assert_eq!(
        (ok.id.as_str(), ok.text.as_str()),
        (second.id.as_str(), "second secret line")
    );
}

#[tokio::test]
async fn e2e_devices_that_join_get_keys_from_an_online_device() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let (channel, _) = admin.create_channel("campfire").await.unwrap();
    for text in ["one", "two", "three"] {
        admin.send(&channel.id, text).await.unwrap();
    }
    let admin_device = admin.device_id().to_owned();
    let admin_home = admin.home;
    let mut follower = follow(admin.chat, FollowOptions::default());
    follower
        .wait_for("connected", |e| matches!(e, ChatEvent::Connected { .. }))
        .await;

    // A second device of the same user.
    let mut laptop = new_device(&server, ADMIN).await;
    assert_ne!(laptop.device_id(), admin_device);
    let id = laptop.device_id().to_owned();
    let joined = follower
        .wait_for(
            "the laptop joining",
            |e| matches!(e, ChatEvent::DeviceJoined { device_id, .. } if *device_id == id),
        )
        .await;
    let ChatEvent::DeviceJoined {
        shared: Some(Ok(report)),
        ..
    } = joined
    else {
        panic!("keys were not shared: {joined:?}");
    };
    assert!(
        report
            .shared
            .contains(&(KeyRef::Channel(channel.id.clone()), 1)),
        "{report:?}"
    );
    assert!(
        report.shared.contains(&(KeyRef::Directory, 1)),
        "{report:?}"
    );
    assert!(
        report.skipped.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );

    let h = laptop.history(&channel.id, &Page::default()).await.unwrap();
    let texts: Vec<String> = h.messages.into_iter().map(|m| m.unwrap().text).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    laptop.refresh().await.unwrap();
    assert!(laptop.store().directory_key().is_some());
    // The key store on disk kept what the laptop learned.
    let path = KeyStore::path_for(laptop.home.path(), "default").unwrap();
    let reopened = KeyStore::open(&path, PASSPHRASE).unwrap();
    assert!(reopened.channel_key(&channel.id).is_some() && reopened.directory_key().is_some());

    // A new person gets the keys the same way.
    let mut dingo = register(&server, "dingo-dave").await;
    let id = dingo.device_id().to_owned();
    follower
        .wait_for("dingo joining", |e| {
            matches!(e, ChatEvent::DeviceJoined { device_id, shared: Some(Ok(_)), .. } if *device_id == id)
        })
        .await;
    let h = dingo.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages.len(), 3);
    assert!(h.messages.iter().all(Result::is_ok));

    // The follower decrypts live messages from the new devices.
    laptop
        .send(&channel.id, "typed on the laptop")
        .await
        .unwrap();
    dingo.send(&channel.id, "dingo says hi").await.unwrap();
    let texts: Vec<String> = follower
        .messages(2)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(texts, ["typed on the laptop", "dingo says hi"]);
    let admin = follower.stop().await;
    assert_eq!(admin.device_id(), admin_device);
    drop(admin_home);
}

#[tokio::test]
async fn e2e_a_junk_device_key_is_skipped_and_everyone_else_gets_the_key() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let mut bob = register(&server, BOB).await;
    let mallory = register(&server, "mallory-broken").await;
    // A key no device could have registered (the server validates new keys), as a damaged or
    // hostile database would serve it: legacy rows are handed out as stored.
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = 'this is not a key', public_key_hash = NULL WHERE id = '{}'",
            mallory.device_id()
        ))
        .await;

    let (channel, report) = admin.create_channel("junk-proof").await.unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].device_id, mallory.device_id());
    assert_eq!(
        report.skipped[0].user_id.as_deref(),
        Some(mallory.user_id())
    );
    assert!(report.skipped[0].reason.contains("base64"), "{report:?}");
    assert_eq!(report.envelopes(), 2, "admin and bob");
    let m = admin.send(&channel.id, "still works").await.unwrap();
    let h = bob.history(&channel.id, &Page::default()).await.unwrap();
    assert_eq!(h.messages[0].as_ref().unwrap().id, m.id);

    // An explicit share and a broadcast skip it the same way.
    let report = admin.share_keys(None, None).await.unwrap();
    assert_eq!(
        report.skipped.len(),
        1,
        "listed once across keys: {report:?}"
    );
    assert!(
        report.shared.contains(&(KeyRef::Directory, 1)),
        "{report:?}"
    );
    bob.refresh().await.unwrap();
    assert!(bob.store().directory_key().is_some());
    let (_, skipped) = admin.broadcast("all but one").await.unwrap();
    assert_eq!(skipped.len(), 1);

    // The same through the library with a hand-made list.
    let mut list = admin.rest().all_device_keys().await.unwrap();
    list.push(dialtone::protocol::rest::DeviceKey {
        user_id: None,
        device_id: "not-even-a-device".into(),
        public_key: STANDARD.encode([7u8; 5]),
    });
    let report = admin.share_with(Some(&channel.id), &list).await.unwrap();
    let skipped: HashSet<&str> = report
        .skipped
        .iter()
        .map(|s| s.device_id.as_str())
        .collect();
    assert_eq!(
        skipped,
        HashSet::from([mallory.device_id(), "not-even-a-device"])
    );
    assert_eq!(report.shared, [(KeyRef::Channel(channel.id.clone()), 2)]);
}

/// A TCP forwarder that can cut every connection and refuse new ones, to drop `tail` mid-stream.
struct Proxy {
    port: u16,
    down: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            port,
            down,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn e2e_tail_reconnects_and_catches_up_in_order_without_duplicates() {
    let server = TestServer::start().await;
    let port: u16 = server.base_url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = Proxy::start(port).await;
    let via_proxy = ServerSpec {
        url: format!("https://localhost:{}", proxy.port),
        trust: server.trust(),
    };
    let mut admin = register(&server, ADMIN).await;
    let ann = register_at(&server, &via_proxy, ANN).await;
    let (channel, _) = admin.create_channel("flaky-wifi").await.unwrap();
    admin.send(&channel.id, "backlog message").await.unwrap();

    let opts = FollowOptions {
        backlog: 5,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..FollowOptions::default()
    };
    let mut tail = follow(ann.chat, opts);
    assert_eq!(
        tail.messages(1).await,
        [("backlog message".to_owned(), true)]
    );
    tail.wait_for("connected", |e| {
        matches!(e, ChatEvent::Connected { reconnect: false })
    })
    .await;
    admin
        .send(&channel.id, "live before the drop")
        .await
        .unwrap();
    // Live, or held back by the first catch-up if it was still running: either way, once.
    assert_eq!(tail.messages(1).await[0].0, "live before the drop");

    // The connection drops; messages are sent meanwhile.
    proxy.cut();
    tail.wait_for("the drop", |e| matches!(e, ChatEvent::Disconnected { .. }))
        .await;
    admin.send(&channel.id, "while away 1").await.unwrap();
    admin.send(&channel.id, "while away 2").await.unwrap();
    proxy.restore();
    tail.wait_for("the reconnect", |e| {
        matches!(e, ChatEvent::Connected { reconnect: true })
    })
    .await;
    assert_eq!(
        tail.messages(2).await,
        [
            ("while away 1".to_owned(), true),
            ("while away 2".to_owned(), true)
        ]
    );
    admin.send(&channel.id, "after the return").await.unwrap();
    assert_eq!(
        tail.messages(1).await,
        [("after the return".to_owned(), false)]
    );

    // More than one sync page (500) missed: the rest comes from history, in order, once.
    proxy.cut();
    tail.wait_for("the second drop", |e| {
        matches!(e, ChatEvent::Disconnected { .. })
    })
    .await;
    let raw = server.user("walrus-raw").await;
    let echoes = send_messages(&server, &raw, &channel.id, 620).await;
    proxy.restore();
    let mut ids = Vec::new();
    while ids.len() < echoes.len() {
        if let ChatEvent::Message { message, .. } = tail
            .wait_for("replayed messages", |e| {
                matches!(e, ChatEvent::Message { .. })
            })
            .await
        {
            // Raw test bodies are not sealed: each is reported as undecryptable, not dropped.
            let err = message.unwrap_err();
            let id = match &err {
                ChatError::Decrypt { what, .. } => what.trim_start_matches("message ").to_owned(),
                other => panic!("unexpected error {other}"),
            };
            ids.push(id);
        }
    }
    let expected: Vec<String> = echoes.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(ids, expected, "every missed message, in commit order, once");
    admin.send(&channel.id, "caught up").await.unwrap();
    assert_eq!(tail.messages(1).await, [("caught up".to_owned(), false)]);
    tail.stop().await;
}

// ---- the terminal client ----

struct Cli {
    home: tempfile::TempDir,
    server: String,
    fingerprint: String,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn new(server: &TestServer) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: server.base_url.clone(),
            fingerprint: server.fingerprint.clone(),
        }
    }

    fn command(&self, profile: &str, user: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dialtone-cli"));
        cmd.args([
            "--server",
            &self.server,
            "--fingerprint",
            &self.fingerprint,
            "--profile",
            profile,
        ])
        .arg("--home")
        .arg(self.home.path())
        .args(args)
        .env("DIALTONE_PASSPHRASE", PASSPHRASE)
        .env("DIALTONE_PASSWORD", password(user))
        .env_remove("DIALTONE_CLI_HOME")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        cmd
    }

    async fn run(&self, profile: &str, user: &str, args: &[&str]) -> Output {
        let out = tokio::time::timeout(WAIT * 3, self.command(profile, user, args).output())
            .await
            .expect("dialtone-cli finished in time")
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and require success.
    async fn ok(&self, profile: &str, user: &str, args: &[&str]) -> String {
        let out = self.run(profile, user, args).await;
        assert_eq!(
            out.code, 0,
            "dialtone-cli {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Run and require a failure reported as one line on stderr.
    async fn fails(&self, profile: &str, user: &str, args: &[&str]) -> String {
        let out = self.run(profile, user, args).await;
        assert_ne!(
            out.code, 0,
            "dialtone-cli {args:?} succeeded: {}",
            out.stdout
        );
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "one line on stderr, got: {:?}",
            out.stderr
        );
        assert!(
            out.stderr.starts_with("dialtone-cli: error: "),
            "{}",
            out.stderr
        );
        out.stderr
    }
}

/// Lines of a child's pipe, read in the background.
fn lines_of(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::AsyncBufReadExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

async fn line_containing(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(l)) if l.contains(needle) => return l,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("output ended before a line with {needle:?}"),
            Err(_) => panic!("no line with {needle:?} in time"),
        }
    }
}

#[tokio::test]
async fn e2e_cli_register_create_send_history_tail_and_share() {
    let server = TestServer::start().await;
    let cli = Cli::new(&server);
    let invite = server.invite().await;

    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &[
                "register",
                "--username",
                "cli-admin-user",
                "--invite",
                &invite,
            ],
        )
        .await;
    assert!(out.contains("registered cli-admin-user"), "{out}");
    let store = cli.home.path().join("boss.keystore");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let on_disk = std::fs::read_to_string(&store).unwrap();
    assert!(!on_disk.contains("cli-admin-user") && !on_disk.contains(&server.base_url));

    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &["channels", "create", "lounge", "two"],
        )
        .await;
    assert!(out.starts_with("created #lounge two ("), "{out}");
    let out = cli.ok("boss", "cli-admin-user", &["channels"]).await;
    assert!(out.contains("#lounge two"), "{out}");
    let out = cli
        .ok(
            "boss",
            "cli-admin-user",
            &["send", "lounge two", "hello", "from", "the", "terminal"],
        )
        .await;
    assert!(
        out.contains("] cli-admin-user: hello from the terminal"),
        "{out}"
    );
    let out = cli
        .ok("boss", "cli-admin-user", &["history", "#lounge two"])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with('[')
            && lines[0].ends_with("] cli-admin-user: hello from the terminal"),
        "{out}"
    );

    // The admin tails; a second person registers with an invite from the CLI and gets the keys
    // from the running tail.
    let mut tail = cli
        .command("boss", "cli-admin-user", &["tail"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tail_out = lines_of(tail.stdout.take().unwrap());
    let mut tail_err = lines_of(tail.stderr.take().unwrap());
    line_containing(&mut tail_out, "hello from the terminal").await;
    let invite = cli
        .ok("boss", "cli-admin-user", &["invite", "--max-uses", "1"])
        .await;
    let invite = invite.trim();
    cli.ok(
        "guest",
        "cli-guest-user",
        &[
            "register",
            "--username",
            "cli-guest-user",
            "--invite",
            invite,
        ],
    )
    .await;
    line_containing(&mut tail_err, "shared 2 key(s)").await;
    let out = cli
        .ok("guest", "cli-guest-user", &["history", "lounge two"])
        .await;
    assert!(
        out.contains("cli-admin-user: hello from the terminal"),
        "{out}"
    );
    cli.ok(
        "guest",
        "cli-guest-user",
        &["send", "lounge two", "guest checking in"],
    )
    .await;
    let line = line_containing(&mut tail_out, "guest checking in").await;
    assert!(
        line.contains("#lounge two cli-guest-user: guest checking in"),
        "{line}"
    );
    let out = cli.ok("guest", "cli-guest-user", &["users"]).await;
    assert!(
        out.contains("cli-admin-user") && out.contains("cli-guest-user"),
        "{out}"
    );

    // A device with a junk public key is skipped and shown; the share still happens.
    let broken = server.user("cli-broken-user").await;
    server
        .db
        .execute(&format!(
            "UPDATE devices SET public_key = 'junk', public_key_hash = NULL WHERE id = '{}'",
            broken.device()
        ))
        .await;
    let out = cli.run("boss", "cli-admin-user", &["share"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("shared 2 key(s)"), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "warning: skipped device {} (user {})",
            broken.device(),
            broken.id()
        )),
        "{}",
        out.stderr
    );

    // Ctrl-C ends tail cleanly.
    let pid = tail.id().unwrap().to_string();
    let status = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("kill finished in time")
    .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "tail exits 0 on Ctrl-C: {status:?}");

    // Mistakes: one line on stderr, non-zero exit.
    cli.fails("boss", "cli-admin-user", &["frobnicate"]).await;
    let err = cli.fails("boss", "cli-admin-user", &["history"]).await;
    assert!(err.contains("<CHANNEL>"), "{err}");
    let err = cli
        .fails("boss", "cli-admin-user", &["send", "no-such-room", "hi"])
        .await;
    assert!(err.contains("no channel \"no-such-room\""), "{err}");
    let err = cli
        .fails(
            "guest",
            "cli-guest-user",
            &["channels", "create", "not-allowed"],
        )
        .await;
    assert!(err.contains("not allowed"), "{err}");
    let err = cli.fails("nobody", "nobody", &["channels"]).await;
    assert!(err.contains("no key store"), "{err}");
    let mut wrong = cli.command("boss", "cli-admin-user", &["channels"]);
    wrong.env("DIALTONE_PASSPHRASE", "not the passphrase");
    let out = tokio::time::timeout(WAIT * 3, wrong.output())
        .await
        .expect("dialtone-cli finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("wrong passphrase or corrupted key store"),
        "{stderr}"
    );

    // Logout ends the session; the profile then says how to get back in.
    cli.ok("guest", "cli-guest-user", &["logout"]).await;
    let err = cli.fails("guest", "cli-guest-user", &["channels"]).await;
    assert!(err.contains("login"), "{err}");
    let out = cli
        .ok(
            "guest",
            "cli-guest-user",
            &["login", "--username", "cli-guest-user"],
        )
        .await;
    assert!(out.contains("logged in as cli-guest-user"), "{out}");
    let out = cli
        .ok(
            "guest",
            "cli-guest-user",
            &["history", "lounge two", "--limit", "1"],
        )
        .await;
    assert!(out.contains("guest checking in"), "{out}");
}
