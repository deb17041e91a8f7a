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
//!
//! Layout: this file holds the hub's state and handle; [`messages`] the message types;
//! `sessions` (connect, disconnect, subscriptions), `events` (fan-out of commits, notices,
//! broadcasts, presence) and `control` (stats, quiesce, shutdown) the handlers; `cluster` the
//! other nodes (publish, sequencing, repair, peer presence), active with `DIALTONE_NATS_URL`.

mod cluster;
mod control;
mod events;
mod members;
mod messages;
mod sessions;
#[cfg(test)]
mod tests;

pub use cluster::ClusterLink;
pub use messages::*;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::channel::{ChannelActor, Join, Leave};
use super::liveness::{Dead, Pinger, Probe, answers};
use super::{Frames, SessionHandle, SessionKey, ShardGroups, frame};
use crate::metrics::{MailboxMeter, Metrics};
use crate::protocol::ws::Event;

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
    /// Private and direct channels → their active members' user ids (see `members`).
    private: HashMap<String, HashSet<String>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    channel_mailbox: usize,
    metrics: Arc<Metrics>,
    mailbox: MailboxMeter,
    channel_meter: MailboxMeter,
    shutting_down: bool,
    /// Set when clustering is on (`DIALTONE_NATS_URL`).
    cluster: Option<cluster::Node>,
}

/// Cheap, cloneable access to the hub that counts mailbox depth.
#[derive(Clone)]
pub struct HubHandle {
    addr: Addr<Hub>,
    meter: MailboxMeter,
    arbiters: Vec<ArbiterHandle>,
    /// One [`Pinger`] per channel arbiter, in arbiter order.
    arbiter_probes: Vec<Recipient<Probe>>,
}

impl HubHandle {
    /// Fire-and-forget (disconnects, notices, broadcasts): never dropped.
    pub fn tell<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Hub: Handler<M>,
    {
        self.meter.queued();
        // why `do_send`: each message follows work that was itself bounded, and dropping one would
        // leave a revoked socket open or a stored broadcast undelivered. `Disconnect`: one per
        // socket (`DIALTONE_WS_MAX_SESSIONS`); `Notice`: one per committed REST change and
        // `Broadcast`: one per stored broadcast, both behind a `DIALTONE_DB_MAX_INFLIGHT` slot and
        // the per-user limits. A hub that stops draining fails its liveness probe (`/health` 503).
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

    /// Every channel-actor thread answers a probe within `bound`; the first that does not is
    /// named (`channel arbiter <n>`, from 0). With no arbiters the channel actors run on the
    /// hub's thread, which the hub's own probe covers.
    pub async fn arbiters_alive(&self, bound: Duration) -> Result<(), Dead> {
        for (n, probe) in self.arbiter_probes.iter().enumerate() {
            answers(format!("channel arbiter {n}"), probe, Probe, bound).await?;
        }
        Ok(())
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
        private: Vec<(String, Vec<String>)>,
        channel_arbiters: usize,
        channel_mailbox: usize,
        hub_mailbox: usize,
        metrics: Arc<Metrics>,
        cluster: Option<ClusterLink>,
    ) -> HubHandle {
        let arbiters: Vec<ArbiterHandle> = (0..channel_arbiters)
            .map(|_| Arbiter::new().handle())
            .collect();
        let handles = arbiters.clone();
        let arbiter_probes = arbiters
            .iter()
            .map(|a| Pinger::start_in_arbiter(a, |_| Pinger).recipient())
            .collect();
        let meter = metrics.mailbox("hub");
        let hub = Hub {
            sessions: HashMap::new(),
            everyone: ShardGroups::default(),
            online: HashMap::new(),
            channels: channel_ids.into_iter().map(|id| (id, None)).collect(),
            private: private
                .into_iter()
                .map(|(id, users)| (id, users.into_iter().collect()))
                .collect(),
            arbiters,
            next_arbiter: 0,
            channel_mailbox,
            mailbox: meter.clone(),
            channel_meter: metrics.mailbox("channel"),
            metrics,
            shutting_down: false,
            cluster: cluster.map(cluster::Node::new),
        };
        let addr = Hub::create(move |ctx| {
            ctx.set_mailbox_capacity(hub_mailbox);
            hub
        });
        HubHandle {
            addr,
            meter,
            arbiters: handles,
            arbiter_probes,
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
        // why `do_send`: committed messages are never dropped. `Publish` carries at most
        // `DIALTONE_DB_MAX_PENDING` messages in flight; `Join`/`Leave` are one per session and
        // channel (`DIALTONE_LIMIT_SUBSCRIBE`, `DIALTONE_WS_MAX_SESSIONS`); `Flush`/`Retire` one
        // per shutdown or channel deletion.
        addr.do_send(msg);
    }

    fn join(&mut self, key: SessionKey, channel_id: &str) -> bool {
        let Some(entry) = self.sessions.get(&key) else {
            return false;
        };
        if !self.may_follow(&entry.user_id, channel_id) {
            return false;
        }
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

    /// One event to every session: serialized once, one message per delivery shard.
    fn tell_everyone(&mut self, event: &Event) {
        let frames: Frames = Arc::from(vec![frame(event)]);
        self.everyone.deliver(&frames, None);
    }

    fn close_where(&self, code: u16, reason: &'static str, pred: impl Fn(&SessionEntry) -> bool) {
        for entry in self.sessions.values().filter(|e| pred(e)) {
            entry.handle.close(code, reason);
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_cluster(ctx);
    }
}
