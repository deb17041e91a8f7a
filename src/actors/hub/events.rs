//! Hub handlers that fan events out: committed messages, REST notices, broadcasts, presence.
use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::*;

use crate::actors::channel::{Publish, Retire};
use crate::actors::db::{CommittedBatch, CommittedMessage};
use crate::actors::{SessionKey, message_frame};
use crate::protocol::ws::{Event, close_code};

impl Handler<CommittedBatch> for Hub {
    type Result = ();

    fn handle(&mut self, msg: CommittedBatch, _: &mut Context<Self>) {
        self.mailbox.handled();
        // Group by channel, keeping commit order within each.
        let mut by_channel: Vec<(String, Vec<CommittedMessage>)> = Vec::new();
        let CommittedBatch(batch, ticket) = msg;
        for m in batch {
            match by_channel
                .iter_mut()
                .find(|(id, _)| *id == m.row.channel_id)
            {
                Some((_, list)) => list.push(m),
                None => by_channel.push((m.row.channel_id.clone(), vec![m])),
            }
        }
        if self.cluster.is_some() {
            self.cluster_committed(by_channel);
            return;
        }
        for (channel_id, messages) in by_channel {
            match self.channels.get(&channel_id) {
                Some(Some(addr)) => {
                    let addr = addr.clone();
                    self.send_channel(&addr, Publish(messages, Some(ticket.clone())));
                }
                // No actor means no subscribers: only the senders need their echo.
                _ => {
                    for m in messages {
                        if let Some(origin) = &m.origin {
                            origin.send_frames(Arc::from(vec![message_frame(&m.row)]));
                        }
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
        // Committed before it was sent here: the other nodes may act on it now.
        self.publish_notice(&msg);
        self.apply_notice(msg);
    }
}

impl Hub {
    /// A channel to track (created here, on another node, or learned by repair): the sessions
    /// that follow every channel join it.
    pub(super) fn channel_appeared(&mut self, channel_id: &str) {
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

    /// A notice from this node's REST handlers or from another node.
    pub(super) fn apply_notice(&mut self, msg: Notice) {
        match msg {
            Notice::ChannelCreated(channel) => {
                self.channel_appeared(&channel.id);
                self.tell_everyone(&Event::channel_updated(channel.id, channel.name_enc));
            }
            Notice::ChannelUpdated(channel) => {
                let event = Event::channel_updated(channel.id.clone(), channel.name_enc);
                self.tell_audience(&channel.id, &event);
            }
            Notice::PrivateChannelCreated { channel, members } => {
                self.membership_changed();
                self.private_appeared(&channel.id, members.into_iter().collect());
                let event = Event::channel_updated(channel.id.clone(), channel.name_enc);
                self.tell_audience(&channel.id, &event);
            }
            Notice::MemberAdded {
                channel_id,
                user_id,
                role,
            } => {
                self.membership_changed();
                self.member_joined(&channel_id, &user_id);
                let event = Event::member_added(channel_id.clone(), user_id, role);
                self.tell_audience(&channel_id, &event);
            }
            Notice::MemberRemoved {
                channel_id,
                user_id,
            } => {
                self.membership_changed();
                self.member_left(&channel_id, &user_id);
                let event = Event::member_removed(channel_id.clone(), user_id.clone());
                self.tell_audience(&channel_id, &event);
                self.tell_users(&HashSet::from([user_id]), &event);
            }
            Notice::KeyRotated {
                channel_id,
                generation,
            } => {
                let event = Event::key_rotated(channel_id.clone(), generation);
                self.tell_audience(&channel_id, &event);
            }
            Notice::ChannelDeleted(channel_id) => {
                // Told before the channel is forgotten, so a private one's members alone hear it.
                self.tell_audience(&channel_id, &Event::channel_deleted(channel_id.clone()));
                if let Some(Some(addr)) = self.channels.remove(&channel_id) {
                    self.send_channel(&addr, Retire);
                }
                if let Some(node) = self.cluster.as_mut() {
                    node.seq.forget(&channel_id);
                    node.deletions += 1;
                }
                for entry in self.sessions.values_mut() {
                    entry.channels.remove(&channel_id);
                }
                self.private.remove(&channel_id);
            }
            Notice::ProfileUpdated { user_id } => {
                self.tell_everyone(&Event::profile_updated(user_id));
            }
            Notice::DeviceJoined { user_id, device_id } => {
                self.tell_everyone(&Event::device_joined(user_id, device_id));
            }
            Notice::DeviceListUpdated { user_id, version } => {
                self.tell_everyone(&Event::device_list_updated(user_id, version));
            }
            Notice::SessionsRevoked { session_ids } => {
                let ids: HashSet<&str> = session_ids.iter().map(String::as_str).collect();
                self.close_where(close_code::NORMAL, "session revoked", |e| {
                    ids.contains(e.db_session_id.as_str())
                });
            }
            Notice::DeviceRemoved { device_id } => {
                self.close_where(close_code::NORMAL, "session revoked", |e| {
                    e.device_id == device_id
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
        self.publish_broadcast(&msg.0);
        self.apply_broadcast(msg);
    }
}

impl Hub {
    /// A stored broadcast from this node or another: each connected device gets its envelope.
    ///
    /// The frame differs per device only by its envelope, so it is serialized once around an
    /// empty envelope and each device's is spliced in: serializing the whole event (a body of up
    /// to 16 KiB) per session would make one broadcast cost the hub thread, which every upgrade,
    /// subscribe and commit also waits on, a full serialization per connected session.
    pub(super) fn apply_broadcast(&mut self, msg: Broadcast) {
        let b = msg.0;
        let event = Event {
            kind: crate::protocol::ws::event_type::MESSAGE_BROADCAST.to_owned(),
            message_id: b.id.clone(),
            sender: b.sender_id.clone(),
            body: b.body.clone(),
            sent_at: b.sent_at.wire(),
            sender_name_enc: Some(b.sender_name_enc.clone()),
            sender_public_key: Some(b.sender_public_key.clone()),
            key_envelope: Some(String::new()),
            ..Event::default()
        };
        let slot = EnvelopeSlot::of(&event);
        for entry in self.sessions.values() {
            let envelope = b
                .key_envelopes
                .get(&entry.device_id)
                .map_or("", String::as_str);
            entry
                .handle
                .send_frames(Arc::from(vec![slot.frame(envelope)]));
        }
    }
}

/// A serialized event with its `key_envelope` left open: the JSON before and after the value.
pub(super) struct EnvelopeSlot {
    before: String,
    after: String,
}

impl EnvelopeSlot {
    /// `event` serialized around its `key_envelope`, which must be `Some("")`.
    pub(super) fn of(event: &Event) -> Self {
        // Unambiguous: inside a JSON string a quote is escaped, so `"key_envelope":""` with bare
        // quotes can only be the field itself.
        const EMPTY: &str = r#""key_envelope":"""#;
        let whole = serde_json::to_string(event).unwrap_or_default();
        match whole.find(EMPTY) {
            Some(at) => {
                let open = at + EMPTY.len() - 2;
                EnvelopeSlot {
                    before: whole[..open].to_owned(),
                    after: whole[open + 2..].to_owned(),
                }
            }
            // Not reachable with `Some("")`; the frame then carries the empty envelope.
            None => EnvelopeSlot {
                before: whole,
                after: String::new(),
            },
        }
    }

    /// The frame with `envelope` in the slot.
    pub(super) fn frame(&self, envelope: &str) -> ByteString {
        if self.after.is_empty() {
            return ByteString::from(self.before.clone());
        }
        let value = serde_json::to_string(envelope).unwrap_or_default();
        let mut f = String::with_capacity(self.before.len() + value.len() + self.after.len());
        f.push_str(&self.before);
        f.push_str(&value);
        f.push_str(&self.after);
        ByteString::from(f)
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
                    let online = self.online_anywhere(&id);
                    (id, online)
                })
                .collect(),
        )
    }
}
