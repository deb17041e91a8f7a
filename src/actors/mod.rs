//! The actor system (SPEC §8).
//!
//! - [`db::DbActor`] owns the pool, the field cipher and the keyed-hash keys; every storage call is a
//!   message to it, and it group-commits channel messages;
//! - [`hub::Hub`] is the registry: sessions, presence, the set of channels, and lazily started
//!   [`channel::ChannelActor`]s that own their subscribers and fan out;
//! - [`admin::AdminActor`] mints invites and serves the admin operations;
//! - the per-socket session actor lives in [`crate::ws`].
//!
//! Flow of a channel message: session → `DbActor` (queued for group commit) → commit → `Hub`
//! (one message per batch) → `ChannelActor` (serialize once) → every subscribed session. Nothing is
//! echoed before its commit; per channel, every subscriber sees commit order because each hop is a
//! single FIFO mailbox fed by a single sender.

pub mod admin;
pub mod auth;
pub mod channel;
pub mod db;
pub mod hashing;
pub mod hub;
pub mod liveness;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::{Message, Recipient};
use bytestring::ByteString;

use crate::db::models::MessageRow;
use crate::metrics::MailboxMeter;
use crate::protocol::ws::Event;

/// Process-unique id of one WebSocket session (one socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

impl SessionKey {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionKey(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// JSON text frames serialized once and shared by every recipient.
pub type Frames = Arc<[ByteString]>;

/// Everything a session actor is sent. Fan-out frames do not come this way (see [`Deliver`]).
#[derive(Message)]
#[rtype(result = "()")]
pub enum Outbound {
    /// One event for this socket only (errors).
    Event(Box<Event>),
    /// Close the socket with this code and reason.
    Close { code: u16, reason: &'static str },
    /// The server is shutting down: refuse new sends (what is queued still commits).
    Quiesce,
    /// The socket's outbound queue passed its soft bound (`hard: false`) or its hard bound.
    Backlog { hard: bool },
}

/// Frames for some of the sessions living on one worker thread.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frames: Frames,
    pub keys: Arc<[SessionKey]>,
    /// Committed messages count against `DIALTONE_DB_MAX_PENDING` until written to the outboxes.
    pub ticket: Option<Arc<db::FanoutTicket>>,
}

/// The delivery shard of one worker thread. Fan-out sends one [`Deliver`] per shard, not one
/// message per session: the shard writes into its sessions' outboxes on their own thread, so a
/// message to 100 subscribers costs two cross-thread messages on a two-worker server, not 100.
#[derive(Clone)]
pub struct ShardHandle {
    pub id: usize,
    pub deliver: Recipient<Deliver>,
    pub meter: MailboxMeter,
}

impl ShardHandle {
    /// Queue frames for these sessions. `do_send`: committed messages are never dropped; the
    /// volume is bounded upstream (`DIALTONE_DB_MAX_PENDING`), and each socket's own backlog is
    /// bounded by its outbox (slow consumers are closed there).
    pub fn deliver(
        &self,
        frames: Frames,
        keys: Arc<[SessionKey]>,
        ticket: Option<Arc<db::FanoutTicket>>,
    ) {
        self.meter.queued();
        self.deliver.do_send(Deliver {
            frames,
            keys,
            ticket,
        });
    }
}

/// How channel actors and the hub reach one session.
#[derive(Clone)]
pub struct SessionHandle {
    pub key: SessionKey,
    pub outbound: Recipient<Outbound>,
    pub shard: ShardHandle,
}

impl SessionHandle {
    /// Frames for this session alone.
    pub fn send_frames(&self, frames: Frames) {
        self.shard.deliver(frames, Arc::from([self.key]), None);
    }

    /// Close the socket. `do_send` bypasses the mailbox bound: a close must always get through.
    /// why that is bounded: closes come from the hub, one per revocation notice that names this
    /// session (notices are one per committed REST change), and the session acts on the first.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.outbound.do_send(Outbound::Close { code, reason });
    }
}

/// Sessions grouped by their delivery shard, for one fan-out message per shard. Joining and
/// leaving are O(1) (a reconnect storm of thousands of sockets must not cost the hub or a channel
/// actor a scan per socket); the order of keys inside a group means nothing.
#[derive(Default)]
pub struct ShardGroups {
    groups: HashMap<usize, ShardGroup>,
    /// Each member's shard and its position in that group's `keys`.
    members: HashMap<SessionKey, (usize, usize)>,
}

struct ShardGroup {
    shard: ShardHandle,
    keys: Vec<SessionKey>,
    /// `keys` as shared by every fan-out until the membership changes.
    shared: Option<Arc<[SessionKey]>>,
}

impl ShardGroups {
    pub fn insert(&mut self, handle: &SessionHandle) {
        if self.members.contains_key(&handle.key) {
            return;
        }
        let group = self
            .groups
            .entry(handle.shard.id)
            .or_insert_with(|| ShardGroup {
                shard: handle.shard.clone(),
                keys: Vec::new(),
                shared: None,
            });
        self.members
            .insert(handle.key, (handle.shard.id, group.keys.len()));
        group.keys.push(handle.key);
        group.shared = None;
    }

    pub fn remove(&mut self, key: SessionKey) -> bool {
        let Some((id, at)) = self.members.remove(&key) else {
            return false;
        };
        if let Some(group) = self.groups.get_mut(&id) {
            group.keys.swap_remove(at);
            if let Some(moved) = group.keys.get(at)
                && let Some(entry) = self.members.get_mut(moved)
            {
                entry.1 = at;
            }
            group.shared = None;
            if group.keys.is_empty() {
                self.groups.remove(&id);
            }
        }
        true
    }

    pub fn contains(&self, key: &SessionKey) -> bool {
        self.members.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Send `frames` to every member, one message per shard; returns the number of sessions.
    /// `ticket` (committed messages) goes with every shard's share.
    pub fn deliver(&mut self, frames: &Frames, ticket: Option<&Arc<db::FanoutTicket>>) -> usize {
        for group in self.groups.values_mut() {
            let keys = group
                .shared
                .get_or_insert_with(|| Arc::from(group.keys.as_slice()))
                .clone();
            group.shard.deliver(frames.clone(), keys, ticket.cloned());
        }
        self.members.len()
    }
}

/// The `channel.message.new` frame of a committed message.
pub fn message_frame(row: &MessageRow) -> ByteString {
    frame(
        &Event::channel_message(
            row.id.clone(),
            row.channel_id.clone(),
            row.sender_id.clone(),
            row.sender_name_enc.clone(),
            row.body.clone(),
            row.sent_at.wire(),
            row.client_message_id.clone(),
        )
        .with_seq(row.seq),
    )
}

/// Serialize one event into a shareable text frame.
pub fn frame(event: &Event) -> ByteString {
    // Serializing a struct of strings and bools cannot fail.
    ByteString::from(serde_json::to_string(event).unwrap_or_default())
}

/// Probe actors for the actor unit tests: they record what a session would be sent.
#[cfg(test)]
pub(crate) mod probe {
    use std::sync::{Arc, Mutex};

    use actix::prelude::*;

    use super::{Deliver, Outbound, SessionHandle, SessionKey, ShardHandle};
    use crate::metrics::Metrics;
    use crate::protocol::ws::Event;

    /// What a probe received.
    #[derive(Default, Debug)]
    pub struct Log {
        pub events: Vec<Event>,
        pub closes: Vec<u16>,
    }

    /// One session that is also its own delivery shard.
    pub struct Probe {
        key: SessionKey,
        log: Arc<Mutex<Log>>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Outbound> for Probe {
        type Result = ();

        fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
            let mut log = self.log.lock().unwrap();
            match msg {
                Outbound::Event(e) => log.events.push(*e),
                Outbound::Close { code, .. } => log.closes.push(code),
                Outbound::Quiesce | Outbound::Backlog { .. } => {}
            }
        }
    }

    impl Handler<Deliver> for Probe {
        type Result = ();

        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            assert!(msg.keys.contains(&self.key), "delivered to the wrong shard");
            let mut log = self.log.lock().unwrap();
            for f in msg.frames.iter() {
                log.events.push(serde_json::from_str(f).unwrap());
            }
        }
    }

    /// Barrier: resolves once the probe has handled everything queued before it.
    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Sync;

    impl Handler<Sync> for Probe {
        type Result = ();
        fn handle(&mut self, _: Sync, _: &mut Context<Self>) {}
    }

    /// A running probe, its handle and its log.
    pub fn spawn(metrics: &Metrics) -> (Addr<Probe>, SessionHandle, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let key = SessionKey::next();
        let addr = Probe {
            key,
            log: log.clone(),
        }
        .start();
        let handle = SessionHandle {
            key,
            outbound: addr.clone().recipient(),
            shard: ShardHandle {
                id: key.0 as usize,
                deliver: addr.clone().recipient(),
                meter: metrics.mailbox("shard"),
            },
        };
        (addr, handle, log)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::metrics::Metrics;

    #[actix::test]
    async fn shard_groups_stay_exact_under_churn() {
        let metrics = Metrics::new();
        let (_a, first, _) = probe::spawn(&metrics);
        let (_b, second, _) = probe::spawn(&metrics);
        let handles: Vec<SessionHandle> = (0..200)
            .map(|i| SessionHandle {
                key: SessionKey::next(),
                ..if i % 3 == 0 {
                    first.clone()
                } else {
                    second.clone()
                }
            })
            .collect();
        let mut groups = ShardGroups::default();
        for h in &handles {
            groups.insert(h);
            groups.insert(h);
        }
        assert_eq!(groups.len(), 200);
        let mut left: BTreeSet<SessionKey> = handles.iter().map(|h| h.key).collect();
        // Leave in an order unrelated to joining (every 7th, wrapping), and twice each.
        for i in (0..200).map(|i| (i * 7) % 200).take(150) {
            let key = handles[i].key;
            assert!(groups.remove(key));
            assert!(!groups.remove(key));
            left.remove(&key);
        }
        assert_eq!(groups.len(), left.len());
        let grouped: BTreeSet<SessionKey> = groups
            .groups
            .values()
            .flat_map(|g| g.keys.iter().copied())
            .collect();
        assert_eq!(grouped, left);
        for h in &handles {
            assert_eq!(groups.contains(&h.key), left.contains(&h.key));
        }
        for (key, (shard, at)) in &groups.members {
            assert_eq!(groups.groups[shard].keys[*at], *key);
        }
    }
}
