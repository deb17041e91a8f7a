//! The hub's side of clustering: what this node tells the others, what it makes of what they
//! tell it, and the timers that repair what the bus lost.
//!
//! Owns ([`Node`]): the bus handle, the per-channel [`Sequencer`] (every channel message, local or
//! remote, reaches the channel actors through it, so every node delivers each channel in `seq`
//! order, once), the peers' presence, and the repair state.
//! Bus traffic, one subscription `<prefix>.>` per node:
//! - `<prefix>.ch.<channel>`: committed messages, published after their commit;
//! - `<prefix>.ev`: REST notices (channel, profile, device, revocation) and broadcasts;
//! - `<prefix>.presence`: joins, leaves, heartbeats, and "leaving" at shutdown.
//!
//! Inbound messages come from one pump task that waits for the hub's mailbox (`send`), so a
//! busy hub makes NATS drop rather than this node buffer without bound; a dropped message is a
//! gap, filled from PostgreSQL after `DIALTONE_CLUSTER_GAP_HOLD_MS`, and every
//! `DIALTONE_CLUSTER_REPAIR_MS` (and after each reconnect) every channel's last `seq` is compared
//! with what this node delivered. Revocations are re-checked against the database on a timer and
//! after each reconnect, because the notice that announced them may have been lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{Broadcast, Hub, Notice};
use crate::actors::db::{ChannelSeqs, CommittedMessage, DbHandle, LiveSessions, MessagesAfterSeq};
use crate::actors::{SessionKey, message_frame};
use crate::cluster::presence::{Beat, Changed, Peers};
use crate::cluster::sequencer::{Due, Sequencer};
use crate::cluster::{Bus, BusStatus, Inbound};
use crate::config::ClusterConfig;
use crate::crypto::bus_mac::BusMac;
use crate::db::models::MessageRow;
use crate::protocol::ws::{Event, close_code};
use crate::service::messages::StoredBroadcast;

/// Rows one gap fill reads at most.
const FILL_PAGE: i64 = 500;
/// User ids per heartbeat part (keeps a part far below NATS's default 1 MiB payload limit).
const BEAT_PART: usize = 2_000;
/// A peer silent for this many heartbeats is dropped from presence.
const PEER_MISSES: u32 = 3;

/// What the server hands the hub to cluster it.
pub struct ClusterLink {
    pub bus: Arc<dyn Bus>,
    pub config: ClusterConfig,
    /// Signs what this node publishes and checks what it receives.
    pub mac: BusMac,
    pub db: DbHandle,
    /// Every channel's last committed seq when the node started, read after `inbound` was
    /// subscribed (subscribe first, then catch up: nothing committed in between is missed).
    pub seqs: Vec<(String, i64)>,
    pub inbound: mpsc::Receiver<Inbound>,
}

/// One bus message: who sent it, and what.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    node: String,
    #[serde(flatten)]
    event: PeerEvent,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum PeerEvent {
    Messages {
        channel_id: String,
        rows: Vec<MessageRow>,
    },
    Notice {
        notice: Notice,
    },
    Broadcast {
        broadcast: StoredBroadcast,
    },
    Online {
        user_id: String,
    },
    Offline {
        user_id: String,
    },
    Heartbeat {
        round: u64,
        part: u32,
        parts: u32,
        users: Vec<String>,
    },
    /// Graceful shutdown: drop this node from presence now, not after the timeout.
    Leaving,
}

pub(super) struct Node {
    bus: Arc<dyn Bus>,
    config: ClusterConfig,
    mac: BusMac,
    db: DbHandle,
    pub(super) seq: Sequencer<CommittedMessage>,
    pub(super) peers: Peers,
    round: u64,
    connects: u64,
    status: watch::Receiver<BusStatus>,
    /// Taken by the pump task at start.
    inbound: Option<mpsc::Receiver<Inbound>>,
}

impl Node {
    pub(super) fn new(link: ClusterLink) -> Self {
        let timeout = link.config.heartbeat * PEER_MISSES;
        let status = link.bus.status();
        let connects = status.borrow().connects;
        Self {
            seq: Sequencer::new(link.seqs),
            peers: Peers::new(timeout),
            round: 0,
            connects,
            status,
            inbound: Some(link.inbound),
            bus: link.bus,
            config: link.config,
            mac: link.mac,
            db: link.db,
        }
    }

    fn subject(&self, tail: &str) -> String {
        format!("{}.{tail}", self.config.subject_prefix)
    }
}

/// Messages from the bus, handed over by the pump task: whatever arrived while the hub handled the
/// previous batch (at most [`PUMP_BATCH`]), so one hub round trip is not paid per message.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FromBus(pub Vec<Inbound>);

/// Largest batch the pump hands the hub at once.
const PUMP_BATCH: usize = 256;

/// The bus connection changed (sent by the status watcher).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct BusChanged(pub BusStatus);

impl Hub {
    /// Publish one event; a full or closed bus loses it for the peers (counted; repair heals it).
    fn publish(&self, tail: &str, event: PeerEvent) {
        let Some(node) = &self.cluster else { return };
        let delay = match event {
            PeerEvent::Messages { .. } => node.config.fault_publish_delay,
            _ => None,
        };
        let envelope = Envelope {
            node: node.config.node_id.clone(),
            event,
        };
        let body = match serde_json::to_vec(&envelope) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cluster event did not serialize");
                return;
            }
        };
        let bus = node.bus.clone();
        let subject = node.subject(tail);
        let payload = Bytes::from(node.mac.seal(&body));
        let metrics = self.metrics.clone();
        let send = move || match bus.publish(subject, payload) {
            Ok(()) => {
                metrics.cluster.bus_out.inc();
            }
            Err(e) => {
                metrics.cluster.bus_dropped.inc();
                tracing::debug!(error = %e, "cluster publish dropped");
            }
        };
        match delay {
            None => send(),
            Some(d) => {
                actix::spawn(async move {
                    actix::clock::sleep(d).await;
                    send();
                });
            }
        }
    }

    pub(super) fn publish_notice(&self, notice: &Notice) {
        self.publish(
            "ev",
            PeerEvent::Notice {
                notice: notice.clone(),
            },
        );
    }

    pub(super) fn publish_broadcast(&self, b: &StoredBroadcast) {
        self.publish(
            "ev",
            PeerEvent::Broadcast {
                broadcast: b.clone(),
            },
        );
    }

    /// A user's first socket on this node opened (`true`) or its last closed.
    pub(super) fn local_presence(&mut self, user_id: String, online: bool) {
        let elsewhere = self.cluster.as_ref().is_some_and(|n| n.peers.has(&user_id));
        if self.cluster.is_some() {
            let event = if online {
                PeerEvent::Online {
                    user_id: user_id.clone(),
                }
            } else {
                PeerEvent::Offline {
                    user_id: user_id.clone(),
                }
            };
            self.publish("presence", event);
        }
        if !elsewhere {
            self.tell_everyone(&Event::presence(user_id, online));
        }
    }

    pub(super) fn online_anywhere(&self, user_id: &str) -> bool {
        self.online.contains_key(user_id)
            || self.cluster.as_ref().is_some_and(|n| n.peers.has(user_id))
    }

    /// Committed on this node: publish per channel, then deliver in seq order.
    pub(super) fn cluster_committed(&mut self, by_channel: Vec<(String, Vec<CommittedMessage>)>) {
        let skip_publish = self
            .cluster
            .as_ref()
            .is_some_and(|n| n.config.fault_skip_message_publish);
        for (channel_id, messages) in by_channel {
            if !skip_publish {
                let rows = messages.iter().map(|m| m.row.clone()).collect();
                self.publish(
                    &format!("ch.{channel_id}"),
                    PeerEvent::Messages {
                        channel_id: channel_id.clone(),
                        rows,
                    },
                );
            }
            self.sequence(&channel_id, messages);
        }
    }

    /// Offer messages of one channel to the sequencer and deliver what is ready.
    fn sequence(&mut self, channel_id: &str, messages: Vec<CommittedMessage>) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut duplicates = Vec::new();
        for m in messages {
            let seq = m.row.seq;
            // The origin is needed if the message turns out to be a duplicate.
            let origin = m.origin.clone();
            let row = m.row.clone();
            let offered = node.seq.offer(channel_id, seq, m, now);
            if offered.duplicate {
                self.metrics.cluster.duplicates_dropped.inc();
                duplicates.push((row, origin));
            }
            ready.extend(offered.ready);
        }
        self.metrics
            .cluster
            .held
            .set(i64::try_from(node.seq.held()).unwrap_or(i64::MAX));
        // A local message a gap fill already delivered (to subscribers) still owes its sender
        // the echo when the sender is not subscribed.
        for (row, origin) in duplicates {
            if let Some(origin) = origin {
                let subscribed = self
                    .sessions
                    .get(&origin.key)
                    .is_some_and(|e| e.channels.contains(channel_id));
                if !subscribed {
                    origin.send_frames(Arc::from(vec![message_frame(&row)]));
                }
            }
        }
        self.deliver_ready(channel_id, ready);
    }

    fn deliver_ready(&mut self, channel_id: &str, ready: Vec<CommittedMessage>) {
        if ready.is_empty() {
            return;
        }
        match self.channels.get(channel_id) {
            Some(Some(addr)) => {
                let addr = addr.clone();
                self.send_channel(&addr, crate::actors::channel::Publish(ready));
            }
            _ => {
                for m in ready {
                    if let Some(origin) = &m.origin {
                        origin.send_frames(Arc::from(vec![message_frame(&m.row)]));
                    }
                }
            }
        }
    }

    /// Start the pump, the status watcher and the timers.
    pub(super) fn start_cluster(&mut self, ctx: &mut Context<Self>) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let hub = ctx.address();
        if let Some(mut rx) = node.inbound.take() {
            actix::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while batch.len() < PUMP_BATCH {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    if hub.send(FromBus(batch)).await.is_err() {
                        return;
                    }
                }
                tracing::warn!("cluster bus subscription ended");
            });
        }
        let mut status = node.status.clone();
        let hub = ctx.address();
        actix::spawn(async move {
            while status.changed().await.is_ok() {
                let now = *status.borrow();
                // A full hub mailbox loses this one change: the timers catch up.
                if hub.try_send(BusChanged(now)).is_err() {
                    tracing::debug!("cluster status change not delivered (hub busy)");
                }
            }
        });
        self.metrics
            .cluster
            .connected
            .set(i64::from(node.status.borrow().connected));
        let cfg = node.config.clone();
        let tick = (cfg.gap_hold / 2).max(Duration::from_millis(5));
        ctx.run_interval(tick, |hub, ctx| hub.fill_due(ctx));
        ctx.run_interval(cfg.repair_every, |hub, ctx| hub.repair(ctx));
        ctx.run_interval(cfg.heartbeat, |hub, _| hub.heartbeat());
        ctx.run_interval(cfg.session_check_every, |hub, ctx| hub.check_sessions(ctx));
        self.heartbeat();
    }

    /// Gaps that outlived the hold: read them from the database (or skip, without subscribers).
    fn fill_due(&mut self, ctx: &mut Context<Self>) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let due = node.seq.due(Instant::now(), node.config.gap_hold);
        for Due {
            channel_id,
            after_seq,
        } in due
        {
            let subscribed = matches!(self.channels.get(&channel_id), Some(Some(_)));
            if !subscribed {
                let released = self
                    .cluster
                    .as_mut()
                    .map(|n| n.seq.skip(&channel_id))
                    .unwrap_or_default();
                self.deliver_ready(&channel_id, released);
                continue;
            }
            let Some(db) = self.cluster.as_ref().map(|n| n.db.clone()) else {
                return;
            };
            self.metrics.cluster.gap_fills.inc();
            let id = channel_id.clone();
            let read = async move {
                db.call(MessagesAfterSeq {
                    channel_id: id,
                    after_seq,
                    limit: FILL_PAGE,
                })
                .await
            };
            ctx.spawn(read.into_actor(self).map(move |result, hub, _| {
                let Some(node) = hub.cluster.as_mut() else { return };
                let now = Instant::now();
                match result {
                    Ok(rows) => {
                        let exhausted = (rows.len() as i64) < FILL_PAGE;
                        let items = rows
                            .into_iter()
                            .map(|row| {
                                (
                                    row.seq,
                                    CommittedMessage { row, origin: None },
                                )
                            })
                            .collect();
                        let ready = node.seq.filled(&channel_id, items, exhausted, now);
                        hub.metrics
                            .cluster
                            .gap_filled_messages
                            .inc_by(ready.len() as u64);
                        hub.deliver_ready(&channel_id, ready);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster gap fill failed; retrying after the hold");
                        node.seq.fill_failed(&channel_id, now);
                    }
                }
            }));
        }
    }

    /// Compare every channel's last seq in the database with what this node delivered; apply
    /// channel creations and deletions whose notices were lost.
    pub(super) fn repair(&mut self, ctx: &mut Context<Self>) {
        let Some(node) = &self.cluster else { return };
        self.metrics.cluster.repairs.inc();
        let db = node.db.clone();
        let known: HashSet<String> = self.channels.keys().cloned().collect();
        let read = async move { db.call(ChannelSeqs {}).await };
        ctx.spawn(read.into_actor(self).map(move |result, hub, _| {
            let seqs = match result {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster repair could not read the channels");
                    return;
                }
            };
            let now = Instant::now();
            let in_db: HashSet<&str> = seqs.iter().map(|(id, _)| id.as_str()).collect();
            let vanished: Vec<String> = known
                .iter()
                .filter(|id| !in_db.contains(id.as_str()) && hub.channels.contains_key(*id))
                .cloned()
                .collect();
            for id in vanished {
                hub.apply_notice(Notice::ChannelDeleted(id));
            }
            for (id, last) in &seqs {
                if !hub.channels.contains_key(id) {
                    hub.channel_appeared(id);
                }
                if let Some(node) = hub.cluster.as_mut() {
                    node.seq.note_head(id, *last, now);
                }
            }
        }));
    }

    /// A channel this node never heard about (its notice was lost): track it and subscribe the
    /// sessions that follow every channel.
    fn channel_appeared(&mut self, channel_id: &str) {
        self.channels.entry(channel_id.to_owned()).or_insert(None);
        let auto: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.auto)
            .map(|(k, _)| *k)
            .collect();
        for key in auto {
            self.join(key, channel_id);
        }
    }

    /// Announce this node's online users (in parts) and drop peers that went silent.
    fn heartbeat(&mut self) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        node.round += 1;
        let round = node.round;
        let (dead, changed) = node.peers.expire(Instant::now());
        let peers = node.peers.count();
        if !dead.is_empty() {
            tracing::warn!(nodes = ?dead, "cluster peers went silent; dropped from presence");
        }
        self.metrics
            .cluster
            .peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
        self.announce(changed);
        let users: Vec<String> = self.online.keys().cloned().collect();
        let chunks: Vec<Vec<String>> = if users.is_empty() {
            vec![Vec::new()]
        } else {
            users.chunks(BEAT_PART).map(<[String]>::to_vec).collect()
        };
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        for (part, users) in chunks.into_iter().enumerate() {
            self.publish(
                "presence",
                PeerEvent::Heartbeat {
                    round,
                    part: u32::try_from(part).unwrap_or(u32::MAX),
                    parts,
                    users,
                },
            );
        }
    }

    /// Tell local sockets about users whose cluster-wide presence changed.
    fn announce(&mut self, changed: Changed) {
        for user_id in changed.online {
            if !self.online.contains_key(&user_id) {
                self.tell_everyone(&Event::presence(user_id, true));
            }
        }
        for user_id in changed.offline {
            if !self.online.contains_key(&user_id) {
                self.tell_everyone(&Event::presence(user_id, false));
            }
        }
    }

    /// Close sockets whose login session was revoked or whose user was disabled meanwhile.
    pub(super) fn check_sessions(&mut self, ctx: &mut Context<Self>) {
        let Some(node) = &self.cluster else { return };
        if self.sessions.is_empty() {
            return;
        }
        self.metrics.cluster.session_checks.inc();
        let db = node.db.clone();
        let asked: HashSet<String> = self
            .sessions
            .values()
            .map(|e| e.db_session_id.clone())
            .collect();
        let ids: Vec<String> = asked.iter().cloned().collect();
        let read = async move { db.call(LiveSessions { session_ids: ids }).await };
        ctx.spawn(read.into_actor(self).map(move |result, hub, _| {
            let live = match result {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster session re-check failed");
                    return;
                }
            };
            let mut closed = 0u64;
            for entry in hub.sessions.values() {
                if asked.contains(&entry.db_session_id) && !live.contains(&entry.db_session_id) {
                    entry.handle.close(close_code::NORMAL, "session revoked");
                    closed += 1;
                }
            }
            hub.metrics.cluster.sessions_closed_by_check.inc_by(closed);
        }));
    }

    /// Graceful shutdown: peers drop this node's users now.
    pub(super) fn publish_leaving(&self) {
        self.publish("presence", PeerEvent::Leaving);
    }
}

impl Handler<FromBus> for Hub {
    type Result = ();

    fn handle(&mut self, msg: FromBus, _: &mut Context<Self>) {
        for inbound in msg.0 {
            self.from_bus(inbound);
        }
        if let Some(node) = &self.cluster {
            self.metrics
                .cluster
                .peers
                .set(i64::try_from(node.peers.count()).unwrap_or(i64::MAX));
        }
    }
}

impl Hub {
    fn from_bus(&mut self, inbound: Inbound) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let Some(body) = node.mac.open(&inbound.payload) else {
            self.metrics.cluster.bus_undecodable.inc();
            tracing::warn!(
                subject = %inbound.subject,
                "cluster message with a bad signature ignored (another cluster on this prefix, or a forgery)"
            );
            return;
        };
        let envelope: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.cluster.bus_undecodable.inc();
                tracing::warn!(error = %e, "undecodable cluster message ignored");
                return;
            }
        };
        if envelope.node == node.config.node_id {
            return;
        }
        self.metrics.cluster.bus_in.inc();
        let now = Instant::now();
        node.peers.seen(&envelope.node, now);
        let from = envelope.node;
        match envelope.event {
            PeerEvent::Messages { channel_id, rows } => {
                let messages = rows
                    .into_iter()
                    .map(|row| CommittedMessage { row, origin: None })
                    .collect();
                self.sequence(&channel_id, messages);
            }
            PeerEvent::Notice { notice } => self.apply_notice(notice),
            PeerEvent::Broadcast { broadcast } => self.apply_broadcast(Broadcast(broadcast)),
            PeerEvent::Online { user_id } => {
                let changed = node.peers.online(&from, &user_id, now);
                self.announce(changed);
            }
            PeerEvent::Offline { user_id } => {
                let changed = node.peers.offline(&from, &user_id, now);
                self.announce(changed);
            }
            PeerEvent::Heartbeat {
                round,
                part,
                parts,
                users,
            } => {
                let changed = node.peers.heartbeat(
                    &from,
                    Beat {
                        round,
                        part,
                        parts,
                        users,
                    },
                    now,
                );
                self.announce(changed);
            }
            PeerEvent::Leaving => {
                let changed = node.peers.leave(&from);
                self.announce(changed);
            }
        }
    }
}

impl Handler<BusChanged> for Hub {
    type Result = ();

    fn handle(&mut self, msg: BusChanged, ctx: &mut Context<Self>) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let status = msg.0;
        self.metrics
            .cluster
            .connected
            .set(i64::from(status.connected));
        if status.connects > node.connects {
            let reconnect = node.connects > 0;
            node.connects = status.connects;
            if reconnect {
                // What was published while the connection was down is lost both ways.
                self.metrics.cluster.reconnects.inc();
                tracing::info!("cluster bus reconnected: repairing");
            }
            self.repair(ctx);
            self.check_sessions(ctx);
            self.heartbeat();
        }
    }
}
