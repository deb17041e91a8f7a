//! The delivery shard of one HTTP worker thread.
//!
//! Owns: the outboxes of the sessions living on its thread (a thread-local registry).
//! Messages: [`Deliver`] — frames for a list of its sessions, written straight into their outboxes.
//! Fan-out therefore costs one cross-thread message per worker thread instead of one per socket.
//! Mailbox: fed with `do_send` by channel actors and the hub — committed messages are never dropped;
//! the volume is bounded upstream (`DIALTONE_DB_MAX_PENDING`). Each socket's backlog is bounded by
//! its outbox: past the soft or hard bound the shard tells the session, which closes it with 1008.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use actix_web_actors::ws::Message as WsMessage;

use super::frames::SharedOutbox;
use crate::actors::{Deliver, Outbound, SessionKey, ShardHandle};
use crate::metrics::{MailboxMeter, Metrics};

/// Where one session's frames go.
pub struct Sink {
    pub outbox: SharedOutbox,
    pub session: Recipient<Outbound>,
    pub soft_limit: usize,
    pub hard_limit: usize,
}

impl Sink {
    /// Queue frames; tell the session once when its backlog passes a bound.
    pub fn write(&self, frames: &[bytestring::ByteString]) {
        let mut outbox = self.outbox.borrow_mut();
        let mut queued = 0;
        for f in frames {
            queued = outbox.push(WsMessage::Text(f.clone()));
        }
        let level = if queued > self.hard_limit {
            Some(true)
        } else if queued > self.soft_limit {
            Some(false)
        } else {
            None
        };
        if let Some(hard) = level
            && outbox.report_backlog(hard)
        {
            self.session.do_send(Outbound::Backlog { hard });
        }
    }
}

thread_local! {
    static SINKS: RefCell<HashMap<SessionKey, Sink>> = RefCell::new(HashMap::new());
    static SHARD: RefCell<Option<ShardHandle>> = const { RefCell::new(None) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// This thread's shard, started on the current arbiter at first use.
pub fn local(metrics: &Arc<Metrics>) -> ShardHandle {
    SHARD.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some(h) = slot.as_ref() {
            return h.clone();
        }
        let meter = metrics.mailbox("shard");
        let addr = DeliveryShard {
            metrics: metrics.clone(),
            meter: meter.clone(),
        }
        .start();
        let handle = ShardHandle {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            deliver: addr.recipient(),
            meter,
        };
        *slot = Some(handle.clone());
        handle
    })
}

/// Register a session living on this thread.
pub fn register(key: SessionKey, sink: Sink) {
    SINKS.with(|s| s.borrow_mut().insert(key, sink));
}

pub fn unregister(key: SessionKey) {
    SINKS.with(|s| s.borrow_mut().remove(&key));
}

struct DeliveryShard {
    metrics: Arc<Metrics>,
    meter: MailboxMeter,
}

impl Actor for DeliveryShard {
    type Context = Context<Self>;
}

impl Handler<Deliver> for DeliveryShard {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        self.meter.handled();
        let written = SINKS.with(|sinks| {
            let sinks = sinks.borrow();
            let mut n = 0u64;
            for key in msg.keys.iter() {
                // A session that ended since is simply no longer here.
                if let Some(sink) = sinks.get(key) {
                    sink.write(&msg.frames);
                    n += 1;
                }
            }
            n
        });
        self.metrics
            .fanout_deliveries
            .inc_by(written * msg.frames.len() as u64);
    }
}
