//! The database actor: sole owner of the connection pool, the field cipher and the keyed-hash keys
//! (the [`Store`]). Every storage call, field encryption and HMAC-indexed lookup is a message to it.
//!
//! Messages handled: one request message per service operation (see [`db_requests!`] below; each
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
//! Group commit: channel messages queue in `pending`; one batch (≤ `DIALTONE_DB_BATCH_MAX`) commits
//! at a time, in one transaction, and the next batch forms while it commits. Only after the commit
//! is the batch handed to the hub for fan-out (the echo is the acknowledgement), in commit order.
//! A resend of a stored `(sender, client_message_id)` is not stored again: its sender alone gets
//! the original (same id, same `sent_at`) as the echo.
//! `sent_at` is assigned here, strictly increasing, so history order equals commit order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Outbound, SessionHandle};
use crate::db::models::MessageRow;
use crate::db::types::Time;
use crate::metrics::{MailboxMeter, Metrics};
use crate::protocol::rest::{
    Channel, ChannelKeyEnvelope, ChannelKeysUpload, CreateDeviceRequest, CreateInviteRequest,
    Device, DeviceKeysResponse, DirectoryKeyEnvelope, DirectoryKeysUpload, InviteResponse,
    LoginRequest, MessagesResponse, Profile, RegisterRequest, User,
};
use crate::protocol::ws::{Event, error_code};
use crate::service::auth::{self, AuthContext, LoginCandidate, LoginGrant, SignedIn};
use crate::service::channels::{self, PageRequest};
use crate::service::invites::{self, InviteInfo};
use crate::service::messages::{self, BroadcastRequest, StoredBroadcast};
use crate::service::rekey::{self, RekeyReport};
use crate::service::{ServiceError, ServiceResult, Store, devices, keys, users};

/// Limits of the database actor.
#[derive(Debug, Clone)]
pub struct DbActorConfig {
    pub mailbox: usize,
    pub max_inflight: usize,
    pub batch_max: usize,
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
    pending: VecDeque<PersistChannelMessage>,
    flushing: bool,
    last_sent_at: DateTime<Utc>,
    fanout: Option<(Recipient<CommittedBatch>, MailboxMeter)>,
    drain_waiters: Vec<oneshot::Sender<()>>,
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
            DbActor {
                store: Arc::new(store),
                inflight,
                config: cfg,
                mailbox: meter,
                metrics,
                pending: VecDeque::new(),
                flushing: false,
                last_sent_at: DateTime::<Utc>::MIN_UTC,
                fanout: None,
                drain_waiters: Vec::new(),
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

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let n = self.pending.len().min(self.config.batch_max);
        if n == 0 {
            self.flushing = false;
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
            return;
        }
        self.flushing = true;
        let mut rows = Vec::with_capacity(n);
        let mut origins = HashMap::with_capacity(n);
        for msg in self.pending.drain(..n).collect::<Vec<_>>() {
            let row = MessageRow {
                id: uuid::Uuid::now_v7().to_string(),
                channel_id: msg.channel_id,
                sender_id: msg.sender_id,
                sender_name_enc: msg.sender_name_enc,
                body: msg.body,
                sent_at: self.next_sent_at(),
                client_message_id: msg.client_message_id,
            };
            origins.insert(
                row.id.clone(),
                Origin {
                    session: msg.origin,
                    channel_id: row.channel_id.clone(),
                    client_message_id: row.client_message_id.clone(),
                },
            );
            rows.push(row);
        }
        let store = self.store.clone();
        let started = Instant::now();
        let limit = self.abandonable().then_some(self.config.commit_timeout);
        ctx.spawn(commit_isolating(store, rows, limit).into_actor(self).map(
            move |result, act, ctx| {
                act.finish_batch(result, origins, started);
                act.flush(ctx);
            },
        ));
    }

    fn finish_batch(
        &mut self,
        result: ServiceResult<Isolated>,
        mut origins: HashMap<String, Origin>,
        started: Instant,
    ) {
        match result {
            Ok(Isolated { committed, refused }) => {
                for row in refused {
                    if let Some(origin) = origins.remove(&row.id) {
                        self.metrics.messages_rejected.inc();
                        origin.reject(error_code::SERVER_ERROR, "message not saved; please retry");
                    }
                }
                let n = committed.rows.len();
                self.metrics
                    .db_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.db_batch_size.observe(n as f64);
                self.metrics.messages_persisted.inc_by(n as u64);
                for row in committed.missing_channel {
                    if let Some(origin) = origins.remove(&row.id) {
                        self.metrics.messages_rejected.inc();
                        origin.reject(error_code::CHANNEL_NOT_FOUND, "channel not found");
                    }
                }
                // A resend's echo is its original, to the resender only: everyone else already
                // had it when it first committed.
                for dup in committed.duplicates {
                    if let Some(origin) = origins.remove(&dup.resent_id) {
                        origin.echo_original(&dup.original);
                    }
                }
                if n == 0 {
                    return;
                }
                let batch: Vec<CommittedMessage> = committed
                    .rows
                    .into_iter()
                    .filter_map(|row| {
                        let origin = origins.remove(&row.id)?.session;
                        Some(CommittedMessage { row, origin })
                    })
                    .collect();
                match &self.fanout {
                    // do_send: committed messages are never dropped; the volume in flight is bounded
                    // upstream by DIALTONE_DB_MAX_PENDING.
                    Some((hub, meter)) => {
                        meter.queued();
                        hub.do_send(CommittedBatch(batch));
                    }
                    None => tracing::error!("group commit finished with no fan-out attached"),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = origins.len(), "group commit failed; senders told to retry");
                self.metrics.messages_rejected.inc_by(origins.len() as u64);
                for origin in origins.values() {
                    origin.reject(error_code::SERVER_ERROR, "message not saved; please retry");
                }
            }
        }
    }
}

/// A group commit's outcome once a refused batch has been split up.
struct Isolated {
    committed: messages::Committed,
    /// Rows the database refused on their own (each was retried alone).
    refused: Vec<MessageRow>,
}

/// Commit `rows` as one batch. When the database refuses the batch (a constraint, a value it cannot
/// hold) rather than being unreachable, retry its rows one at a time, in order and before the next
/// batch starts, so one bad row fails only its own sender and commit order is kept.
///
/// A database that stopped answering must not hold the queue forever: past `limit` the senders
/// hear `server_error` (the outcome is unknown to them, so they retry) and the next batch starts.
/// (`None` on SQLite, where a commit cannot be abandoned; its busy timeout bounds it.)
async fn commit_isolating(
    store: Arc<Store>,
    rows: Vec<MessageRow>,
    limit: Option<Duration>,
) -> ServiceResult<Isolated> {
    let bounded = |rows: Vec<MessageRow>| {
        let store = store.clone();
        async move {
            let commit = messages::commit_batch(&store, rows);
            let Some(limit) = limit else {
                return commit.await;
            };
            match tokio::time::timeout(limit, commit).await {
                Ok(result) => result,
                Err(_) => Err(ServiceError::Db(crate::db::DbError::Unavailable(format!(
                    "group commit took longer than {} ms",
                    limit.as_millis()
                )))),
            }
        }
    };
    // Kept only to split the batch if it is refused; SQLite's insert copies the rows anyway.
    let retry = (rows.len() > 1).then(|| rows.clone());
    let err = match bounded(rows).await {
        Ok(committed) => {
            return Ok(Isolated {
                committed,
                refused: Vec::new(),
            });
        }
        Err(e) => e,
    };
    let Some(rows) = retry.filter(|_| is_refusal(&err)) else {
        return Err(err);
    };
    tracing::warn!(error = %err, batch = rows.len(), "group commit refused; committing its rows one by one");
    let mut out = Isolated {
        committed: messages::Committed::default(),
        refused: Vec::new(),
    };
    let mut reachable = true;
    for row in rows {
        if !reachable {
            out.refused.push(row);
            continue;
        }
        match bounded(vec![row.clone()]).await {
            Ok(one) => {
                out.committed.rows.extend(one.rows);
                out.committed.missing_channel.extend(one.missing_channel);
                out.committed.duplicates.extend(one.duplicates);
            }
            Err(e) => {
                if is_refusal(&e) {
                    tracing::error!(error = %e, message_id = %row.id, "message refused by the database");
                } else {
                    // Unreachable now: the rest is refused too; what committed is fanned out.
                    tracing::error!(error = %e, "group commit failed while isolating a refused row");
                    reachable = false;
                }
                out.refused.push(row);
            }
        }
    }
    Ok(out)
}

fn abandoned(limit: Duration) -> ServiceError {
    ServiceError::Db(crate::db::DbError::Unavailable(format!(
        "database operation abandoned after {} ms without an answer",
        limit.as_millis()
    )))
}

/// The database answered and said no (as opposed to: it could not be reached or timed out).
fn is_refusal(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Db(crate::db::DbError::Query(_)))
}

/// Who sent a message of a batch, and the correlation fields its refusal must carry.
struct Origin {
    session: SessionHandle,
    channel_id: String,
    client_message_id: Option<String>,
}

impl Origin {
    /// `do_send`: one event per resend, bounded like every send by `DIALTONE_DB_MAX_PENDING`.
    fn echo_original(&self, row: &MessageRow) {
        self.session
            .outbound
            .do_send(Outbound::Event(Box::new(Event::channel_message(
                row.id.clone(),
                row.channel_id.clone(),
                row.sender_id.clone(),
                row.sender_name_enc.clone(),
                row.body.clone(),
                row.sent_at.wire(),
                row.client_message_id.clone(),
            ))));
    }

    fn reject(&self, code: &'static str, message: &str) {
        self.session.outbound.do_send(Outbound::Event(Box::new(
            Event::error(code, message).for_request(
                Some(self.channel_id.clone()),
                self.client_message_id.clone(),
            ),
        )));
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
        let call = async {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ServiceError::Busy("server shutting down"))?;
            let (reply, answer) = oneshot::channel();
            self.meter.queued();
            if self.addr.send(Request { op, slot, reply }).await.is_err() {
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

/// A channel message waiting for its group commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PersistChannelMessage {
    pub channel_id: String,
    pub sender_id: String,
    pub sender_name_enc: String,
    pub body: String,
    pub client_message_id: Option<String>,
    /// Who gets errors, and the echo if it is not subscribed to the channel.
    pub origin: SessionHandle,
}

/// One committed message with the session that sent it.
pub struct CommittedMessage {
    pub row: MessageRow,
    pub origin: SessionHandle,
}

/// A committed batch, in commit order, for fan-out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CommittedBatch(pub Vec<CommittedMessage>);

impl Handler<PersistChannelMessage> for DbActor {
    type Result = ();

    fn handle(&mut self, msg: PersistChannelMessage, ctx: &mut Context<Self>) {
        self.mailbox.handled();
        if self.pending.len() >= self.config.max_pending {
            self.metrics.messages_rejected.inc();
            msg.origin.outbound.do_send(Outbound::Event(Box::new(
                Event::error(error_code::RATE_LIMITED, "server busy; retry later")
                    .for_request(Some(msg.channel_id.clone()), msg.client_message_id.clone()),
            )));
            return;
        }
        self.pending.push_back(msg);
        if !self.flushing {
            self.flush(ctx);
        }
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
        if !self.flushing && self.pending.is_empty() {
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

/// One database operation: a service call on the [`Store`], run by the actor as its own future.
pub trait DbOp: Send + 'static {
    type Output: Send + 'static;
    fn run(self, store: Arc<Store>) -> BoxFuture<'static, ServiceResult<Self::Output>>;
}

/// An operation on its way to the actor, with the caller's slot and reply channel.
struct Request<Op: DbOp> {
    op: Op,
    slot: OwnedSemaphorePermit,
    reply: oneshot::Sender<ServiceResult<Op::Output>>,
}

impl<Op: DbOp> Message for Request<Op> {
    type Result = ();
}

impl<Op: DbOp> Handler<Request<Op>> for DbActor {
    type Result = ();

    fn handle(&mut self, req: Request<Op>, ctx: &mut Context<Self>) {
        self.mailbox.handled();
        let Request { op, slot, reply } = req;
        if reply.is_closed() {
            // The caller gave up while this waited in the mailbox: do not start it.
            return;
        }
        let store = self.store.clone();
        // A started operation runs to its end, holding its slot: the database really is busy
        // with it. Its statements are bounded by the statement timeout (PostgreSQL) or the busy
        // timeout (SQLite). Only a PostgreSQL that stopped answering altogether (no reset, so
        // neither that timeout nor TCP fires) gets it abandoned, well after the statement
        // timeout would have ended it: the pool then discards the connection on its next
        // checkout. SQLite cannot abandon (see [`DbActor::abandonable`]).
        let abandon_after = self
            .abandonable()
            .then(|| self.config.call_timeout + self.config.commit_timeout);
        ctx.spawn(
            async move {
                let result = match abandon_after {
                    None => op.run(store).await,
                    Some(limit) => tokio::time::timeout(limit, op.run(store))
                        .await
                        .unwrap_or_else(|_| Err(abandoned(limit))),
                };
                let _ = reply.send(result);
                drop(slot);
            }
            .into_actor(self),
        );
    }
}

/// Declares one operation type per service call: its fields, output and body.
macro_rules! db_requests {
    ($(
        $(#[$doc:meta])*
        $name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty => |$store:ident, $msg:ident| $body:expr;
    )*) => {$(
        $(#[$doc])*
        pub struct $name { $(pub $field: $ty),* }

        impl DbOp for $name {
            type Output = $out;

            #[allow(unused_variables)]
            fn run(self, store: Arc<Store>) -> BoxFuture<'static, ServiceResult<$out>> {
                Box::pin(async move {
                    let $msg = self;
                    let $store: &Store = &store;
                    $body.await
                })
            }
        }
    )*};
}

db_requests! {
    /// `POST /auth/register`, before hashing: can this registration succeed?
    CheckRegistration { req: RegisterRequest } -> () => |s, m| async move { auth::check_registration(s, &m.req).await };
    /// `POST /auth/register`, with the password already hashed.
    Register { req: RegisterRequest, password_hash: String } -> SignedIn => |s, m| auth::register(s, m.req, m.password_hash);
    /// `POST /auth/login`, before the password check.
    FindLoginCandidate { req: LoginRequest } -> LoginCandidate => |s, m| async move { auth::login_candidate(s, &m.req).await };
    /// `POST /auth/login`, after the password check.
    CompleteLogin { grant: LoginGrant } -> SignedIn => |s, m| auth::complete_login(s, m.grant);
    /// Resolve a bearer token.
    Authenticate { token: String } -> AuthContext => |s, m| auth::authenticate(s, &m.token);
    /// `POST /auth/logout`.
    Logout { session_id: String } -> () => |s, m| auth::logout(s, &m.session_id);
    /// Periodic cleanup of expired sessions.
    PurgeExpiredSessions {} -> usize => |s, m| auth::purge_expired_sessions(s);
    /// `POST /users` (admin).
    CreatePlaceholderUser { username: String } -> User => |s, m| users::create_placeholder(s, &m.username);
    /// Whether any user exists.
    AnyUsers {} -> bool => |s, m| users::any_exist(s);
    /// Admin: every user, decrypted usernames.
    ListUsers {} -> Vec<User> => |s, m| users::list(s);
    /// Admin: disable/enable; returns revoked session ids.
    SetUserDisabled { user_id: String, disabled: bool } -> Vec<String> => |s, m| users::set_disabled(s, &m.user_id, m.disabled);
    /// Admin: promote/demote.
    SetUserAdmin { user_id: String, is_admin: bool } -> () => |s, m| users::set_admin(s, &m.user_id, m.is_admin);
    /// `POST /users/profiles`.
    UpsertProfile { ctx: AuthContext, name_enc: String } -> () => |s, m| users::upsert_profile(s, &m.ctx, m.name_enc);
    /// `GET /users/profiles`.
    ListProfiles { ctx: AuthContext } -> Vec<Profile> => |s, m| users::profiles(s, &m.ctx);
    /// The `admins` half of `POST /presence`.
    AdminFlags { user_ids: Vec<String> } -> BTreeMap<String, bool> => |s, m| users::admin_flags(s, m.user_ids);
    /// `POST /devices`: the device and whether it is new.
    CreateDevice { ctx: AuthContext, req: CreateDeviceRequest } -> (Device, bool) => |s, m| devices::create(s, &m.ctx, m.req);
    /// `GET /devices`.
    ListOwnDevices { ctx: AuthContext } -> Vec<Device> => |s, m| devices::list_own(s, &m.ctx);
    /// `GET /devices/keys`.
    DeviceKeys { ctx: AuthContext, user_id: Option<String>, all: bool } -> DeviceKeysResponse => |s, m| devices::keys(s, &m.ctx, m.user_id, m.all);
    /// `DELETE /devices/{id}`: returns revoked session ids.
    DeleteDevice { ctx: AuthContext, device_id: String } -> Vec<String> => |s, m| devices::delete(s, &m.ctx, &m.device_id);
    /// `GET /channels`.
    ListChannels {} -> Vec<Channel> => |s, m| channels::list(s);
    /// Every channel id (broker start).
    ChannelIds {} -> Vec<String> => |s, m| channels::ids(s);
    /// `POST /channels`.
    CreateChannel { ctx: AuthContext, name_enc: String } -> Channel => |s, m| channels::create(s, &m.ctx, m.name_enc);
    /// `PATCH /channels`.
    RenameChannel { ctx: AuthContext, channel_id: String, name_enc: String } -> Channel => |s, m| channels::rename(s, &m.ctx, &m.channel_id, m.name_enc);
    /// `DELETE /channels`: returns the deleted id.
    DeleteChannel { ctx: AuthContext, channel_id: String } -> String => |s, m| channels::delete(s, &m.ctx, &m.channel_id);
    /// `GET /channels/messages` and `sync`.
    History { channel_id: String, page: PageRequest } -> MessagesResponse => |s, m| channels::history(s, &m.channel_id, m.page);
    /// `GET /channels/keys`.
    GetChannelKey { ctx: AuthContext, channel_id: String } -> ChannelKeyEnvelope => |s, m| keys::channel_key(s, &m.ctx, &m.channel_id);
    /// `POST /channels/keys`.
    UploadChannelKeys { ctx: AuthContext, req: ChannelKeysUpload } -> () => |s, m| keys::upload_channel_keys(s, &m.ctx, m.req);
    /// `GET /directory/keys`.
    GetDirectoryKey { ctx: AuthContext } -> Option<DirectoryKeyEnvelope> => |s, m| keys::directory_key(s, &m.ctx);
    /// `POST /directory/keys`.
    UploadDirectoryKeys { ctx: AuthContext, req: DirectoryKeysUpload } -> () => |s, m| keys::upload_directory_keys(s, &m.ctx, m.req);
    /// Mint an invite (sent by the admin actor).
    MintInvite { req: CreateInviteRequest, created_by: Option<String> } -> InviteResponse => |s, m| invites::mint(s, m.req, m.created_by);
    /// Admin: every invite.
    ListInvites {} -> Vec<InviteInfo> => |s, m| invites::list(s);
    /// The expiry of a still usable invite (the zero-config first invite, reused across starts).
    InviteUsableUntil { token: String } -> Option<String> => |s, m| async move { invites::usable_until(s, &m.token).await };
    /// Admin: revoke an invite.
    RevokeInvite { id: String } -> () => |s, m| invites::revoke(s, &m.id);
    /// `message.broadcast`: persist before fan-out.
    StoreBroadcast { req: BroadcastRequest } -> StoredBroadcast => |s, m| messages::store_broadcast(s, m.req);
    /// `dialtone rekey`.
    Rekey {} -> RekeyReport => |s, m| rekey::run(s);
    /// `GET /ready`: does the database answer?
    Ping {} -> () => |s, m| async move { s.pool.ping().await.map_err(ServiceError::from) };
}
