//! A channel actor: owns one channel's subscriber set and fans its committed messages out.
//!
//! Owns: the subscribers (session handles) of one channel.
//! Messages: [`Join`], [`Leave`], [`Publish`] (a committed batch), [`Flush`] (barrier used at
//! shutdown), [`Retire`] (channel deleted), [`SubscriberCount`].
//! Mailbox: capacity `DIALTONE_CHANNEL_MAILBOX`; its only sender is the hub, which uses `do_send`
//! because a committed message may never be dropped — the volume in flight is bounded upstream
//! (`DIALTONE_DB_MAX_PENDING` messages, one Join/Leave per session and channel).
//! Fan-out: each event is serialized once and the same bytes go, in one message per worker-thread
//! delivery shard, to every subscriber. Nothing here waits for a socket: each socket's backlog is
//! bounded by its outbox, which closes a slow consumer with 1008 (counted) without holding anyone
//! else back.

use std::sync::Arc;

use actix::prelude::*;

use super::db::{CommittedMessage, FanoutTicket};
use super::{Frames, SessionHandle, SessionKey, ShardGroups, message_frame};
use crate::metrics::{MailboxMeter, Metrics};

pub struct ChannelActor {
    channel_id: String,
    subscribers: ShardGroups,
    metrics: Arc<Metrics>,
    mailbox: MailboxMeter,
}

impl ChannelActor {
    pub fn new(channel_id: String, metrics: Arc<Metrics>) -> Self {
        let mailbox = metrics.mailbox("channel");
        Self {
            channel_id,
            subscribers: ShardGroups::default(),
            metrics,
            mailbox,
        }
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

/// Committed messages of this channel, in commit order, with their batch's fan-out ticket
/// (`None` for messages from another node), released once they are delivered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<CommittedMessage>, pub Option<Arc<FanoutTicket>>);

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
        self.subscribers.insert(&msg.0);
    }
}

impl Handler<Leave> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.mailbox.handled();
        self.subscribers.remove(msg.0);
    }
}

impl Handler<Publish> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.mailbox.handled();
        let Publish(messages, ticket) = msg;
        let frames: Frames = messages.iter().map(|m| message_frame(&m.row)).collect();
        self.subscribers.deliver(&frames, ticket.as_ref());

        // The echo is the sender's acknowledgement: a sender that is not subscribed still gets
        // its own messages.
        for (m, f) in messages.iter().zip(frames.iter()) {
            if let Some(origin) = &m.origin
                && !self.subscribers.contains(&origin.key)
            {
                origin.send_frames(Arc::from([f.clone()]));
            }
        }
        tracing::trace!(channel_id = %self.channel_id, messages = messages.len(), "fanned out");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::probe::{self, Sync};
    use crate::db::models::MessageRow;
    use crate::db::types::Time;

    fn committed(channel: &str, id: &str, origin: &SessionHandle) -> CommittedMessage {
        CommittedMessage {
            row: MessageRow {
                id: id.to_owned(),
                channel_id: channel.to_owned(),
                sender_id: "sender".to_owned(),
                sender_name_enc: "bmFtZQ==".to_owned(),
                body: format!("body-{id}"),
                sent_at: Time::now(),
                client_message_id: Some(format!("c-{id}")),
                seq: 0,
            },
            origin: Some(origin.clone()),
        }
    }

    fn ids(log: &std::sync::Mutex<probe::Log>) -> Vec<String> {
        log.lock()
            .unwrap()
            .events
            .iter()
            .map(|e| e.message_id.clone())
            .collect()
    }

    #[actix::test]
    async fn join_fan_out_in_order_and_leave() {
        let metrics = Metrics::new();
        let channel = ChannelActor::new("c1".into(), metrics.clone()).start();
        let (p1, h1, log1) = probe::spawn(&metrics);
        let (p2, h2, log2) = probe::spawn(&metrics);
        channel.send(Join(h1.clone())).await.unwrap();
        channel.send(Join(h2.clone())).await.unwrap();
        assert_eq!(channel.send(SubscriberCount).await.unwrap(), 2);

        let gauge = crate::actors::db::FanoutGauge::default();
        channel
            .send(Publish(
                vec![committed("c1", "m1", &h1), committed("c1", "m2", &h2)],
                Some(gauge.ticket(2)),
            ))
            .await
            .unwrap();
        p1.send(Sync).await.unwrap();
        p2.send(Sync).await.unwrap();
        assert_eq!(
            gauge.get(),
            0,
            "delivered: no longer counted against the bound"
        );
        assert_eq!(ids(&log1), ["m1", "m2"]);
        assert_eq!(ids(&log2), ["m1", "m2"]);
        let first = log1.lock().unwrap().events[0].clone();
        assert_eq!(first.kind, "channel.message.new");
        assert_eq!(first.channel_id.as_deref(), Some("c1"));
        assert_eq!(first.client_message_id.as_deref(), Some("c-m1"));

        channel.send(Leave(h1.key)).await.unwrap();
        channel
            .send(Publish(vec![committed("c1", "m3", &h2)], None))
            .await
            .unwrap();
        p1.send(Sync).await.unwrap();
        p2.send(Sync).await.unwrap();
        assert_eq!(ids(&log1), ["m1", "m2"], "left: nothing more");
        assert_eq!(ids(&log2), ["m1", "m2", "m3"]);
    }

    #[actix::test]
    async fn an_unsubscribed_sender_still_gets_its_echo() {
        let metrics = Metrics::new();
        let channel = ChannelActor::new("c1".into(), metrics.clone()).start();
        let (p1, h1, log1) = probe::spawn(&metrics);
        let (p2, h2, log2) = probe::spawn(&metrics);
        channel.send(Join(h2.clone())).await.unwrap();
        channel
            .send(Publish(
                vec![committed("c1", "m1", &h1), committed("c1", "m2", &h2)],
                None,
            ))
            .await
            .unwrap();
        p1.send(Sync).await.unwrap();
        p2.send(Sync).await.unwrap();
        assert_eq!(ids(&log1), ["m1"], "only its own message");
        assert_eq!(ids(&log2), ["m1", "m2"]);
    }

    #[actix::test]
    async fn one_message_per_shard_not_per_session() {
        let metrics = Metrics::new();
        let channel = ChannelActor::new("c1".into(), metrics.clone()).start();
        let (p, h, log) = probe::spawn(&metrics);
        // Three sessions on the probe's shard (only the probe's own key is logged).
        let mut others = Vec::new();
        for _ in 0..2 {
            let mut other = h.clone();
            other.key = SessionKey::next();
            others.push(other);
        }
        channel.send(Join(h.clone())).await.unwrap();
        for o in &others {
            channel.send(Join(o.clone())).await.unwrap();
        }
        assert_eq!(channel.send(SubscriberCount).await.unwrap(), 3);
        channel
            .send(Publish(vec![committed("c1", "m1", &h)], None))
            .await
            .unwrap();
        p.send(Sync).await.unwrap();
        // Per-session delivery would hand this shard three messages (m1 three times).
        assert_eq!(ids(&log), ["m1"], "one Deliver carrying all three keys");
    }
}
