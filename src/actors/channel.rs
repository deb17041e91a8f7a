//! A channel actor: owns one channel's subscriber set and fans its committed messages out.
//!
//! Owns: the subscribers (session handles) of one channel.
//! Messages: [`Join`], [`Leave`], [`Publish`] (a committed batch), [`Flush`] (barrier used at
//! shutdown), [`Retire`] (channel deleted), [`SubscriberCount`].
//! Mailbox: capacity `DIALTONE_CHANNEL_MAILBOX`; its only sender is the hub, which uses `do_send`
//! because a committed message may never be dropped — the volume in flight is bounded upstream
//! (`DIALTONE_DB_MAX_PENDING` messages, one Join/Leave per session and channel).
//! Fan-out: each event is serialized once and the same bytes are offered to every subscriber with
//! `try_send`; a subscriber whose mailbox is full is closed with 1008 (slow consumer) and counted —
//! never silently skipped, and never waited for, so one slow socket cannot stall the others.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::db::CommittedMessage;
use super::{Frames, Offer, SessionHandle, SessionKey, frame};
use crate::metrics::{MailboxMeter, Metrics};
use crate::protocol::ws::{Event, close_code};

pub struct ChannelActor {
    channel_id: String,
    subscribers: HashMap<SessionKey, SessionHandle>,
    metrics: Arc<Metrics>,
    mailbox: MailboxMeter,
}

impl ChannelActor {
    pub fn new(channel_id: String, metrics: Arc<Metrics>) -> Self {
        let mailbox = metrics.mailbox("channel");
        Self {
            channel_id,
            subscribers: HashMap::new(),
            metrics,
            mailbox,
        }
    }
}

/// Offer frames to one session; `false` if it is gone or was closed as a slow consumer.
fn offer(metrics: &Metrics, channel_id: &str, key: SessionKey, handle: &SessionHandle, frames: &Frames) -> bool {
    match handle.offer(frames.clone()) {
        Offer::Queued => {
            metrics.fanout_deliveries.inc_by(frames.len() as u64);
            true
        }
        Offer::Full => {
            tracing::info!(channel_id, session = key.0, "slow consumer closed");
            metrics.slow_consumer_closes.inc();
            handle.close(close_code::POLICY, "slow consumer");
            false
        }
        Offer::Gone => false,
    }
}

impl Actor for ChannelActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.channel_actors.inc();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.metrics.channel_actors.dec();
    }
}

/// Add a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join(pub SessionHandle);

/// Remove a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub SessionKey);

/// Committed messages of this channel, in commit order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<CommittedMessage>);

/// Resolves once every message sent before it has been fanned out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// The channel was deleted: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// How many sessions are subscribed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SubscriberCount;

impl Handler<Join> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.mailbox.handled();
        self.subscribers.insert(msg.0.key, msg.0);
    }
}

impl Handler<Leave> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.mailbox.handled();
        self.subscribers.remove(&msg.0);
    }
}

impl Handler<Publish> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.mailbox.handled();
        let messages = msg.0;
        let frames: Vec<ByteString> = messages
            .iter()
            .map(|m| {
                let row = &m.row;
                frame(&Event::channel_message(
                    row.id.clone(),
                    row.channel_id.clone(),
                    row.sender_id.clone(),
                    row.sender_name_enc.clone(),
                    row.body.clone(),
                    row.sent_at.wire(),
                    row.client_message_id.clone(),
                ))
            })
            .collect();
        let shared: Frames = Arc::from(frames.clone());

        let dropped: Vec<SessionKey> = self
            .subscribers
            .iter()
            .filter(|(key, handle)| !offer(&self.metrics, &self.channel_id, **key, handle, &shared))
            .map(|(key, _)| *key)
            .collect();
        for key in dropped {
            self.subscribers.remove(&key);
        }

        // The echo is the sender's acknowledgement: a sender that is not subscribed still gets
        // its own messages.
        for (m, f) in messages.iter().zip(frames) {
            if !self.subscribers.contains_key(&m.origin.key) {
                let only: Frames = Arc::from(vec![f]);
                offer(&self.metrics, &self.channel_id, m.origin.key, &m.origin, &only);
            }
        }
    }
}

impl Handler<Flush> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

impl Handler<Retire> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.mailbox.handled();
        ctx.stop();
    }
}

impl Handler<SubscriberCount> for ChannelActor {
    type Result = usize;

    fn handle(&mut self, _: SubscriberCount, _: &mut Context<Self>) -> usize {
        self.subscribers.len()
    }
}
