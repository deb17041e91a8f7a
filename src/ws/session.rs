//! The session actor: one per WebSocket.
//!
//! Owns: its socket's [`Outbox`], its identity ([`AuthContext`]), its [`SessionBudget`] (rate
//! limits of its frames and its `sync` queue, see `crate::limits::ws`).
//! Messages: [`Outbound`] (its own error events, close orders, backlog reports), [`PeerGone`], and
//! the inbound frame stream. Fan-out frames do not pass through this mailbox: the thread's delivery
//! shard ([`super::shard`]) writes them straight into the outbox.
//! Mailbox: capacity `DIALTONE_WS_MAILBOX`; its senders use `do_send` (one error per refused send,
//! one close, one backlog report per bound crossed), so what it holds is bounded by the socket's
//! own traffic.
//! Outbox bound (like Redis' output-buffer limits): a queue above `DIALTONE_WS_OUTBOX_HARD_BYTES`,
//! or above `DIALTONE_WS_OUTBOX_BYTES` for longer than `DIALTONE_WS_OUTBOX_GRACE_MS`, means the
//! reader is not keeping up: the queued frames are discarded, a 1008 close frame is sent and the
//! socket closes — counted in metrics, never a silent drop. The client catches up with `sync` or
//! history.
//! Lifecycle: registers with the hub in `started` and reports when the hub has it (the upgrade
//! handler sends the 101 only then, so a client can rely on its socket from the first frame, and
//! a REST change that follows the upgrade reaches it); deregisters in `stopped`, always.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{CloseCode, CloseReason, Message as WsMessage, ProtocolError};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::frames::{InMessage, PeerGone, SharedOutbox};
use super::shard::{self, Sink};
use crate::actors::db::DbHandle;
use crate::actors::hub::{Connect, Disconnect, HubHandle};
use crate::actors::{Outbound, SessionHandle, SessionKey, frame};
use crate::config::WsConfig;
use crate::limits::ws::SessionBudget;
use crate::metrics::Metrics;
use crate::protocol::ws::{ClientFrame, Event, close_code, error_code};
use crate::service::auth::AuthContext;

mod requests;

pub struct WsSession {
    key: SessionKey,
    auth: AuthContext,
    subscribe_all: bool,
    hub: HubHandle,
    db: DbHandle,
    outbox: SharedOutbox,
    config: Arc<WsConfig>,
    metrics: Arc<Metrics>,
    handle: Option<SessionHandle>,
    last_heard: Instant,
    budget: SessionBudget,
    closing: bool,
    /// Shutting down: sends are refused.
    quiesced: bool,
    /// A backlog check is scheduled (the outbox went over its soft bound).
    backlog_check: bool,
    /// Told once the hub has registered this session (`false`: the hub is gone).
    registered: Option<oneshot::Sender<bool>>,
}

impl WsSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth: AuthContext,
        subscribe_all: bool,
        hub: HubHandle,
        db: DbHandle,
        outbox: SharedOutbox,
        config: Arc<WsConfig>,
        metrics: Arc<Metrics>,
        budget: SessionBudget,
        registered: oneshot::Sender<bool>,
    ) -> Self {
        Self {
            key: SessionKey::next(),
            auth,
            subscribe_all,
            hub,
            db,
            outbox,
            config,
            metrics,
            handle: None,
            last_heard: Instant::now(),
            budget,
            closing: false,
            quiesced: false,
            backlog_check: false,
            registered: Some(registered),
        }
    }

    /// Write one event to this socket.
    fn send_event(&mut self, event: &Event, ctx: &mut Context<Self>) {
        let text = frame(event);
        self.write(WsMessage::Text(text), ctx);
    }

    fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        request: &ClientFrame,
        ctx: &mut Context<Self>,
    ) {
        self.answer(Event::error(code, message), request, ctx);
    }

    /// Refused by a limit or a full queue: `rate_limited` with the seconds to wait.
    fn rate_limited(
        &mut self,
        message: impl Into<String>,
        retry_after_secs: u64,
        request: &ClientFrame,
        ctx: &mut Context<Self>,
    ) {
        self.answer(Event::rate_limited(message, retry_after_secs), request, ctx);
    }

    /// Send an error event naming the frame it answers, counted by its code.
    fn answer(&mut self, event: Event, request: &ClientFrame, ctx: &mut Context<Self>) {
        if let Some(code) = event.code.as_deref() {
            self.metrics.ws_error(known_code(code));
        }
        let event = event.for_request(
            request.channel_id.clone(),
            request.client_message_id.clone(),
        );
        self.send_event(&event, ctx);
    }

    fn write(&mut self, msg: WsMessage, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let queued = self.outbox.borrow_mut().push(msg);
        if queued > self.config.outbox_hard_bytes {
            self.on_backlog(true, ctx);
        } else if queued > self.config.outbox_bytes {
            self.on_backlog(false, ctx);
        }
    }

    /// The outbox passed its hard bound (close now) or its soft bound: a burst may pass it for a
    /// moment, but a reader that has not caught up within the grace period is a slow consumer.
    fn on_backlog(&mut self, hard: bool, ctx: &mut Context<Self>) {
        if hard {
            let queued = self.outbox.borrow().queued();
            return self.slow_consumer(queued, ctx);
        }
        if self.backlog_check {
            return;
        }
        self.backlog_check = true;
        ctx.run_later(self.config.outbox_grace, |act, ctx| {
            act.backlog_check = false;
            let queued = act.outbox.borrow().queued();
            if queued > act.config.outbox_bytes {
                act.slow_consumer(queued, ctx);
            } else {
                act.outbox.borrow_mut().clear_backlog_report();
            }
        });
    }

    fn slow_consumer(&mut self, queued: usize, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        tracing::info!(session = self.key.0, queued, "slow consumer closed");
        self.metrics.slow_consumer_closes.inc();
        // What is queued will never be read in time: drop it so the close frame goes next.
        self.outbox.borrow_mut().discard();
        self.close(close_code::POLICY, "slow consumer", ctx);
    }

    /// Start the closing handshake (RFC 6455 §7.1.2): leave the broker at once, send a close frame
    /// after what is queued, and keep the connection until the peer answers with its close frame
    /// (or `DIALTONE_WS_CLOSE_TIMEOUT_SECS` pass) so the close frame is not lost behind a backlog.
    fn close(&mut self, code: u16, why: &str, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.deregister();
        self.outbox.borrow_mut().push_close(reason(code, why));
        ctx.run_later(self.config.close_timeout, |act, ctx| {
            tracing::debug!(
                session = act.key.0,
                "no close reply; dropping the connection"
            );
            act.outbox.borrow_mut().abort();
            ctx.stop();
        });
    }

    /// Leave the hub (and so every channel), once.
    fn deregister(&mut self) {
        if self.handle.take().is_some() {
            self.hub.tell(Disconnect(self.key));
        }
    }
}

/// The metrics label of an error code another actor chose (labels are `'static`).
fn known_code(code: &str) -> &'static str {
    match code {
        error_code::CHANNEL_NOT_FOUND => error_code::CHANNEL_NOT_FOUND,
        error_code::RATE_LIMITED => error_code::RATE_LIMITED,
        error_code::INVALID_MESSAGE => error_code::INVALID_MESSAGE,
        error_code::CHANNELS_ONLY => error_code::CHANNELS_ONLY,
        error_code::UNSUPPORTED_TYPE => error_code::UNSUPPORTED_TYPE,
        _ => error_code::SERVER_ERROR,
    }
}

fn reason(code: u16, why: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(why.to_owned()),
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The connection slot (`ws_connections`) was taken by the upgrade handler.
        self.metrics.ws_sessions_total.inc();
        let outbound: Recipient<Outbound> = ctx.address().recipient();
        let handle = SessionHandle {
            key: self.key,
            outbound: outbound.clone(),
            shard: shard::local(&self.metrics),
        };
        shard::register(
            self.key,
            Sink {
                outbox: self.outbox.clone(),
                session: outbound,
                soft_limit: self.config.outbox_bytes,
                hard_limit: self.config.outbox_hard_bytes,
            },
        );
        self.handle = Some(handle.clone());
        self.outbox
            .borrow_mut()
            .set_peer_gone(ctx.address().recipient());
        let connect = Connect {
            handle,
            user_id: self.auth.user_id.clone(),
            device_id: self.auth.device_id.clone(),
            db_session_id: self.auth.session_id.clone(),
            subscribe_all: self.subscribe_all,
        };
        let hub = self.hub.clone();
        let connect = async move { hub.ask(connect).await };
        // Nothing else runs (no frame is read) until the hub has the session.
        ctx.wait(connect.into_actor(self).map(|result, act, ctx| {
            let registered = result.is_ok();
            if let Some(tx) = act.registered.take() {
                let _ = tx.send(registered);
            }
            if !registered {
                act.closing = true;
                ctx.stop();
            }
        }));

        let ping_every = self.config.ping_interval;
        let idle = self.config.idle_timeout;
        ctx.run_interval(ping_every, move |act, ctx| {
            if act.last_heard.elapsed() > idle {
                tracing::debug!(session = act.key.0, "idle timeout");
                // The peer is not reading either: do not wait for a close handshake.
                act.closing = true;
                act.outbox.borrow_mut().abort();
                ctx.stop();
                return;
            }
            if act.closing {
                return;
            }
            act.write(WsMessage::Ping(Bytes::new()), ctx);
        });

        let left = (self.auth.expires_at.0 - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        ctx.run_later(left, |act, ctx| {
            act.close(close_code::NORMAL, "session expired", ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deregister();
        shard::unregister(self.key);
        self.outbox.borrow_mut().finish();
        self.metrics.ws_connections.dec();
    }
}

impl Handler<Outbound> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        match msg {
            Outbound::Event(mut event) => {
                if let Some(code) = event.code.as_deref() {
                    let code = known_code(code);
                    self.metrics.ws_error(code);
                    // Refusals from other actors (a full commit queue) are momentary: the queue
                    // drains within a commit, so a second is what REST's 503 says too.
                    if code == error_code::RATE_LIMITED && event.retry_after.is_none() {
                        event.retry_after = Some(1);
                    }
                }
                self.send_event(&event, ctx);
            }
            Outbound::Close { code, reason } => self.close(code, reason, ctx),
            Outbound::Quiesce => self.quiesced = true,
            Outbound::Backlog { hard } => self.on_backlog(hard, ctx),
        }
    }
}

impl Handler<PeerGone> for WsSession {
    type Result = ();

    fn handle(&mut self, _: PeerGone, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl StreamHandler<Result<InMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<InMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        if self.closing && !matches!(item, Ok(InMessage::Close(_)) | Err(_)) {
            return;
        }
        match item {
            Ok(InMessage::Text(bytes)) => self.on_text(bytes, ctx),
            Ok(InMessage::Binary) => {
                self.metrics.ws_error(error_code::INVALID_MESSAGE);
                self.send_event(
                    &Event::error(
                        error_code::INVALID_MESSAGE,
                        "binary frames are not supported; send JSON text",
                    ),
                    ctx,
                );
            }
            Ok(InMessage::Ping(payload)) => self.write(WsMessage::Pong(payload), ctx),
            Ok(InMessage::Pong) => {}
            // The peer's half of the closing handshake (or its own start of one): answer if we
            // have not, then end the stream once our close frame is written.
            Ok(InMessage::Close(_)) => {
                self.close(close_code::NORMAL, "bye", ctx);
                ctx.stop();
            }
            // The inbound stream cannot be trusted any more: send the close frame and end.
            Err(ProtocolError::Overflow) => {
                self.close(close_code::TOO_BIG, "frame too large", ctx);
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(session = self.key.0, error = %e, "websocket protocol error");
                self.close(1002, "protocol error", ctx);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
