//! What the session does with each client frame (SPEC §5): sends, broadcasts, subscriptions and
//! `sync`, each answered with its result or an error event naming the frame it answers.

use actix::prelude::*;
use bytes::Bytes;

use super::WsSession;
use crate::actors::db::{History, PersistChannelMessage, StoreBroadcast};
use crate::actors::hub::{Broadcast, Subscribe, Unsubscribe};
use crate::limits::ws::SyncTurn;
use crate::protocol::ws::{ClientFrame, Event, client_type, error_code};
use crate::service::ServiceError;
use crate::service::channels::{MAX_PAGE, PageRequest};
use crate::service::messages::{BroadcastRequest, check_channel_message};

impl WsSession {
    pub(super) fn on_text(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        let frame: ClientFrame = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("invalid frame: {e}");
                self.error(
                    error_code::INVALID_MESSAGE,
                    msg,
                    &ClientFrame::correlation(&bytes),
                    ctx,
                );
                return;
            }
        };
        let sending = matches!(
            frame.kind.as_str(),
            client_type::CHANNEL_MESSAGE_SEND | client_type::MESSAGE_BROADCAST
        );
        if sending && self.quiesced {
            return self.error(
                error_code::SERVER_ERROR,
                "server shutting down; not saved, send again after reconnecting",
                &frame,
                ctx,
            );
        }
        match frame.kind.as_str() {
            client_type::CHANNEL_MESSAGE_SEND => self.on_channel_message(frame, ctx),
            client_type::MESSAGE_BROADCAST => self.on_broadcast(frame, ctx),
            client_type::MESSAGE_SEND => self.error(
                error_code::CHANNELS_ONLY,
                "direct messages are not supported; send to a channel",
                &frame,
                ctx,
            ),
            client_type::SUBSCRIBE => self.on_subscribe(frame, true, ctx),
            client_type::UNSUBSCRIBE => self.on_subscribe(frame, false, ctx),
            client_type::SYNC => self.on_sync(frame, ctx),
            _ => {
                let msg = format!("unsupported message type `{}`", truncate(&frame.kind, 64));
                self.error(error_code::UNSUPPORTED_TYPE, msg, &frame, ctx);
            }
        }
    }

    fn on_channel_message(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let (Some(channel_id), Some(body), Some(name)) =
            (&frame.channel_id, &frame.body, &frame.sender_name_enc)
        else {
            return self.error(
                error_code::INVALID_MESSAGE,
                "channel.message.send needs channel_id, body and sender_name_enc",
                &frame,
                ctx,
            );
        };
        if uuid::Uuid::parse_str(channel_id).is_err() {
            return self.error(
                error_code::CHANNEL_NOT_FOUND,
                "channel not found",
                &frame,
                ctx,
            );
        }
        if let Err(e) = check_channel_message(body, name, frame.client_message_id.as_deref()) {
            return self.error(error_code::INVALID_MESSAGE, e.to_string(), &frame, ctx);
        }
        if let Err(refused) = self.budget.send(body.len()) {
            return self.rate_limited(refused.to_string(), refused.retry_after_secs, &frame, ctx);
        }
        let Some(origin) = self.handle.clone() else {
            return;
        };
        let msg = PersistChannelMessage {
            channel_id: channel_id.clone(),
            sender_id: self.auth.user_id.clone(),
            sender_name_enc: name.clone(),
            body: body.clone(),
            client_message_id: frame.client_message_id.clone(),
            origin,
        };
        if let Err(e) = self.db.persist(msg) {
            self.metrics.messages_rejected.inc();
            // The commit queue's mailbox is full: it drains within a commit.
            self.rate_limited(e.to_string(), 1, &frame, ctx);
        }
    }

    fn on_broadcast(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let (Some(body), Some(name), Some(public_key), Some(envelopes)) = (
            frame.body.clone(),
            frame.sender_name_enc.clone(),
            frame.public_key.clone(),
            frame.key_envelopes.clone(),
        ) else {
            return self.error(
                error_code::INVALID_MESSAGE,
                "message.broadcast needs body, sender_name_enc, public_key and key_envelopes",
                &frame,
                ctx,
            );
        };
        // Everything stored counts, the envelopes too: they are most of a broadcast to many
        // devices, and would otherwise be stored (and never pruned) outside the byte budget.
        let stored_bytes = body.len()
            + name.len()
            + envelopes
                .iter()
                .map(|(device, envelope)| device.len() + envelope.len())
                .sum::<usize>();
        if let Err(refused) = self.budget.send(stored_bytes) {
            return self.rate_limited(refused.to_string(), refused.retry_after_secs, &frame, ctx);
        }
        let req = BroadcastRequest {
            sender_id: self.auth.user_id.clone(),
            sender_device_id: self.auth.device_id.clone(),
            body,
            sender_name_enc: name,
            public_key,
            key_envelopes: *envelopes,
        };
        let db = self.db.clone();
        let hub = self.hub.clone();
        let metrics = self.metrics.clone();
        ctx.spawn(
            async move {
                let stored = db.call(StoreBroadcast { req }).await?;
                metrics.broadcasts_persisted.inc();
                hub.tell(Broadcast(stored));
                Ok::<(), ServiceError>(())
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                if let Err(e) = result {
                    act.answer(ws_error(&e), &frame, ctx);
                }
            }),
        );
    }

    fn on_subscribe(&mut self, frame: ClientFrame, subscribe: bool, ctx: &mut Context<Self>) {
        let Some(channel_id) = frame.channel_id.clone() else {
            return self.error(
                error_code::INVALID_MESSAGE,
                "channel_id is required",
                &frame,
                ctx,
            );
        };
        if let Err(refused) = self.budget.subscribe() {
            return self.rate_limited(refused.to_string(), refused.retry_after_secs, &frame, ctx);
        }
        let hub = self.hub.clone();
        let key = self.key;
        // Wait for the hub before reading the next frame, so a `sync` sent right after a
        // `subscribe` cannot miss messages committed in between.
        ctx.wait(
            async move {
                if subscribe {
                    hub.ask(Subscribe { key, channel_id }).await
                } else {
                    hub.ask(Unsubscribe { key, channel_id }).await
                }
            }
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok(Ok(())) => {}
                Ok(Err(())) => act.error(
                    error_code::CHANNEL_NOT_FOUND,
                    "channel not found",
                    &frame,
                    ctx,
                ),
                Err(_) => act.error(
                    error_code::SERVER_ERROR,
                    "server shutting down",
                    &frame,
                    ctx,
                ),
            }),
        );
    }

    /// `sync` runs one at a time per socket: the rest wait in the budget's queue, in order.
    fn on_sync(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        if frame.channel_id.is_none() {
            return self.error(
                error_code::INVALID_MESSAGE,
                "channel_id is required",
                &frame,
                ctx,
            );
        }
        // What a queued `sync` needs, and no more: up to `DIALTONE_MAX_QUEUED_SYNCS` of them wait
        // per socket, and a whole 64 KiB frame (stuffed with fields `sync` ignores) each would
        // let one socket hold a gigabyte while its first sync is slow.
        let ids = [&frame.channel_id, &frame.after, &frame.client_message_id];
        if ids
            .iter()
            .any(|v| v.as_ref().is_some_and(|v| v.len() > MAX_SYNC_ID))
        {
            return self.error(
                error_code::INVALID_MESSAGE,
                "sync's channel_id, after and client_message_id are ids (at most 128 bytes)",
                &frame,
                ctx,
            );
        }
        let sync = ClientFrame {
            kind: frame.kind.clone(),
            channel_id: frame.channel_id.clone(),
            client_message_id: frame.client_message_id.clone(),
            after: frame.after.clone(),
            after_seq: frame.after_seq,
            ..ClientFrame::default()
        };
        match self.budget.sync(sync) {
            Ok(SyncTurn::Run(frame)) => self.run_sync(frame, ctx),
            Ok(SyncTurn::Queued) => {}
            Err(refused) => {
                self.rate_limited(refused.to_string(), refused.retry_after_secs, &frame, ctx)
            }
        }
    }

    /// Start the next queued `sync`, answering those the history bucket refuses.
    fn next_sync(&mut self, ctx: &mut Context<Self>) {
        while let Some((frame, admitted)) = self.budget.sync_done() {
            match admitted {
                Ok(()) => return self.run_sync(frame, ctx),
                Err(refused) => {
                    self.rate_limited(refused.to_string(), refused.retry_after_secs, &frame, ctx)
                }
            }
        }
    }

    fn run_sync(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let Some(channel_id) = frame.channel_id.clone() else {
            return self.next_sync(ctx);
        };
        let db = self.db.clone();
        let user_id = self.auth.user_id.clone();
        let page = PageRequest {
            limit: Some(MAX_PAGE),
            after: frame.after.clone(),
            after_seq: frame.after_seq,
            ..PageRequest::default()
        };
        ctx.spawn(
            async move {
                db.call(History {
                    user_id,
                    channel_id,
                    page,
                })
                .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                match result {
                    Ok(history) => {
                        for m in history.messages {
                            let event = Event::channel_message(
                                m.id,
                                m.channel_id,
                                m.sender_id,
                                m.sender_name_enc,
                                m.body,
                                m.sent_at,
                                m.client_message_id,
                            )
                            .with_seq(m.seq);
                            act.send_event(&event, ctx);
                        }
                        act.send_event(
                            &Event::sync_complete(history.channel_id, history.has_more),
                            ctx,
                        );
                    }
                    Err(e) => act.answer(ws_error(&e), &frame, ctx),
                }
                act.next_sync(ctx);
            }),
        );
    }
}

/// The longest id a `sync` names (`channel_id`, `after`, `client_message_id`): server ids are
/// UUIDs, and `client_message_id` is at most as long.
const MAX_SYNC_ID: usize = crate::service::validate::MAX_CLIENT_MESSAGE_ID;

/// Map a service error to a WebSocket error event (internal details stay in the log).
fn ws_error(e: &ServiceError) -> Event {
    match e {
        ServiceError::Invalid(m) => Event::error(error_code::INVALID_MESSAGE, m.clone()),
        ServiceError::NotFound("channel") => {
            Event::error(error_code::CHANNEL_NOT_FOUND, "channel not found")
        }
        ServiceError::NotFound(what) => {
            Event::error(error_code::INVALID_MESSAGE, format!("{what} not found"))
        }
        // The database's slots or pool are taken: REST answers 503 with `Retry-After: 1`.
        ServiceError::Busy(m) => Event::rate_limited(*m, 1),
        ServiceError::Forbidden(m) => Event::error(error_code::INVALID_MESSAGE, *m),
        other => {
            tracing::error!(error = %other, "websocket request failed");
            Event::error(error_code::SERVER_ERROR, "internal error")
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
