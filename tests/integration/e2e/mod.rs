//! End to end encryption, client side (SPEC §7) against the real server: people chat through the
//! E2E layer (`dialtone::client::Chat`, each device with its own key store), and the database and
//! the server's log are searched for any plaintext. Also: a device without the key, a tampered
//! body, key distribution to new devices on `device.joined`, a junk device key, `tail` surviving a
//! dropped connection, and the `dialtone-cli` binary.
//!
//! Files: `plaintext` (the chat and what the server holds and logs), `keys` (a device without
//! the key, tampering, joining devices, a junk key), `tail` (reconnect and catch-up), `cli` (the
//! terminal client). This file holds the devices and helpers they share.

use dialtone::client::{
    Chat, ChatEvent, ChatResult, FollowOptions, KeyStore, ServerSpec, WsClient,
};
use dialtone::protocol::ws::Event;

use crate::support::*;

mod authority;
pub(crate) mod cli;
mod cli_identity;
mod cli_members;
mod keys;
mod plaintext;
mod refusals;
mod tail;
mod trusted_sharing;

pub(crate) const PASSPHRASE: &str = "a passphrase for tests";

/// Usernames long and odd enough that finding one inside random base64 would be no accident.
pub(crate) const ADMIN: &str = "numbat-admin";
pub(crate) const ANN: &str = "quokka-ann";
pub(crate) const BOB: &str = "wombat-bob";

pub(crate) fn spec(server: &TestServer) -> ServerSpec {
    ServerSpec {
        url: server.base_url.clone(),
        trust: server.trust(),
    }
}

/// A device: its E2E session and the folder holding its key store.
pub(crate) struct Device {
    pub(crate) chat: Chat,
    pub(crate) home: tempfile::TempDir,
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

pub(crate) async fn register_at(server: &TestServer, at: &ServerSpec, name: &str) -> Device {
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

pub(crate) async fn register(server: &TestServer, name: &str) -> Device {
    register_at(server, &spec(server), name).await
}

/// Log `name` in from a fresh key store: a new device.
pub(crate) async fn new_device(server: &TestServer, name: &str) -> Device {
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
pub(crate) async fn online(chat: &Chat) -> WsClient {
    let mut ws = chat.connect(false).await.unwrap();
    ws_ready(&mut ws).await;
    ws
}

/// The next event of one of `kinds` (others skipped).
pub(crate) async fn next_of(ws: &mut WsClient, kinds: &[&str]) -> Event {
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
pub(crate) struct Follower {
    pub(crate) events: tokio::sync::mpsc::UnboundedReceiver<ChatEvent>,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: tokio::task::JoinHandle<(Chat, ChatResult<()>)>,
}

pub(crate) fn follow(mut chat: Chat, opts: FollowOptions) -> Follower {
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
    pub(crate) async fn wait_for(
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

    pub(crate) async fn stop(mut self) -> Chat {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let (chat, r) = self.task.await.unwrap();
        r.unwrap();
        chat
    }
}
