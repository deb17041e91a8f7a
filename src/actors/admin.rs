//! The admin actor: mints invites and serves the operators' REST operations.
//!
//! Owns: the message-rate sampler behind `/admin/stats`.
//! Messages: [`MintInvite`], [`ListInvites`], [`RevokeInvite`], [`ListUsers`], [`SetUserDisabled`],
//! [`SetUserAdmin`], [`ServerStats`]. Storage goes through the database actor; socket closes
//! through the hub.
//! Mailbox: capacity 256; callers (`send`) wait for room — admin traffic is a human's, so waiting
//! is the right backpressure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::db::{self as dbmsg, DbHandle};
use super::hub::{HubHandle, Notice, Stats};
use crate::metrics::{MailboxMeter, Metrics};
use crate::protocol::rest::{CreateInviteRequest, InviteResponse, User};
use crate::service::invites::InviteInfo;
use crate::service::{ServiceError, ServiceResult};

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const MAILBOX: usize = 256;

pub struct AdminActor {
    db: DbHandle,
    hub: HubHandle,
    metrics: Arc<Metrics>,
    mailbox: MailboxMeter,
    started: Instant,
    last_sample: (Instant, u64),
    messages_per_second: f64,
}

/// Cloneable access to the admin actor.
#[derive(Clone)]
pub struct AdminHandle {
    addr: Addr<AdminActor>,
    meter: MailboxMeter,
}

impl AdminHandle {
    pub async fn call<M, T>(&self, msg: M) -> ServiceResult<T>
    where
        M: Message<Result = ServiceResult<T>> + Send + 'static,
        T: Send + 'static,
        AdminActor: Handler<M>,
    {
        self.meter.queued();
        self.addr
            .send(msg)
            .await
            .unwrap_or(Err(ServiceError::Busy("server shutting down")))
    }
}

impl AdminHandle {
    /// The liveness probe's way in (`actors::liveness`).
    pub fn probe(&self) -> Recipient<super::liveness::Probe> {
        self.addr.clone().recipient()
    }
}

impl Handler<super::liveness::Probe> for AdminActor {
    type Result = ();
    fn handle(&mut self, _: super::liveness::Probe, _: &mut Context<Self>) {}
}

impl AdminActor {
    pub fn start(db: DbHandle, hub: HubHandle, metrics: Arc<Metrics>) -> AdminHandle {
        let meter = metrics.mailbox("admin");
        let mailbox = meter.clone();
        let addr = AdminActor::create(move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX);
            AdminActor {
                db,
                hub,
                last_sample: (Instant::now(), metrics.messages_persisted.get()),
                metrics,
                mailbox,
                started: Instant::now(),
                messages_per_second: 0.0,
            }
        });
        AdminHandle { addr, meter }
    }
}

impl Actor for AdminActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SAMPLE_EVERY, |act, _| {
            let now = Instant::now();
            let count = act.metrics.messages_persisted.get();
            let (then, before) = act.last_sample;
            let secs = now.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                act.messages_per_second = count.saturating_sub(before) as f64 / secs;
            }
            act.last_sample = (now, count);
        });
    }
}

/// Mint an invite. `created_by`: the admin user, or `None` for the admin token.
#[derive(Message)]
#[rtype(result = "ServiceResult<InviteResponse>")]
pub struct MintInvite {
    pub req: CreateInviteRequest,
    pub created_by: Option<String>,
}

#[derive(Message)]
#[rtype(result = "ServiceResult<Vec<InviteInfo>>")]
pub struct ListInvites;

#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
pub struct RevokeInvite(pub String);

#[derive(Message)]
#[rtype(result = "ServiceResult<Vec<User>>")]
pub struct ListUsers;

/// Disable (revoking sessions and closing sockets) or enable a user.
#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
pub struct SetUserDisabled {
    pub user_id: String,
    pub disabled: bool,
}

#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
pub struct SetUserAdmin {
    pub user_id: String,
    pub is_admin: bool,
}

/// Depth and high-water mark of one actor kind's mailboxes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MailboxStats {
    pub depth: i64,
    pub high_water: i64,
}

/// `GET /admin/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StatsReport {
    pub connections: usize,
    pub users_online: usize,
    pub channels: usize,
    pub channel_actors: usize,
    pub mailboxes: BTreeMap<String, MailboxStats>,
    pub messages_persisted: u64,
    pub messages_per_second: f64,
    pub fanout_deliveries: u64,
    pub slow_consumer_closes: u64,
    pub uptime_seconds: u64,
}

#[derive(Message)]
#[rtype(result = "ServiceResult<StatsReport>")]
pub struct ServerStats;

impl Handler<MintInvite> for AdminActor {
    type Result = ResponseFuture<ServiceResult<InviteResponse>>;

    fn handle(&mut self, msg: MintInvite, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        Box::pin(async move {
            db.call(dbmsg::MintInvite {
                req: msg.req,
                created_by: msg.created_by,
            })
            .await
        })
    }
}

impl Handler<ListInvites> for AdminActor {
    type Result = ResponseFuture<ServiceResult<Vec<InviteInfo>>>;

    fn handle(&mut self, _: ListInvites, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        Box::pin(async move { db.call(dbmsg::ListInvites {}).await })
    }
}

impl Handler<RevokeInvite> for AdminActor {
    type Result = ResponseFuture<ServiceResult<()>>;

    fn handle(&mut self, msg: RevokeInvite, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        Box::pin(async move { db.call(dbmsg::RevokeInvite { id: msg.0 }).await })
    }
}

impl Handler<ListUsers> for AdminActor {
    type Result = ResponseFuture<ServiceResult<Vec<User>>>;

    fn handle(&mut self, _: ListUsers, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        Box::pin(async move { db.call(dbmsg::ListUsers {}).await })
    }
}

impl Handler<SetUserDisabled> for AdminActor {
    type Result = ResponseFuture<ServiceResult<()>>;

    fn handle(&mut self, msg: SetUserDisabled, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        let hub = self.hub.clone();
        Box::pin(async move {
            let op = dbmsg::SetUserDisabled {
                user_id: msg.user_id.clone(),
                disabled: msg.disabled,
            };
            // The notices go with the commit, so an admin call that timed out still closes the
            // disabled user's sockets.
            db.call_then(op, move |revoked| {
                if msg.disabled {
                    hub.tell(Notice::SessionsRevoked {
                        session_ids: revoked.clone(),
                    });
                    hub.tell(Notice::UserDisabled {
                        user_id: msg.user_id,
                    });
                }
            })
            .await?;
            Ok(())
        })
    }
}

impl Handler<SetUserAdmin> for AdminActor {
    type Result = ResponseFuture<ServiceResult<()>>;

    fn handle(&mut self, msg: SetUserAdmin, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let db = self.db.clone();
        Box::pin(async move {
            db.call(dbmsg::SetUserAdmin {
                user_id: msg.user_id,
                is_admin: msg.is_admin,
            })
            .await
        })
    }
}

impl Handler<ServerStats> for AdminActor {
    type Result = ResponseFuture<ServiceResult<StatsReport>>;

    fn handle(&mut self, _: ServerStats, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        let hub = self.hub.clone();
        let metrics = self.metrics.clone();
        let uptime = self.started.elapsed().as_secs();
        let rate = self.messages_per_second;
        Box::pin(async move {
            let stats = hub
                .ask(Stats)
                .await
                .map_err(|_| ServiceError::Busy("server shutting down"))?;
            let mailboxes = ["db", "hub", "channel", "shard", "admin"]
                .into_iter()
                .map(|kind| {
                    let m = metrics.mailbox(kind);
                    (
                        kind.to_owned(),
                        MailboxStats {
                            depth: m.depth(),
                            high_water: m.high_water(),
                        },
                    )
                })
                .collect();
            Ok(StatsReport {
                connections: stats.connections,
                users_online: stats.users_online,
                channels: stats.channels,
                channel_actors: stats.channel_actors,
                mailboxes,
                messages_persisted: metrics.messages_persisted.get(),
                messages_per_second: rate,
                fanout_deliveries: metrics.fanout_deliveries.get(),
                slow_consumer_closes: metrics.slow_consumer_closes.get(),
                uptime_seconds: uptime,
            })
        })
    }
}
