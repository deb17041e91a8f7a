//! The delivery shard of one HTTP worker thread.
//!
//! Owns: the outboxes of the sessions living on its thread (a thread-local registry).
//! Messages: [`Deliver`] — frames for a list of its sessions, written straight into their outboxes.
//! Fan-out therefore costs one cross-thread message per worker thread instead of one per socket.
//! Mailbox: fed with `do_send` by channel actors and the hub — committed messages are never dropped;
//! the volume is bounded upstream (`DIALTONE_DB_MAX_PENDING`). Each socket's backlog is bounded by
//! its outbox: past the soft or hard bound the shard tells the session, which closes it with 1008;
//! past the hard bound the shard also stops queuing for that socket at once ([`Sink::write`]).

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
    ///
    /// The hard bound is enforced here, frame by frame: the session closes the socket only when it
    /// next runs, and until then this shard may handle every `Deliver` in its mailbox (actix drains
    /// a mailbox in one go), so checking after a batch, or leaving the cut to the session, would
    /// let one socket's queue grow by everything in flight.
    pub fn write(&self, frames: &[bytestring::ByteString]) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.overflowed() {
            return;
        }
        let mut queued = 0;
        for f in frames {
            queued = outbox.push(WsMessage::Text(f.clone()));
            if queued > self.hard_limit {
                // Never to be read in time: dropped now; the session closes with 1008.
                outbox.overflow();
                break;
            }
        }
        let level = if outbox.overflowed() {
            Some(true)
        } else if queued > self.soft_limit {
            Some(false)
        } else {
            None
        };
        if let Some(hard) = level
            && outbox.report_backlog(hard)
        {
            // why `do_send`: `report_backlog` lets one report through per bound crossed (soft,
            // then hard) until the session clears it, so a socket gets at most two.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frames::Outbox;

    /// Counts the backlog reports a session would get.
    #[derive(Default)]
    struct Reports(Vec<bool>);

    impl Actor for Reports {
        type Context = Context<Self>;
    }

    impl Handler<Outbound> for Reports {
        type Result = ();
        fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
            if let Outbound::Backlog { hard } = msg {
                self.0.push(hard);
            }
        }
    }

    #[derive(Message)]
    #[rtype(result = "Vec<bool>")]
    struct Take;

    impl Handler<Take> for Reports {
        type Result = Vec<bool>;
        fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Vec<bool> {
            std::mem::take(&mut self.0)
        }
    }

    #[actix::test]
    async fn the_hard_bound_holds_before_the_session_runs() {
        let session = Reports::default().start();
        let outbox = Outbox::new();
        let sink = Sink {
            outbox: outbox.clone(),
            session: session.clone().recipient(),
            soft_limit: 1024,
            hard_limit: 4096,
        };
        let frame = bytestring::ByteString::from("x".repeat(500));
        // Many deliveries in a row, as a shard draining its mailbox does, with no chance for the
        // session to act in between.
        for _ in 0..100 {
            sink.write(&[frame.clone(), frame.clone(), frame.clone()]);
            assert!(outbox.borrow().queued() <= 4096, "past the hard bound");
        }
        assert!(outbox.borrow().overflowed());
        assert_eq!(session.send(Take).await.unwrap(), [false, true]);
    }
}
