//! The actor system (SPEC §8).
//!
//! - [`db::DbActor`] owns the pool, the field cipher and the keyed-hash keys; every storage call is a
//!   message to it, and it group-commits channel messages;
//! - [`hub::Hub`] is the registry: sessions, presence, the set of channels, and lazily started
//!   [`channel::ChannelActor`]s that own their subscribers and fan out;
//! - [`admin::AdminActor`] mints invites and serves the admin operations;
//! - the per-socket session actor lives in [`crate::ws`].
//!
//! Flow of a channel message: session → `DbActor` (queued for group commit) → commit → `Hub`
//! (one message per batch) → `ChannelActor` (serialize once) → every subscribed session. Nothing is
//! echoed before its commit; per channel, every subscriber sees commit order because each hop is a
//! single FIFO mailbox fed by a single sender.

pub mod admin;
pub mod channel;
pub mod db;
pub mod hub;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::{Message, Recipient};
use bytestring::ByteString;

use crate::metrics::MailboxMeter;
use crate::protocol::ws::Event;

/// Process-unique id of one WebSocket session (one socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

impl SessionKey {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionKey(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// JSON text frames serialized once and shared by every recipient.
pub type Frames = Arc<[ByteString]>;

/// Everything a session actor is sent.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Outbound {
    /// Pre-serialized events to write.
    Frames(Frames),
    /// One event for this socket only (errors, sync replies).
    Event(Box<Event>),
    /// Close the socket with this code and reason.
    Close { code: u16, reason: &'static str },
    /// The server is shutting down: refuse new sends (what is queued still commits).
    Quiesce,
}

/// How channel actors and the hub reach one session.
#[derive(Clone)]
pub struct SessionHandle {
    pub key: SessionKey,
    pub outbound: Recipient<Outbound>,
    /// Depth meter of the session mailboxes (`session` kind).
    pub meter: MailboxMeter,
}

impl SessionHandle {
    /// Queue frames without waiting; `false` if the session's mailbox is full or gone. A full mailbox
    /// means the socket cannot keep up: the caller closes it as a slow consumer.
    pub fn offer(&self, frames: Frames) -> Offer {
        match self.outbound.try_send(Outbound::Frames(frames)) {
            Ok(()) => {
                self.meter.queued();
                Offer::Queued
            }
            Err(actix::prelude::SendError::Full(_)) => Offer::Full,
            Err(actix::prelude::SendError::Closed(_)) => Offer::Gone,
        }
    }

    /// Close the socket. Bypasses the mailbox bound: a close must get through to a full mailbox.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.outbound.do_send(Outbound::Close { code, reason });
    }
}

/// Result of [`SessionHandle::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    Full,
    Gone,
}

/// Serialize one event into a shareable text frame.
pub fn frame(event: &Event) -> ByteString {
    // Serializing a struct of strings and bools cannot fail.
    ByteString::from(serde_json::to_string(event).unwrap_or_default())
}

/// Probe actors for the actor unit tests: they record what a session would be sent.
#[cfg(test)]
pub(crate) mod probe {
    use std::sync::{Arc, Mutex};

    use actix::prelude::*;

    use super::{Outbound, SessionHandle, SessionKey};
    use crate::metrics::Metrics;
    use crate::protocol::ws::Event;

    /// What a probe received.
    #[derive(Default, Debug)]
    pub struct Log {
        pub events: Vec<Event>,
        pub closes: Vec<u16>,
    }

    pub struct Probe(pub Arc<Mutex<Log>>);

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Outbound> for Probe {
        type Result = ();

        fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
            let mut log = self.0.lock().unwrap();
            match msg {
                Outbound::Frames(frames) => {
                    for f in frames.iter() {
                        log.events.push(serde_json::from_str(f).unwrap());
                    }
                }
                Outbound::Event(e) => log.events.push(*e),
                Outbound::Close { code, .. } => log.closes.push(code),
                Outbound::Quiesce => {}
            }
        }
    }

    /// Barrier: resolves once the probe has handled everything queued before it.
    #[derive(Message)]
    #[rtype(result = "()")]
    pub struct Sync;

    impl Handler<Sync> for Probe {
        type Result = ();
        fn handle(&mut self, _: Sync, _: &mut Context<Self>) {}
    }

    /// A running probe, its handle and its log.
    pub fn spawn(metrics: &Metrics) -> (Addr<Probe>, SessionHandle, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let addr = Probe(log.clone()).start();
        let handle = SessionHandle {
            key: SessionKey::next(),
            outbound: addr.clone().recipient(),
            meter: metrics.mailbox("session"),
        };
        (addr, handle, log)
    }

    /// A probe that never handles anything (its mailbox holds one message): a stalled socket.
    pub fn spawn_stalled(metrics: &Metrics) -> (SessionHandle, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let inner = log.clone();
        let addr = Probe::create(move |ctx| {
            ctx.set_mailbox_capacity(1);
            ctx.wait(futures_util::future::pending::<()>().into_actor(&Probe(inner.clone())));
            Probe(inner)
        });
        let handle = SessionHandle {
            key: SessionKey::next(),
            outbound: addr.recipient(),
            meter: metrics.mailbox("session"),
        };
        (handle, log)
    }
}
