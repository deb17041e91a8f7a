//! Repair from PostgreSQL: gap fills, the periodic comparison of every channel's last `seq` with
//! what this node delivered (which also applies lost channel creations and deletions), and the
//! re-check of open sockets against revoked sessions and disabled users.

use std::collections::HashSet;
use std::time::Instant;

use actix::prelude::*;

use super::super::{Hub, Notice};
use super::FILL_PAGE;
use crate::actors::db::{
    ChannelSeqs, ChannelsByIds, CheckSessions, CommittedMessage, MessagesAfterSeq, PrivateMembers,
};
use crate::cluster::sequencer::Due;
use crate::protocol::ws::{Event, close_code};

impl Hub {
    /// Gaps that outlived the hold: read them from the database (or skip, without subscribers).
    pub(super) fn fill_due(&mut self, ctx: &mut Context<Self>) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        // Read here, on the tick, not per batch: it visits every channel.
        self.metrics
            .cluster
            .held
            .set(i64::try_from(node.seq.held()).unwrap_or(i64::MAX));
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
        let deletions = node.deletions;
        let memberships = node.membership_changes;
        // The channels first, then their members: a private channel created between the reads
        // is then absent from both (the next repair finds it), never listed as a channel whose
        // members were read before it existed — which would make it public here, joined by
        // every session that follows all channels.
        let read = async move {
            let seqs = db.call(ChannelSeqs {}).await?;
            let private = db.call(PrivateMembers {}).await?;
            Ok::<_, crate::service::ServiceError>((private, seqs))
        };
        ctx.spawn(read.into_actor(self).map(move |result, hub, ctx| {
            let (private, seqs) = match result {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster repair could not read the channels");
                    return;
                }
            };
            // Membership first: a private channel this node learns of below must not be joined
            // by sessions that merely follow every channel. A membership notice applied while
            // the read ran is newer than the snapshot: applying the snapshot would revive a
            // removed member or drop an added one, so its reconcile waits for the next repair.
            let stale = hub
                .cluster
                .as_ref()
                .is_some_and(|n| n.membership_changes != memberships);
            if stale {
                hub.reconcile_new_private(private);
            } else {
                hub.reconcile_members(private);
            }
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
            // A deletion applied while this read ran may be of a channel the read still lists.
            let overtaken = hub
                .cluster
                .as_ref()
                .is_some_and(|n| n.deletions != deletions);
            let mut appeared = Vec::new();
            for (id, last) in &seqs {
                if !hub.channels.contains_key(id) {
                    if overtaken {
                        continue;
                    }
                    hub.channel_appeared(id);
                    appeared.push(id.clone());
                }
                if let Some(node) = hub.cluster.as_mut() {
                    node.seq.note_head(id, *last, now);
                }
            }
            if !appeared.is_empty() {
                hub.announce_appeared(appeared, ctx);
            }
        }));
    }

    /// Tell clients about channels learned by repair, as the lost `ChannelCreated` would have
    /// (`channel.updated` with the name). A channel deleted meanwhile is not announced.
    fn announce_appeared(&mut self, ids: Vec<String>, ctx: &mut Context<Self>) {
        let Some(node) = &self.cluster else { return };
        let db = node.db.clone();
        let read = async move { db.call(ChannelsByIds { ids }).await };
        ctx.spawn(read.into_actor(self).map(|result, hub, _| match result {
            Ok(channels) => {
                for c in channels {
                    if hub.channels.contains_key(&c.id) {
                        let event = Event::channel_updated(c.id.clone(), c.name_enc);
                        hub.tell_audience(&c.id, &event);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster repair could not read new channels"),
        }));
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
        let users: HashSet<String> = self.sessions.values().map(|e| e.user_id.clone()).collect();
        let read = async move {
            db.call(CheckSessions {
                session_ids: asked.iter().cloned().collect(),
                user_ids: users.into_iter().collect(),
            })
            .await
            .map(|check| (asked, check))
        };
        ctx.spawn(read.into_actor(self).map(move |result, hub, _| {
            let (asked, check) = match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster session re-check failed");
                    return;
                }
            };
            let mut closed = 0u64;
            for entry in hub.sessions.values() {
                // Sessions registered after the read was sent are not judged by it.
                if !asked.contains(&entry.db_session_id) {
                    continue;
                }
                let reason = if check.disabled_users.contains(&entry.user_id) {
                    "account disabled"
                } else if !check.live.contains(&entry.db_session_id) {
                    "session revoked"
                } else {
                    continue;
                };
                entry.handle.close(close_code::NORMAL, reason);
                closed += 1;
            }
            hub.metrics.cluster.sessions_closed_by_check.inc_by(closed);
        }));
    }
}
