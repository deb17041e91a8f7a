//! What this node makes of the bus: messages from peers (checked, decoded, sequenced or applied),
//! connection changes (a reconnect triggers a repair), and presence heartbeats both ways.

use std::time::Instant;

use actix::prelude::*;

use super::super::{Broadcast, Hub};
use super::{BEAT_PART, BusChanged, Envelope, FromBus, PeerEvent, REPLAY_WINDOW_MS, unix_ms};
use crate::actors::db::CommittedMessage;
use crate::cluster::Inbound;
use crate::cluster::presence::{Beat, Changed};
use crate::protocol::ws::Event;

impl Hub {
    /// Count a refused bus message; log the 1st, 2nd, 4th, 8th… (a flood must not flood the log).
    fn refuse(&mut self, why: &'static str) {
        self.metrics.cluster.bus_undecodable.inc();
        if let Some(node) = self.cluster.as_mut() {
            node.refused += 1;
            if node.refused.is_power_of_two() {
                tracing::warn!(why, refused = node.refused, "cluster bus message ignored");
            }
        }
    }

    /// Announce this node's online users (in parts) and drop peers that went silent.
    pub(super) fn heartbeat(&mut self) {
        // After `leaving` (shutdown) a heartbeat would bring this node back into the peers'
        // presence with the users it is about to close.
        if self.shutting_down {
            return;
        }
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        node.round += 1;
        let round = node.round;
        let (dead, changed) = node.peers.expire(Instant::now());
        // Replay state only for live peers (a dead node's next start has a new boot anyway).
        let peers = &node.peers;
        node.accepted.retain(|n, _| peers.knows(n));
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
}

impl Handler<FromBus> for Hub {
    type Result = ();

    fn handle(&mut self, msg: FromBus, _: &mut Context<Self>) {
        for inbound in msg.0 {
            self.on_bus_message(inbound);
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
    fn on_bus_message(&mut self, inbound: Inbound) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let Some(body) = node.mac.open(inbound.subject.as_bytes(), &inbound.payload) else {
            self.refuse("bad signature (another cluster on this prefix, or a forgery)");
            return;
        };
        let envelope: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(_) => {
                self.refuse("undecodable");
                return;
            }
        };
        if envelope.node == node.config.node_id {
            return;
        }
        if (unix_ms() - envelope.at).abs() > REPLAY_WINDOW_MS {
            self.refuse("stale or from a clock more than 60 s off");
            return;
        }
        let replayed = node
            .accepted
            .get(&envelope.node)
            .is_some_and(|(boot, n)| *boot == envelope.boot && envelope.n <= *n);
        if replayed {
            self.refuse("replayed");
            return;
        }
        node.accepted
            .insert(envelope.node.clone(), (envelope.boot.clone(), envelope.n));
        self.metrics.cluster.bus_in.inc();
        let now = Instant::now();
        node.peers.seen(&envelope.node, now);
        let from = envelope.node;
        match envelope.event {
            // A channel this node does not know (deleted, or its creation notice not here yet):
            // dropped, so no state is kept for it. If it exists, the next repair learns of it and
            // a fill delivers these.
            PeerEvent::Messages { channel_id, .. } if !self.channels.contains_key(&channel_id) => {}
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
