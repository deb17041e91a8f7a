//! Channels with encrypted names, history, sending (acknowledged by the commit echo) and
//! broadcasts.

use crate::client::key_upload::Target;
use crate::client::rest::Page;
use crate::client::sealing::{self, ChatMessage, SkippedDevice};
use crate::client::trust::bound::{self, Kind};
use crate::client::{ClientError, Incoming, WsClient};
use crate::crypto::e2e::{self};
use crate::protocol::rest::Channel;
use crate::protocol::ws::{ClientFrame, MAX_BODY_BYTES, event_type};

use super::*;

impl Chat {
    /// Every channel, newest first, with its name decrypted where this device has the key.
    pub async fn channels(&mut self) -> ChatResult<Vec<ChannelInfo>> {
        let channels = self.rest.channels().await?;
        let mut out = Vec::with_capacity(channels.len());
        for c in channels {
            let name = self.channel_name(&c).await;
            out.push(ChannelInfo {
                id: c.id,
                name,
                created_by: c.created_by,
                created_at: c.created_at,
                kind: c.kind,
            });
        }
        Ok(out)
    }

    pub(super) async fn channel_name(&mut self, c: &Channel) -> Result<String, ChatError> {
        self.decrypt_channel_name(&c.id, &c.name_enc).await
    }

    /// Decrypt a channel name announced by a `channel.updated` event.
    pub async fn decrypt_channel_name(
        &mut self,
        channel_id: &str,
        name_enc: &str,
    ) -> ChatResult<String> {
        let what = format!("the name of channel {channel_id}");
        self.open_channel_text(channel_id, Kind::ChannelName, None, name_enc, &what)
            .await
            .map(|(name, _)| name)
    }

    /// A channel by id or by decrypted name (exact, then case-insensitive; a leading `#` is
    /// ignored).
    pub async fn resolve_channel(&mut self, arg: &str) -> ChatResult<ChannelInfo> {
        let wanted = arg.trim().trim_start_matches('#');
        let mut channels = self.channels().await?;
        if let Some(i) = channels.iter().position(|c| c.id == wanted) {
            return Ok(channels.swap_remove(i));
        }
        let exact: Vec<usize> = (0..channels.len())
            .filter(|&i| channels[i].name.as_deref().is_ok_and(|n| n == wanted))
            .collect();
        let found = if exact.is_empty() {
            (0..channels.len())
                .filter(|&i| {
                    channels[i]
                        .name
                        .as_deref()
                        .is_ok_and(|n| n.eq_ignore_ascii_case(wanted))
                })
                .collect()
        } else {
            exact
        };
        match found.as_slice() {
            [] => {
                let unreadable = channels.iter().filter(|c| c.name.is_err()).count();
                let hint = if unreadable == 0 {
                    String::new()
                } else {
                    format!(
                        "; {unreadable} channel(s) have no key on this device yet, so their names are unknown: run `share` on a device that has them"
                    )
                };
                Err(ChatError::UnknownChannel {
                    name: wanted.to_owned(),
                    hint,
                })
            }
            [i] => Ok(channels.swap_remove(*i)),
            many => Err(ChatError::AmbiguousChannel {
                name: wanted.to_owned(),
                ids: many
                    .iter()
                    .map(|&i| channels[i].id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Create a channel (admins): a fresh key encrypts its name, is kept here, and is wrapped for
    /// every device.
    pub async fn create_channel(&mut self, name: &str) -> ChatResult<(Channel, ShareReport)> {
        let name = check_name(name)?;
        let key = e2e::generate_key();
        let channel = self
            .rest
            .create_channel(&sealing::seal_text(&key, name))
            .await?;
        // Keep the key before anything else can fail: it is the only copy until uploaded.
        self.store.set_channel_key(&channel.id, key.clone());
        self.store.save()?;
        let (devices, withheld) = self.trusted_device_keys(None).await?;
        let wrapped = sealing::wrap_for_devices(self.store.device(), &key, &devices);
        let mut report = ShareReport::default();
        report.skip(&withheld);
        report.skip(&wrapped.skipped);
        let done = self.upload(Target::Channel(&channel.id), &wrapped).await?;
        report.record(KeyRef::Channel(channel.id.clone()), done);
        Ok((channel, report))
    }

    /// Rename a channel (admins), under its existing key.
    pub async fn rename_channel(&mut self, channel_id: &str, name: &str) -> ChatResult<Channel> {
        let name = check_name(name)?;
        let channel = self.channel(channel_id).await?;
        let name_enc = match channel.key_generation.filter(|g| *g > 0) {
            Some(generation) => {
                let key = self.generation_key(channel_id, generation).await?;
                self.seal_name(&key, Some(channel_id), generation, name)
            }
            None => {
                let key = self.channel_key(channel_id).await?;
                sealing::seal_text(&key, name)
            }
        };
        Ok(self.rest.rename_channel(channel_id, &name_enc).await?)
    }

    /// Delete a channel (admins) and forget its key.
    pub async fn delete_channel(&mut self, channel_id: &str) -> ChatResult<()> {
        self.rest.delete_channel(channel_id).await?;
        if self.store.remove_channel_key(channel_id) {
            self.store.save()?;
        }
        Ok(())
    }

    // ---- messages ----

    /// One page of a channel's history, decrypted.
    pub async fn history(&mut self, channel_id: &str, page: &Page) -> ChatResult<History> {
        let res = self.rest.messages(channel_id, page).await?;
        if res.messages.iter().any(|m| !bound::is_bound(&m.body)) {
            // v1 messages all need the channel key: without it the page is unreadable as a whole.
            self.channel_key(channel_id).await?;
        }
        let mut messages = Vec::with_capacity(res.messages.len());
        for m in &res.messages {
            messages.push(self.open_stored(m).await);
        }
        Ok(History {
            first_id: res.messages.first().map(|m| m.id.clone()),
            channel_id: res.channel_id,
            messages,
            has_more: res.has_more,
        })
    }

    /// Decrypt a `channel.message.new` event (fetching the channel key if needed).
    pub async fn open_message_event(
        &mut self,
        event: &crate::protocol::ws::Event,
    ) -> ChatResult<ChatMessage> {
        self.open_stored(&sealing::event_as_message(event)).await
    }

    /// Decrypt a `message.broadcast` event addressed to this device.
    pub fn open_broadcast(&self, event: &crate::protocol::ws::Event) -> ChatResult<ChatMessage> {
        sealing::open_broadcast(self.store.device(), event)
    }

    /// Send a message on a fresh socket and wait for its echo, the server's acknowledgement that
    /// it is committed.
    pub async fn send(&mut self, channel_id: &str, text: &str) -> ChatResult<ChatMessage> {
        let mut ws = self.connect(true).await?;
        ws.send(&ClientFrame::subscribe(channel_id)).await?;
        let sent = self.send_on(&mut ws, channel_id, text).await;
        let _ = ws.close().await;
        sent
    }

    /// Send on an open socket that is subscribed to `channel_id`; other events that arrive
    /// meanwhile are skipped.
    pub async fn send_on(
        &mut self,
        ws: &mut WsClient,
        channel_id: &str,
        text: &str,
    ) -> ChatResult<ChatMessage> {
        let v1_key = self
            .store
            .channel_key(channel_id)
            .filter(|_| self.store.newest_generation(channel_id).is_none())
            .cloned();
        let (body, sender_name_enc) = match v1_key {
            // A held v1 key, and no generation held, means a public channel: no round trip to
            // look the channel up.
            Some(key) => {
                let sealed = sealing::seal_message(&key, &self.username, text);
                (sealed.body, sealed.sender_name_enc)
            }
            None => {
                let channel = self.channel(channel_id).await?;
                self.seal_for(&channel, text).await?
            }
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(ChatError::Invalid(format!(
                "message too long: {} bytes of text encrypt to more than the server's {MAX_BODY_BYTES}",
                text.len()
            )));
        }
        let cmid = uuid::Uuid::new_v4().to_string();
        ws.send(&ClientFrame::channel_message(
            channel_id,
            body,
            sender_name_enc,
            Some(cmid.clone()),
        ))
        .await?;
        let event = wait_for(ws, |e| {
            let ours = e.client_message_id.as_deref() == Some(cmid.as_str());
            let is_error = e.kind == event_type::ERROR;
            // A `subscribe` refusal carries the channel but no client_message_id.
            (ours && (is_error || e.kind == event_type::CHANNEL_MESSAGE_NEW))
                || (is_error && e.channel_id.as_deref() == Some(channel_id))
        })
        .await?;
        if event.kind == event_type::ERROR {
            return Err(refused(&event));
        }
        self.open_stored(&sealing::event_as_message(&event)).await
    }

    /// Broadcast to every device: returns the decrypted echo and the devices that were skipped.
    pub async fn broadcast(&mut self, text: &str) -> ChatResult<(ChatMessage, Vec<SkippedDevice>)> {
        let mut ws = self.connect(true).await?;
        let sent = self.broadcast_on(&mut ws, text).await;
        let _ = ws.close().await;
        sent
    }

    /// [`Chat::broadcast`] on an open socket.
    pub async fn broadcast_on(
        &mut self,
        ws: &mut WsClient,
        text: &str,
    ) -> ChatResult<(ChatMessage, Vec<SkippedDevice>)> {
        let (devices, withheld) = self.trusted_device_keys(None).await?;
        let (frame, wrapped) =
            sealing::seal_broadcast(self.store.device(), &self.username, text, &devices);
        if frame
            .body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_BODY_BYTES)
        {
            return Err(ChatError::Invalid(format!(
                "message too long: {} bytes of text encrypt to more than the server's {MAX_BODY_BYTES}",
                text.len()
            )));
        }
        let body = frame.body.clone().unwrap_or_default();
        ws.send(&frame).await?;
        let me = self.user_id.clone();
        let event = wait_for(ws, |e| {
            (e.kind == event_type::MESSAGE_BROADCAST && e.sender == me && e.body == body)
                || (e.kind == event_type::ERROR
                    && e.channel_id.is_none()
                    && e.client_message_id.is_none())
        })
        .await?;
        if event.kind == event_type::ERROR {
            return Err(refused(&event));
        }
        let mut skipped = withheld;
        skipped.extend(wrapped.skipped);
        Ok((self.open_broadcast(&event)?, skipped))
    }

    // ---- people and devices ----
}

pub(super) fn check_name(name: &str) -> ChatResult<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ChatError::Invalid(
            "a channel name has 1 to 200 characters, none of them control characters".into(),
        ));
    }
    Ok(name)
}

pub(super) fn refused(e: &crate::protocol::ws::Event) -> ChatError {
    ChatError::Refused {
        code: e.code.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        retry_after: e.retry_after,
    }
}

/// Read events until one matches, within [`ACK_TIMEOUT`].
pub(super) async fn wait_for(
    ws: &mut WsClient,
    mut wanted: impl FnMut(&crate::protocol::ws::Event) -> bool,
) -> ChatResult<crate::protocol::ws::Event> {
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Ok(Some(Incoming::Event(e))) if wanted(&e) => return Ok(*e),
            Ok(Some(Incoming::Event(_))) => continue,
            Ok(Some(Incoming::Closed { code, reason })) => {
                return Err(ChatError::Client(ClientError::Transport(format!(
                    "the server closed the connection ({code} {reason}) before acknowledging"
                ))));
            }
            Ok(None) => {
                return Err(ChatError::Client(ClientError::Transport(
                    "the connection ended before the server acknowledged".into(),
                )));
            }
            Err(ClientError::Timeout(_)) => {
                return Err(ChatError::Client(ClientError::Timeout(
                    "no acknowledgement from the server; the message may not have been saved"
                        .into(),
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
