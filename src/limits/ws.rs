//! The WebSocket half of the layer: one [`SessionBudget`] per socket, asked before each frame
//! that costs the server work.
//!
//! Owns: the socket's own send bucket (`DIALTONE_WS_SEND_RATE`), its slot among the user's sockets
//! (`DIALTONE_MAX_SOCKETS_PER_USER`, given back when the budget drops with its session), and its
//! `sync` queue. The message, byte, history and subscribe buckets are the user's, shared by every
//! socket of theirs through [`Limits`].
//! Sync bound: one `sync` in flight per socket; up to `DIALTONE_MAX_QUEUED_SYNCS` more wait their
//! turn (clients sync every channel at once after a reconnect), and one beyond that is refused.

use std::collections::VecDeque;
use std::sync::Arc;

use governor::DefaultDirectRateLimiter;
use governor::clock::{Clock, DefaultClock};

use super::{Limits, Refused, SocketSlot, UserLimit, label, retry_secs};
use crate::protocol::ws::ClientFrame;

pub struct SessionBudget {
    limits: Arc<Limits>,
    user_id: String,
    socket_sends: Option<DefaultDirectRateLimiter>,
    sync_running: bool,
    sync_queue: VecDeque<ClientFrame>,
    _slot: SocketSlot,
}

/// What to do with a `sync` frame.
pub enum SyncTurn {
    /// Run it now (it counted against the history bucket).
    Run(ClientFrame),
    /// Queued behind the one in flight.
    Queued,
}

impl SessionBudget {
    /// The budget of a socket holding `slot` (from [`Limits::acquire_socket`]).
    pub fn new(limits: Arc<Limits>, user_id: String, slot: SocketSlot) -> Self {
        Self {
            socket_sends: limits.socket_bucket(),
            limits,
            user_id,
            sync_running: false,
            sync_queue: VecDeque::new(),
            _slot: slot,
        }
    }

    /// A send (`channel.message.send`, `message.broadcast`) of `bytes` body bytes: the socket's
    /// bucket, then the user's message and byte buckets.
    pub fn send(&mut self, bytes: usize) -> Result<(), Refused> {
        if let Some(bucket) = &self.socket_sends
            && let Err(not_until) = bucket.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.limits.metrics.rate_limited(label::SOCKET_MESSAGES);
            return Err(Refused {
                limit: label::SOCKET_MESSAGES,
                retry_after_secs: retry_secs(wait),
            });
        }
        self.limits
            .check_user(UserLimit::Messages, &self.user_id, 1)?;
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.limits
            .check_user(UserLimit::Bytes, &self.user_id, bytes)
    }

    /// A `subscribe` or `unsubscribe`.
    pub fn subscribe(&self) -> Result<(), Refused> {
        self.limits
            .check_user(UserLimit::Subscribe, &self.user_id, 1)
    }

    /// A `sync` arrived: run it, queue it, or refuse it (queue full, or no history token).
    pub fn sync(&mut self, frame: ClientFrame) -> Result<SyncTurn, Refused> {
        if self.sync_running {
            if self.sync_queue.len() >= self.limits.config.queued_syncs {
                return Err(self.limits.cap_refused(label::SYNC_QUEUE));
            }
            self.sync_queue.push_back(frame);
            return Ok(SyncTurn::Queued);
        }
        self.limits
            .check_user(UserLimit::History, &self.user_id, 1)?;
        self.sync_running = true;
        Ok(SyncTurn::Run(frame))
    }

    /// The running `sync` finished: the next queued one, if any, with whether the history bucket
    /// let it run (a refused one is answered by the caller, and the next is tried after it).
    pub fn sync_done(&mut self) -> Option<(ClientFrame, Result<(), Refused>)> {
        self.sync_running = false;
        let frame = self.sync_queue.pop_front()?;
        let admitted = self.limits.check_user(UserLimit::History, &self.user_id, 1);
        self.sync_running = admitted.is_ok();
        Some((frame, admitted))
    }
}
