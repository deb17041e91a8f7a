//! What each server event does to a followed stream: held and replayed messages merged in commit
//! order after a `sync`, keys shared with devices that join, decrypted deliveries.

use std::time::Duration;

use crate::client::ClientError;
use crate::client::chat::{Chat, ChatError, ChatResult};
use crate::client::rest::Page;
use crate::client::sealing::{self};
use crate::protocol::rest::ChannelMessage;
use crate::protocol::ws::{Event, event_type};

use super::*;

impl Chat {
    pub(super) async fn on_server_event<F: FnMut(ChatEvent) + Send>(
        &mut self,
        e: Event,
        opts: &FollowOptions,
        state: &mut State,
        on_event: &mut F,
    ) -> ChatResult<()> {
        let followed = |state: &State, c: &str| match &opts.channel {
            Some(only) => only == c,
            None => state.channels.contains(c),
        };
        match e.kind.as_str() {
            event_type::CHANNEL_MESSAGE_NEW => {
                let m = sealing::event_as_message(&e);
                if !followed(state, &m.channel_id) {
                    return Ok(());
                }
                if state.syncing.contains_key(&m.channel_id) {
                    state.held.entry(m.channel_id.clone()).or_default().push(m);
                } else {
                    self.deliver(state, m, false, on_event).await;
                }
            }
            event_type::SYNC_COMPLETE => {
                let channel = e.channel_id.clone().unwrap_or_default();
                if let Some(after) = state.syncing.remove(&channel) {
                    self.finish_sync(state, &channel, after, e.has_more == Some(true), on_event)
                        .await;
                }
            }
            // Delivered once: the guard records the id.
            event_type::MESSAGE_BROADCAST if state.seen.insert(&e.message_id) => {
                on_event(ChatEvent::Broadcast(self.open_broadcast(&e)));
            }
            event_type::CHANNEL_UPDATED => {
                let channel = e.channel_id.clone().unwrap_or_default();
                if opts.channel.as_ref().is_some_and(|only| *only != channel) {
                    return Ok(());
                }
                let created = state.channels.insert(channel.clone());
                let name_enc = e.channel_name_enc.clone().unwrap_or_default();
                let mut name = self.decrypt_channel_name(&channel, &name_enc).await;
                // The creator uploads the key envelopes just after the channel exists.
                let mut tries = 0;
                while created
                    && tries < 4
                    && matches!(
                        name,
                        Err(ChatError::NoChannelKey(_) | ChatError::NoGenerationKey { .. })
                    )
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    name = self.decrypt_channel_name(&channel, &name_enc).await;
                    tries += 1;
                }
                on_event(ChatEvent::ChannelUpdated {
                    channel_id: channel.clone(),
                    name,
                    created,
                });
                // A private channel whose member revoked a device waits for a new generation.
                if opts.share_on_join && !created {
                    self.auto_rotate(&channel, on_event).await;
                }
            }
            event_type::MEMBER_ADDED => {
                let channel = e.channel_id.clone().unwrap_or_default();
                if e.sender == self.user_id() && opts.channel.is_none() {
                    state.channels.insert(channel.clone());
                }
                let user_name = self.profile_name(&e.sender).await;
                on_event(ChatEvent::MemberAdded {
                    channel_id: channel,
                    user_id: e.sender,
                    user_name,
                    role: e.role.unwrap_or_default(),
                });
            }
            event_type::MEMBER_REMOVED => {
                let channel = e.channel_id.clone().unwrap_or_default();
                let me = e.sender == self.user_id();
                let user_name = self.profile_name(&e.sender).await;
                on_event(ChatEvent::MemberRemoved {
                    channel_id: channel.clone(),
                    user_id: e.sender,
                    user_name,
                    me,
                });
                if me {
                    state.channels.remove(&channel);
                    state.syncing.remove(&channel);
                    state.held.remove(&channel);
                    if opts.channel.as_deref() == Some(channel.as_str()) {
                        return Err(ChatError::Invalid(format!(
                            "you were removed from channel {channel}"
                        )));
                    }
                } else if opts.share_on_join {
                    self.auto_rotate(&channel, on_event).await;
                }
            }
            event_type::KEY_ROTATED => on_event(ChatEvent::KeyRotated {
                channel_id: e.channel_id.unwrap_or_default(),
                generation: e.key_generation.unwrap_or_default(),
            }),
            event_type::CHANNEL_DELETED => {
                let channel = e.channel_id.clone().unwrap_or_default();
                let was_followed = followed(state, &channel);
                state.channels.remove(&channel);
                state.last_seen.remove(&channel);
                state.syncing.remove(&channel);
                state.held.remove(&channel);
                if self.store_mut().remove_channel_key(&channel) {
                    self.store_mut().save()?;
                }
                if was_followed {
                    on_event(ChatEvent::ChannelDeleted {
                        channel_id: channel.clone(),
                    });
                }
                if opts.channel.as_deref() == Some(channel.as_str()) {
                    return Err(ChatError::Invalid(format!("channel {channel} was deleted")));
                }
            }
            event_type::DEVICE_JOINED => {
                let device_id = e.device_id.clone().unwrap_or_default();
                let shared =
                    if opts.share_on_join && device_id != self.device_id() && !device_id.is_empty()
                    {
                        Some(self.share_keys(None, Some(&device_id)).await)
                    } else {
                        None
                    };
                let user_name = self.profile_name(&e.sender).await;
                on_event(ChatEvent::DeviceJoined {
                    user_id: e.sender.clone(),
                    user_name,
                    device_id,
                    shared,
                });
            }
            // What was verified of this user is stale: check again on their next message.
            event_type::DEVICE_LIST_UPDATED => self.forget_author(&e.sender),
            event_type::USER_PROFILE_UPDATED => {
                self.forget_author(&e.sender);
                let name = self.profile_name(&e.sender).await;
                on_event(ChatEvent::ProfileUpdated {
                    user_id: e.sender,
                    name,
                });
            }
            event_type::PRESENCE_UPDATED => on_event(ChatEvent::Presence {
                user_id: e.sender,
                online: e.online.unwrap_or(false),
            }),
            event_type::ERROR => {
                // A sync for a channel deleted meanwhile: nothing more will come for it.
                if let Some(channel) = &e.channel_id
                    && let Some(after) = state.syncing.remove(channel)
                {
                    self.finish_sync(state, channel, after, false, on_event)
                        .await;
                }
                on_event(ChatEvent::ServerError {
                    code: e.code.unwrap_or_default(),
                    message: e.message.unwrap_or_default(),
                    retry_after: e.retry_after,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Deliver what a channel's sync brought plus the live messages held meanwhile, in commit
    /// order and without duplicates. A replay cut short is completed from REST history.
    pub(super) async fn finish_sync<F: FnMut(ChatEvent) + Send>(
        &mut self,
        state: &mut State,
        channel: &str,
        after: Option<String>,
        has_more: bool,
        on_event: &mut F,
    ) {
        let mut batch = state.held.remove(channel).unwrap_or_default();
        // Without a cursor `has_more` means older messages exist, which we do not want.
        if has_more && let Some(mut cursor) = after {
            loop {
                let page = Page {
                    limit: Some(CATCH_UP_PAGE),
                    after: Some(cursor.clone()),
                    before: None,
                };
                // One retry: the REST connection may have died with the socket.
                let fetched = match self.rest().messages(channel, &page).await {
                    Err(ClientError::Transport(_)) => self.rest().messages(channel, &page).await,
                    other => other,
                };
                match fetched {
                    Ok(res) => {
                        let more = res.has_more;
                        let Some(last) = res.messages.last().map(|m| m.id.clone()) else {
                            break;
                        };
                        batch.extend(res.messages);
                        if !more {
                            break;
                        }
                        cursor = last;
                    }
                    Err(e) => {
                        on_event(ChatEvent::Notice(format!(
                            "channel {channel}: catching up from history failed: {e}"
                        )));
                        break;
                    }
                }
            }
        }
        batch.sort_by(|a, b| a.sent_at.cmp(&b.sent_at));
        for m in batch {
            self.deliver(state, m, true, on_event).await;
        }
    }

    /// As a channel admin, rotate a private channel that waits for a new generation, and say so.
    async fn auto_rotate<F: FnMut(ChatEvent) + Send>(&mut self, channel: &str, on_event: &mut F) {
        match self.rotate_if_required(channel).await {
            Ok(None) => {}
            Ok(Some(generation)) => on_event(ChatEvent::Notice(format!(
                "channel {channel}: rotated its key to generation {generation}, so whoever left cannot read what comes next"
            ))),
            Err(e) => on_event(ChatEvent::Notice(format!(
                "channel {channel} needs a new key (someone left), but rotating it failed: {e}. Messages to it are refused until a member rotates it (`dialtone-cli members rotate`)."
            ))),
        }
    }

    /// A user's decrypted profile name, if published and readable (best effort: it only labels
    /// an event).
    pub(super) async fn profile_name(&mut self, user_id: &str) -> Option<String> {
        let profiles = self.profiles().await.ok()?;
        profiles
            .into_iter()
            .find(|(id, _)| id == user_id)
            .and_then(|(_, name)| name.ok())
    }

    /// Decrypt and report one channel message, once.
    pub(super) async fn deliver<F: FnMut(ChatEvent) + Send>(
        &mut self,
        state: &mut State,
        m: ChannelMessage,
        replayed: bool,
        on_event: &mut F,
    ) {
        if !state.seen.insert(&m.id) {
            return;
        }
        state.last_seen.insert(m.channel_id.clone(), m.id.clone());
        let message = self.open_stored(&m).await;
        on_event(ChatEvent::Message {
            channel_id: m.channel_id,
            message,
            replayed,
        });
    }
}
