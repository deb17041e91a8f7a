//! The hub: registry of sessions, presence, and the channel actors.
//!
//! Owns: every live session's handle and subscriptions, the user → socket count (presence), the set
//! of existing channels, and the addresses of the channel actors, which it starts lazily (on the
//! first subscriber) across `DIALTONE_CHANNEL_ARBITERS` threads.
//! Messages: [`Connect`], [`Disconnect`], [`Subscribe`], [`Unsubscribe`], [`CommittedBatch`] (from
//! the database actor), [`Notice`] (from REST handlers), [`Broadcast`], [`Presence`], [`Stats`],
//! [`Shutdown`].
//! Mailbox: capacity `DIALTONE_HUB_MAILBOX`. Sessions register with `send`, awaited before the
//! upgrade's 101 (one Connect per socket, bounded by `DIALTONE_WS_MAX_SESSIONS`; a full mailbox
//! delays upgrades), and leave with `do_send` (one Disconnect per socket); committed batches
//! arrive by `do_send` (bounded upstream by `DIALTONE_DB_MAX_PENDING`); REST notices are one per
//! request.
//! Events for everyone are serialized once and offered to each session with `try_send`; a full
//! session mailbox closes that socket with 1008.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::join_all;

use super::channel::{ChannelActor, Flush, Join, Leave, Publish, Retire};
use super::db::{CommittedBatch, CommittedMessage};
use super::{Frames, SessionHandle, SessionKey, ShardGroups, frame, message_frame};
use crate::metrics::{MailboxMeter, Metrics};
use crate::protocol::rest::Channel;
use crate::protocol::ws::{Event, close_code};
use crate::service::messages::StoredBroadcast;

struct SessionEntry {
    handle: SessionHandle,
    user_id: String,
    device_id: String,
    db_session_id: String,
    channels: HashSet<String>,
    /// Subscribed to every channel, including channels created later (the v1 default).
    auto: bool,
}

pub struct Hub {
    sessions: HashMap<SessionKey, SessionEntry>,
    /// Every session, grouped by delivery shard (events for everyone).
    everyone: ShardGroups,
    online: HashMap<String, u32>,
    channels: HashMap<String, Option<Addr<ChannelActor>>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    channel_mailbox: usize,
    metrics: Arc<Metrics>,
    mailbox: MailboxMeter,
    channel_meter: MailboxMeter,
    shutting_down: bool,
}

/// Cheap, cloneable access to the hub that counts mailbox depth.
#[derive(Clone)]
pub struct HubHandle {
    addr: Addr<Hub>,
    meter: MailboxMeter,
    arbiters: Vec<ArbiterHandle>,
}

impl HubHandle {
    /// Fire-and-forget (registration, notices): never dropped.
    pub fn tell<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Hub: Handler<M>,
    {
        self.meter.queued();
        self.addr.do_send(msg);
    }

    /// Ask and wait for the answer.
    pub async fn ask<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Hub: Handler<M>,
    {
        self.meter.queued();
        self.addr.send(msg).await
    }

    /// Stop the channel actors' threads (after shutdown).
    pub fn stop_arbiters(&self) {
        for a in &self.arbiters {
            a.stop();
        }
    }

    /// The hub's mailbox meter, for senders that hold a bare recipient.
    pub fn meter(&self) -> MailboxMeter {
        self.meter.clone()
    }

    pub fn recipient<M>(&self) -> Recipient<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Hub: Handler<M>,
    {
        self.addr.clone().recipient()
    }
}

impl Hub {
    /// Start the hub on the current arbiter with the channels that exist now.
    pub fn start(
        channel_ids: Vec<String>,
        channel_arbiters: usize,
        channel_mailbox: usize,
        hub_mailbox: usize,
        metrics: Arc<Metrics>,
    ) -> HubHandle {
        let arbiters: Vec<ArbiterHandle> = (0..channel_arbiters)
            .map(|_| Arbiter::new().handle())
            .collect();
        let handles = arbiters.clone();
        let meter = metrics.mailbox("hub");
        let hub = Hub {
            sessions: HashMap::new(),
            everyone: ShardGroups::default(),
            online: HashMap::new(),
            channels: channel_ids.into_iter().map(|id| (id, None)).collect(),
            arbiters,
            next_arbiter: 0,
            channel_mailbox,
            mailbox: meter.clone(),
            channel_meter: metrics.mailbox("channel"),
            metrics,
            shutting_down: false,
        };
        let addr = Hub::create(move |ctx| {
            ctx.set_mailbox_capacity(hub_mailbox);
            hub
        });
        HubHandle {
            addr,
            meter,
            arbiters: handles,
        }
    }

    /// The channel's actor, started on the next arbiter if it is not running.
    fn channel_actor(&mut self, channel_id: &str) -> Option<Addr<ChannelActor>> {
        let slot = self.channels.get_mut(channel_id)?;
        if let Some(addr) = slot.as_ref().filter(|a| a.connected()) {
            return Some(addr.clone());
        }
        let id = channel_id.to_owned();
        let metrics = self.metrics.clone();
        let cap = self.channel_mailbox;
        let build = move |ctx: &mut Context<ChannelActor>| {
            ctx.set_mailbox_capacity(cap);
            ChannelActor::new(id, metrics)
        };
        // No channel arbiters: channel actors share the hub's thread (no hop between them).
        let addr = if self.arbiters.is_empty() {
            ChannelActor::create(build)
        } else {
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter += 1;
            ChannelActor::start_in_arbiter(arbiter, build)
        };
        *slot = Some(addr.clone());
        Some(addr)
    }

    fn send_channel<M>(&self, addr: &Addr<ChannelActor>, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        ChannelActor: Handler<M>,
    {
        self.channel_meter.queued();
        addr.do_send(msg);
    }

    fn join(&mut self, key: SessionKey, channel_id: &str) -> bool {
        let Some(entry) = self.sessions.get(&key) else {
            return false;
        };
        let handle = entry.handle.clone();
        let Some(addr) = self.channel_actor(channel_id) else {
            return false;
        };
        self.send_channel(&addr, Join(handle));
        if let Some(entry) = self.sessions.get_mut(&key) {
            entry.channels.insert(channel_id.to_owned());
        }
        true
    }

    fn leave(&mut self, key: SessionKey, channel_id: &str) {
        if let Some(Some(addr)) = self.channels.get(channel_id) {
            self.send_channel(addr, Leave(key));
        }
    }

    /// Offer one event to every session (serialized once).
    /// One event to every session: serialized once, one message per delivery shard.
    fn tell_everyone(&mut self, event: &Event) {
        let frames: Frames = Arc::from(vec![frame(event)]);
        self.everyone.deliver(&frames);
    }

    fn close_where(&self, code: u16, reason: &'static str, pred: impl Fn(&SessionEntry) -> bool) {
        for entry in self.sessions.values().filter(|e| pred(e)) {
            entry.handle.close(code, reason);
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// A socket opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub handle: SessionHandle,
    pub user_id: String,
    pub device_id: String,
    pub db_session_id: String,
    /// Subscribe to every channel (now and later); `false` for `/ws?subscribe=none`.
    pub subscribe_all: bool,
}

/// A socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect(pub SessionKey);

/// Subscribe a session; `Err(())` for an unknown channel.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Subscribe {
    pub key: SessionKey,
    pub channel_id: String,
}

/// Unsubscribe a session; `Err(())` for an unknown channel.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Unsubscribe {
    pub key: SessionKey,
    pub channel_id: String,
}

/// REST changes that reach WebSocket clients (the notifier seam).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum Notice {
    ChannelCreated(Channel),
    ChannelUpdated(Channel),
    ChannelDeleted(String),
    ProfileUpdated {
        user_id: String,
    },
    DeviceJoined {
        user_id: String,
        device_id: String,
    },
    /// These login sessions were revoked (logout, device removed): close their sockets.
    SessionsRevoked {
        session_ids: Vec<String>,
    },
    /// The user was disabled: close every socket of theirs.
    UserDisabled {
        user_id: String,
    },
}

/// A persisted broadcast to deliver to every connected device, each with its own envelope.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast(pub StoredBroadcast);

/// Which of these users have an open socket.
#[derive(Message)]
#[rtype(result = "BTreeMap<String, bool>")]
pub struct Presence(pub Vec<String>);

/// Broker counters.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub users_online: usize,
    pub channels: usize,
    pub channel_actors: usize,
}

#[derive(Message)]
#[rtype(result = "HubStats")]
pub struct Stats;

/// First step of a graceful shutdown: every session stops accepting sends. Resolves once every
/// session has processed it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Quiesce;

/// Graceful shutdown: fan out everything already committed, then close every socket with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Connect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.mailbox.handled();
        if self.shutting_down {
            msg.handle
                .close(close_code::GOING_AWAY, "server shutting down");
            return;
        }
        let key = msg.handle.key;
        self.everyone.insert(&msg.handle);
        self.sessions.insert(
            key,
            SessionEntry {
                handle: msg.handle,
                user_id: msg.user_id.clone(),
                device_id: msg.device_id,
                db_session_id: msg.db_session_id,
                channels: HashSet::new(),
                auto: msg.subscribe_all,
            },
        );
        if msg.subscribe_all {
            let ids: Vec<String> = self.channels.keys().cloned().collect();
            for id in ids {
                self.join(key, &id);
            }
        }
        let count = self.online.entry(msg.user_id.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.metrics.users_online.inc();
            self.tell_everyone(&Event::presence(msg.user_id, true));
        }
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.mailbox.handled();
        let Some(entry) = self.sessions.remove(&msg.0) else {
            return;
        };
        self.everyone.remove(msg.0);
        for channel_id in &entry.channels {
            self.leave(msg.0, channel_id);
        }
        if let Some(count) = self.online.get_mut(&entry.user_id) {
            *count -= 1;
            if *count == 0 {
                self.online.remove(&entry.user_id);
                self.metrics.users_online.dec();
                self.tell_everyone(&Event::presence(entry.user_id, false));
            }
        }
    }
}

impl Handler<Subscribe> for Hub {
    type Result = Result<(), ()>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Result<(), ()> {
        self.mailbox.handled();
        if !self.channels.contains_key(&msg.channel_id) {
            return Err(());
        }
        let already = self
            .sessions
            .get(&msg.key)
            .is_some_and(|e| e.channels.contains(&msg.channel_id));
        if !already {
            self.join(msg.key, &msg.channel_id);
        }
        Ok(())
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = Result<(), ()>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> Result<(), ()> {
        self.mailbox.handled();
        if !self.channels.contains_key(&msg.channel_id) {
            return Err(());
        }
        let was = self
            .sessions
            .get_mut(&msg.key)
            .is_some_and(|e| e.channels.remove(&msg.channel_id));
        if was {
            self.leave(msg.key, &msg.channel_id);
        }
        Ok(())
    }
}

impl Handler<CommittedBatch> for Hub {
    type Result = ();

    fn handle(&mut self, msg: CommittedBatch, _: &mut Context<Self>) {
        self.mailbox.handled();
        // Group by channel, keeping commit order within each.
        let mut by_channel: Vec<(String, Vec<CommittedMessage>)> = Vec::new();
        for m in msg.0 {
            match by_channel
                .iter_mut()
                .find(|(id, _)| *id == m.row.channel_id)
            {
                Some((_, list)) => list.push(m),
                None => by_channel.push((m.row.channel_id.clone(), vec![m])),
            }
        }
        for (channel_id, messages) in by_channel {
            match self.channels.get(&channel_id) {
                Some(Some(addr)) => {
                    let addr = addr.clone();
                    self.send_channel(&addr, Publish(messages));
                }
                // No actor means no subscribers: only the senders need their echo.
                _ => {
                    for m in messages {
                        m.origin.send_frames(Arc::from(vec![message_frame(&m.row)]));
                    }
                }
            }
        }
    }
}

impl Handler<Notice> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Notice, _: &mut Context<Self>) {
        self.mailbox.handled();
        match msg {
            Notice::ChannelCreated(channel) => {
                self.channels.entry(channel.id.clone()).or_insert(None);
                let auto: Vec<SessionKey> = self
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.auto)
                    .map(|(k, _)| *k)
                    .collect();
                for key in auto {
                    self.join(key, &channel.id);
                }
                self.tell_everyone(&Event::channel_updated(channel.id, channel.name_enc));
            }
            Notice::ChannelUpdated(channel) => {
                self.tell_everyone(&Event::channel_updated(channel.id, channel.name_enc));
            }
            Notice::ChannelDeleted(channel_id) => {
                if let Some(Some(addr)) = self.channels.remove(&channel_id) {
                    self.send_channel(&addr, Retire);
                }
                for entry in self.sessions.values_mut() {
                    entry.channels.remove(&channel_id);
                }
                self.tell_everyone(&Event::channel_deleted(channel_id));
            }
            Notice::ProfileUpdated { user_id } => {
                self.tell_everyone(&Event::profile_updated(user_id));
            }
            Notice::DeviceJoined { user_id, device_id } => {
                self.tell_everyone(&Event::device_joined(user_id, device_id));
            }
            Notice::SessionsRevoked { session_ids } => {
                let ids: HashSet<&str> = session_ids.iter().map(String::as_str).collect();
                self.close_where(close_code::NORMAL, "session revoked", |e| {
                    ids.contains(e.db_session_id.as_str())
                });
            }
            Notice::UserDisabled { user_id } => {
                self.close_where(close_code::NORMAL, "account disabled", |e| {
                    e.user_id == user_id
                });
            }
        }
    }
}

impl Handler<Broadcast> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) {
        self.mailbox.handled();
        let b = msg.0;
        let base = Event {
            message_id: b.id.clone(),
            sender: b.sender_id.clone(),
            body: b.body.clone(),
            sent_at: b.sent_at.wire(),
            sender_name_enc: Some(b.sender_name_enc.clone()),
            sender_public_key: Some(b.sender_public_key.clone()),
            ..Event::default()
        };
        for entry in self.sessions.values() {
            // Each device sees only its own envelope, so this frame is per device.
            let event = Event {
                kind: crate::protocol::ws::event_type::MESSAGE_BROADCAST.to_owned(),
                key_envelope: Some(
                    b.key_envelopes
                        .get(&entry.device_id)
                        .cloned()
                        .unwrap_or_default(),
                ),
                ..base.clone()
            };
            entry.handle.send_frames(Arc::from(vec![frame(&event)]));
        }
    }
}

impl Handler<Presence> for Hub {
    type Result = MessageResult<Presence>;

    fn handle(&mut self, msg: Presence, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        MessageResult(
            msg.0
                .into_iter()
                .map(|id| {
                    let online = self.online.contains_key(&id);
                    (id, online)
                })
                .collect(),
        )
    }
}

impl Handler<Stats> for Hub {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        MessageResult(HubStats {
            connections: self.sessions.len(),
            users_online: self.online.len(),
            channels: self.channels.len(),
            channel_actors: self.channels.values().filter(|a| a.is_some()).count(),
        })
    }
}

impl Handler<Quiesce> for Hub {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Quiesce, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        self.shutting_down = true;
        let acks: Vec<_> = self
            .sessions
            .values()
            .map(|e| e.handle.outbound.send(super::Outbound::Quiesce))
            .collect();
        Box::pin(async move {
            join_all(acks).await;
        })
    }
}

impl Handler<Shutdown> for Hub {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        self.shutting_down = true;
        let flushes: Vec<_> = self
            .channels
            .values()
            .flatten()
            .map(|addr| addr.send(Flush))
            .collect();
        Box::pin(join_all(flushes).into_actor(self).map(|_, act, _| {
            // Every committed message is now in the session mailboxes, ahead of this close.
            act.close_where(close_code::GOING_AWAY, "server shutting down", |_| true);
        }))
    }
}

#[cfg(test)]
mod tests {
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
        let hub = Hub::start(vec![], 1, 64, 64, metrics.clone());
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
        let hub = Hub::start(vec!["c1".into()], 1, 64, 64, metrics.clone());
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
}
