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
//!
//! Layout: this file holds the wire types, the node's state, publishing and local sequencing;
//! `inbound` what the node makes of bus messages, connection changes and presence heartbeats;
//! `repair` the gap fills, the periodic repair and the session re-check.

mod chunks;
mod inbound;
mod repair;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use self::chunks::payload_chunks;
use super::{Hub, Notice};
use crate::actors::db::{CommittedMessage, DbHandle};
use crate::actors::message_frame;
use crate::cluster::presence::Peers;
use crate::cluster::sequencer::Sequencer;
use crate::cluster::{Bus, BusStatus, Inbound};
use crate::config::ClusterConfig;
use crate::crypto::bus_mac::BusMac;
use crate::db::models::MessageRow;
use crate::protocol::ws::Event;
use crate::service::messages::StoredBroadcast;

/// Rows one gap fill reads at most.
const FILL_PAGE: i64 = 500;
/// User ids per heartbeat part (keeps a part far below NATS's default 1 MiB payload limit).
const BEAT_PART: usize = 2_000;
/// A peer silent for this many heartbeats is dropped from presence.
const PEER_MISSES: u32 = 3;
/// Largest bus payload this node sends: half of NATS's default `max_payload` (1 MiB). A group
/// commit's messages of one channel are split to stay under it; any other event above it is
/// dropped and counted.
const MAX_BUS_PAYLOAD: usize = 512 * 1024;

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

/// A signed message older (or further ahead) than this is refused: a replay, or a clock that is
/// badly off.
const REPLAY_WINDOW_MS: i64 = 60_000;

/// One bus message: who sent it, and what. `boot` (random per start) and `n` (counting from 1
/// per boot) let receivers refuse a replayed message; `at` (Unix milliseconds) bounds how old one
/// may be.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    node: String,
    boot: String,
    n: u64,
    at: i64,
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
    mac: Arc<BusMac>,
    db: DbHandle,
    /// This start's id, and the count of messages published in it.
    boot: String,
    sent: Arc<std::sync::atomic::AtomicU64>,
    /// Per peer: the boot and the last `n` accepted (replay protection).
    accepted: std::collections::HashMap<String, (String, u64)>,
    /// Bus messages refused (bad tag, replayed, stale), for log sampling.
    refused: u64,
    pub(super) seq: Sequencer<CommittedMessage>,
    pub(super) peers: Peers,
    /// Channel deletions applied so far: a repair read that a deletion overtook must not bring
    /// the channel back.
    pub(super) deletions: u64,
    /// Membership notices applied so far (private channels created, members added or removed):
    /// a repair whose membership read one of them overtook must not apply that older snapshot.
    pub(super) membership_changes: u64,
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
            deletions: 0,
            membership_changes: 0,
            round: 0,
            connects,
            status,
            inbound: Some(link.inbound),
            bus: link.bus,
            config: link.config,
            mac: Arc::new(link.mac),
            boot: uuid::Uuid::new_v4().simple().to_string(),
            sent: Arc::default(),
            accepted: std::collections::HashMap::new(),
            refused: 0,
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

fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Hub {
    /// Publish one event; a full or closed bus loses it for the peers (counted; repair heals it).
    fn publish(&self, tail: &str, event: PeerEvent) {
        let Some(node) = &self.cluster else { return };
        let delay = match event {
            PeerEvent::Messages { .. } => node.config.fault_publish_delay,
            _ => None,
        };
        let node_id = node.config.node_id.clone();
        let boot = node.boot.clone();
        let sent = node.sent.clone();
        let mac = node.mac.clone();
        let bus = node.bus.clone();
        let subject = node.subject(tail);
        let metrics = self.metrics.clone();
        // Numbered and stamped when handed to the bus, so `n` follows publish order even for a
        // delayed publish.
        let send = move || {
            let envelope = Envelope {
                node: node_id,
                boot,
                n: sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                at: unix_ms(),
                event,
            };
            let body = match serde_json::to_vec(&envelope) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(error = %e, "cluster event did not serialize");
                    return;
                }
            };
            if body.len() > MAX_BUS_PAYLOAD {
                metrics.cluster.bus_dropped.inc();
                tracing::warn!(
                    bytes = body.len(),
                    "cluster event too large for the bus; not published"
                );
                return;
            }
            let payload = Bytes::from(mac.seal(subject.as_bytes(), &body));
            match bus.publish(subject, payload) {
                Ok(()) => {
                    metrics.cluster.bus_out.inc();
                }
                Err(e) => {
                    metrics.cluster.bus_dropped.inc();
                    tracing::debug!(error = %e, "cluster publish dropped");
                }
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
        if self
            .cluster
            .as_ref()
            .is_some_and(|n| n.config.fault_skip_notice_publish)
        {
            return;
        }
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
        // Shutting down: the peers already dropped this node's users on `leaving`.
        if self.cluster.is_some() && !self.shutting_down {
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
                for rows in payload_chunks(&messages) {
                    self.publish(
                        &format!("ch.{channel_id}"),
                        PeerEvent::Messages {
                            channel_id: channel_id.clone(),
                            rows,
                        },
                    );
                }
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
            let offered = node.seq.offer(channel_id, seq, m, now);
            if let Some(dup) = offered.duplicate {
                self.metrics.cluster.duplicates_dropped.inc();
                duplicates.push(dup);
            }
            // Let go from a full hold: the gap fill delivers it to the subscribers later, so
            // only an unsubscribed sender needs its echo now, like a duplicate's.
            if let Some(evicted) = offered.evicted {
                self.metrics.cluster.held_evicted.inc();
                duplicates.push(evicted);
            }
            ready.extend(offered.ready);
        }
        // A local message a gap fill already delivered (or will deliver) to subscribers still
        // owes its sender the echo when the sender is not subscribed.
        for dup in duplicates {
            if let Some(origin) = &dup.origin {
                let subscribed = self
                    .sessions
                    .get(&origin.key)
                    .is_some_and(|e| e.channels.contains(channel_id));
                if !subscribed {
                    origin.send_frames(Arc::from(vec![message_frame(&dup.row)]));
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
                self.send_channel(&addr, crate::actors::channel::Publish(ready, None));
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

    /// Graceful shutdown: peers drop this node's users now.
    pub(super) fn publish_leaving(&self) {
        self.publish("presence", PeerEvent::Leaving);
    }
}
