//! The database actor: sole owner of the connection pool, the field cipher and the keyed-hash keys
//! (the [`Store`]). Every storage call, field encryption and HMAC-indexed lookup is a message to it.
//!
//! Files: this one holds the actor, its handle and its limits; [`commit`] the group commit;
//! [`ops`] the request path and every operation.
//!
//! Messages handled: one request message per service operation (see [`ops`]; each
//! runs concurrently with the others as its own future), [`PersistChannelMessage`] (group commit),
//! [`AttachFanout`] and [`Drain`].
//!
//! Bounds and overflow policy:
//! - at most `DIALTONE_DB_MAX_INFLIGHT` operations run or wait in the mailbox at once: a caller
//!   ([`DbHandle::call`]) takes a slot *before* sending, waiting in FIFO order, and its whole call
//!   (slot, mailbox, operation) is bounded by `DIALTONE_DB_TIMEOUT_MS` × 4, then `503`. A caller
//!   that gives up (timeout, client gone) before its operation started cancels it: it never runs.
//!   A started operation runs to its end, bounded by the statement timeout (PostgreSQL) or the
//!   busy timeout (SQLite). The actor itself never parks, so the group commit in flight keeps
//!   being polled whatever the request load;
//! - mailbox capacity `DIALTONE_DB_MAILBOX`: [`DbHandle::persist`] never waits: a full mailbox
//!   refuses the message with `rate_limited`;
//! - at most `DIALTONE_DB_MAX_PENDING` channel messages wait for a group commit; beyond it new ones
//!   are refused with `rate_limited` (the sender was never acknowledged, so nothing is lost).
//!
//! Group commit: channel messages queue in one of `DIALTONE_DB_COMMIT_LANES` lanes, chosen by a
//! hash of their channel (so a channel always uses the same lane). Each lane commits one batch
//! (≤ `DIALTONE_DB_BATCH_MAX`) at a time, in one transaction on a connection of its own, and its
//! next batch forms while it commits; lanes commit side by side, and as they never share a
//! channel, their counter locks never meet. A lane starts alongside another lane's commit only
//! when that pays (see `lanes`): with a backlog, or when the other commit is slow. Only after the commit is a batch handed to the hub
//! for fan-out (the echo is the acknowledgement): per channel, in commit order.
//! A resend of a stored `(sender, client_message_id)` is not stored again: its sender alone gets
//! the original (same id, same `sent_at`) as the echo.
//! `sent_at` is assigned here, strictly increasing as batches form, so a channel's history order
//! equals its commit order (across channels, lanes may commit in either order).

mod commit;
mod lanes;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::sync::{Semaphore, oneshot};

use super::{Outbound, SessionHandle};
use crate::db::types::Time;
use crate::metrics::{MailboxMeter, Metrics};
use crate::service::{ServiceError, ServiceResult, Store};

pub use commit::{
    CommittedBatch, CommittedMessage, FanoutGauge, FanoutTicket, PersistChannelMessage,
};
use lanes::Lane;
pub use lanes::commit_lane;
use ops::Request;
pub use ops::*;

/// Limits of the database actor.
#[derive(Debug, Clone)]
pub struct DbActorConfig {
    pub mailbox: usize,
    pub max_inflight: usize,
    pub batch_max: usize,
    /// Group commits in flight at most (1 on SQLite); see `lanes` for when they overlap.
    pub commit_lanes: usize,
    /// Channel messages waiting for a commit, over all lanes.
    pub max_pending: usize,
    /// How long a caller waits for its answer before `503`.
    pub call_timeout: Duration,
    /// The longest one group commit may take (`DIALTONE_DB_STATEMENT_TIMEOUT_MS`).
    pub commit_timeout: Duration,
}

pub struct DbActor {
    store: Arc<Store>,
    config: DbActorConfig,
    inflight: Arc<Semaphore>,
    mailbox: MailboxMeter,
    metrics: Arc<Metrics>,
    lanes: Vec<Lane>,
    last_sent_at: DateTime<Utc>,
    fanout: Option<(Recipient<CommittedBatch>, MailboxMeter)>,
    /// Committed messages not yet delivered (counted with `pending` against `max_pending`).
    in_fanout: FanoutGauge,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// A wake-up is set for lanes held back from overlapping (see `lanes`).
    overlap_wake: bool,
}

impl DbActor {
    /// Start the actor on its own arbiter (thread); returns its handle and the arbiter, which the
    /// owner stops (closing the pool) at shutdown.
    pub fn start(
        store: Store,
        config: DbActorConfig,
        metrics: Arc<Metrics>,
    ) -> (DbHandle, Arbiter) {
        let arbiter = Arbiter::new();
        let mailbox = metrics.mailbox("db");
        let cfg = config.clone();
        let meter = mailbox.clone();
        let slots = Arc::new(Semaphore::new(config.max_inflight));
        let inflight = slots.clone();
        let timeouts = metrics.db_call_timeouts.clone();
        let addr = DbActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(cfg.mailbox);
            let lanes = (0..cfg.commit_lanes.max(1))
                .map(|_| Lane::default())
                .collect();
            DbActor {
                store: Arc::new(store),
                inflight,
                config: cfg,
                mailbox: meter,
                metrics,
                lanes,
                last_sent_at: DateTime::<Utc>::MIN_UTC,
                fanout: None,
                in_fanout: FanoutGauge::default(),
                drain_waiters: Vec::new(),
                overlap_wake: false,
            }
        });
        (
            DbHandle {
                addr,
                meter: mailbox,
                timeout: config.call_timeout,
                slots,
                timeouts,
            },
            arbiter,
        )
    }

    /// Whether a group commit or an operation may be abandoned half-way (a transaction then rolls
    /// back and the pool discards the connection). Not on SQLite: its statements run on a blocking
    /// thread that cannot be interrupted, and diesel-async's wrapper waits for them when dropped —
    /// which panics on the actor's current-thread runtime. The busy timeout bounds it there.
    fn abandonable(&self) -> bool {
        self.store.pool.backend() == crate::db::Backend::Postgres
    }

    /// A `sent_at` strictly after the previous one, at PostgreSQL's microsecond precision.
    fn next_sent_at(&mut self) -> Time {
        let now = Utc::now()
            .duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or_else(|_| Utc::now());
        let t = if now > self.last_sent_at {
            now
        } else {
            self.last_sent_at + TimeDelta::microseconds(1)
        };
        self.last_sent_at = t;
        Time(t)
    }
}

impl Actor for DbActor {
    type Context = Context<Self>;
}

impl Handler<super::liveness::Probe> for DbActor {
    type Result = ();
    fn handle(&mut self, _: super::liveness::Probe, _: &mut Context<Self>) {}
}

/// Cheap, cloneable access to the database actor.
#[derive(Clone)]
pub struct DbHandle {
    addr: Addr<DbActor>,
    meter: MailboxMeter,
    timeout: Duration,
    /// Operation slots (`DIALTONE_DB_MAX_INFLIGHT`), taken by callers before they send.
    slots: Arc<Semaphore>,
    timeouts: prometheus_client::metrics::counter::Counter,
}

impl DbHandle {
    /// Run one operation and wait for its result. Overload, a stopped actor or an operation that
    /// outlives the call timeout is `Busy` (503); an operation not started by then never runs.
    pub async fn call<Op: DbOp>(&self, op: Op) -> ServiceResult<Op::Output> {
        self.call_with(op, None).await
    }

    /// [`DbHandle::call`], and `then` with the result once the operation succeeded — run by the
    /// operation itself, so it still runs when this call timed out after the operation started,
    /// or the caller (an HTTP handler whose client went away) was dropped. For the notices a
    /// committed change owes the hub: a revocation whose notice is lost would leave the revoked
    /// socket open, and a retry finds nothing left to revoke.
    pub async fn call_then<Op: DbOp>(
        &self,
        op: Op,
        then: impl FnOnce(&Op::Output) + Send + 'static,
    ) -> ServiceResult<Op::Output> {
        self.call_with(op, Some(Box::new(then))).await
    }

    async fn call_with<Op: DbOp>(
        &self,
        op: Op,
        then: Option<ops::Then<Op::Output>>,
    ) -> ServiceResult<Op::Output> {
        let call = async {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ServiceError::Busy("server shutting down"))?;
            let (reply, answer) = oneshot::channel();
            self.meter.queued();
            let request = Request {
                op,
                slot,
                reply,
                then,
            };
            if self.addr.send(request).await.is_err() {
                self.meter.handled();
                return Err(ServiceError::Busy("server shutting down"));
            }
            answer
                .await
                .unwrap_or(Err(ServiceError::Busy("server shutting down")))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                self.timeouts.inc();
                Err(ServiceError::Busy("database busy; retry later"))
            }
        }
    }

    /// Queue a channel message for group commit without waiting. `Err` when the actor's mailbox is
    /// full or closed (the caller answers `rate_limited`).
    pub fn persist(&self, msg: PersistChannelMessage) -> Result<(), ServiceError> {
        self.meter.queued();
        self.addr.try_send(msg).map_err(|_| {
            self.meter.handled();
            ServiceError::Busy("server busy; retry later")
        })
    }

    /// Route committed batches to the broker.
    pub fn attach_fanout(&self, fanout: Recipient<CommittedBatch>, meter: MailboxMeter) {
        // why `do_send`: once, at startup, before any traffic.
        self.addr.do_send(AttachFanout(fanout, meter));
    }

    /// The liveness probe's way in (`actors::liveness`): answered by the actor, not the database.
    pub fn probe(&self) -> Recipient<super::liveness::Probe> {
        self.addr.clone().recipient()
    }

    /// Resolve once every queued message is committed (or rejected) and no operation runs.
    pub async fn drain(&self) {
        let _ = self.addr.send(Drain).await;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct AttachFanout(Recipient<CommittedBatch>, MailboxMeter);

impl Handler<AttachFanout> for DbActor {
    type Result = ();

    fn handle(&mut self, msg: AttachFanout, _: &mut Context<Self>) {
        self.fanout = Some((msg.0, msg.1));
    }
}

/// Wait until the group-commit queue is empty and nothing is in flight (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
struct Drain;

impl Handler<Drain> for DbActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.idle() {
            let _ = tx.send(());
        } else {
            self.drain_waiters.push(tx);
        }
        let sem = self.inflight.clone();
        let all = u32::try_from(self.config.max_inflight).unwrap_or(u32::MAX);
        Box::pin(async move {
            let _ = rx.await;
            let _ = sem.acquire_many(all).await;
        })
    }
}
