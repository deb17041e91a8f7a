//! The group commit: pending channel messages committed in batches, in order, each batch
//! acknowledged (fanned out) only after its commit; a refused batch is split so one bad row fails
//! only its sender.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Outbound, SessionHandle};
use crate::db::models::MessageRow;
use crate::protocol::ws::{Event, error_code};
use crate::service::messages::{self};
use crate::service::{ServiceError, ServiceResult, Store};

use super::DbActor;

impl DbActor {
    /// Start `lane`'s next batch (it has messages waiting and is not committing).
    pub(super) fn start_batch(&mut self, ctx: &mut Context<Self>, lane: usize) {
        let n = self.lanes[lane].pending.len().min(self.config.batch_max);
        self.lanes[lane].committing_since = Some(Instant::now());
        let mut rows = Vec::with_capacity(n);
        let mut origins = HashMap::with_capacity(n);
        let batch: Vec<PersistChannelMessage> = self.lanes[lane].pending.drain(..n).collect();
        for msg in batch {
            let row = MessageRow {
                id: uuid::Uuid::now_v7().to_string(),
                channel_id: msg.channel_id,
                sender_id: msg.sender_id,
                sender_name_enc: msg.sender_name_enc,
                body: msg.body,
                sent_at: self.next_sent_at(),
                client_message_id: msg.client_message_id,
                // Numbered inside the commit transaction.
                seq: 0,
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
                act.lanes[lane].committing_since = None;
                act.schedule(ctx, Some(lane));
                if act.idle() {
                    for waiter in act.drain_waiters.drain(..) {
                        let _ = waiter.send(());
                    }
                }
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
            Ok(Isolated {
                committed,
                refused,
                unknown,
            }) => {
                for row in refused {
                    if let Some(origin) = origins.remove(&row.id) {
                        self.metrics.messages_rejected.inc();
                        origin.reject(error_code::SERVER_ERROR, "message not saved; please retry");
                    }
                }
                for row in unknown {
                    if let Some(origin) = origins.remove(&row.id) {
                        self.metrics.messages_rejected.inc();
                        origin.reject(error_code::SERVER_ERROR, OUTCOME_UNKNOWN);
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
                for (row, code) in committed.refused {
                    if let Some(origin) = origins.remove(&row.id) {
                        self.metrics.messages_rejected.inc();
                        origin.reject(code, private_refusal(code));
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
                        Some(CommittedMessage {
                            row,
                            origin: Some(origin),
                        })
                    })
                    .collect();
                match &self.fanout {
                    // do_send: committed messages are never dropped; the volume in flight is
                    // bounded by DIALTONE_DB_MAX_PENDING, which counts them until delivered.
                    Some((hub, meter)) => {
                        meter.queued();
                        let ticket = self.in_fanout.ticket(batch.len());
                        hub.do_send(CommittedBatch(batch, ticket));
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

/// What a sender whose message's commit outcome could not be settled is told: it may be stored,
/// and a resend with the same `client_message_id` is answered with the original if it is.
const OUTCOME_UNKNOWN: &str = "the database did not answer; the message may be saved: resend it with the same client_message_id";

/// A group commit's outcome once a refused batch has been split up, or an unanswered one settled.
struct Isolated {
    committed: messages::Committed,
    /// Rows the database refused on their own (each was retried alone), that a failed commit
    /// turned out not to have stored, or that were not tried once the database stopped answering.
    refused: Vec<MessageRow>,
    /// Rows of a failed commit whose outcome could not be settled in time.
    unknown: Vec<MessageRow>,
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
    // Kept to split the batch if it is refused, or to settle a failure that had no answer.
    let retry = rows.clone();
    let err = match bounded(rows).await {
        Ok(committed) => {
            return Ok(Isolated {
                committed,
                refused: Vec::new(),
                unknown: Vec::new(),
            });
        }
        Err(e) => e,
    };
    if !is_refusal(&err) {
        return match limit {
            Some(limit) if may_have_committed(&err) => Ok(settle(&store, retry, limit, &err).await),
            _ => Err(err),
        };
    }
    if retry.len() < 2 {
        return Err(err);
    }
    let rows = retry;
    tracing::warn!(error = %err, batch = rows.len(), "group commit refused; committing its rows one by one");
    let mut out = Isolated {
        committed: messages::Committed::default(),
        refused: Vec::new(),
        unknown: Vec::new(),
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
                out.committed.refused.extend(one.refused);
                out.committed.duplicates.extend(one.duplicates);
            }
            Err(e) if is_refusal(&e) => {
                tracing::error!(error = %e, message_id = %row.id, "message refused by the database");
                out.refused.push(row);
            }
            Err(e) => {
                // This row's own commit may have happened: settled like a batch's. Unless the
                // settle got an answer, the database is unreachable now: the rows after it are
                // refused untried, and what committed is fanned out.
                tracing::error!(error = %e, "group commit failed while isolating a refused row");
                match limit {
                    Some(limit) if may_have_committed(&e) => {
                        let one = settle(&store, vec![row], limit, &e).await;
                        reachable = one.unknown.is_empty();
                        out.committed.rows.extend(one.committed.rows);
                        out.refused.extend(one.refused);
                        out.unknown.extend(one.unknown);
                    }
                    _ => {
                        reachable = false;
                        out.refused.push(row);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A batch whose commit failed without the database refusing it (PostgreSQL): the connection broke
/// or the commit outlived `limit`, maybe after `COMMIT` was sent, so it may be stored. Telling its
/// senders "not saved" could be false, and what did commit would never be fanned out; so the
/// outcome is settled first ([`messages::resolve_batch`], within `limit` again): what is stored is
/// acknowledged and fanned out, in order (this lane waits), and what is not is refused. Only if
/// the database still does not answer are the senders told the outcome is unknown.
async fn settle(
    store: &Arc<Store>,
    rows: Vec<MessageRow>,
    limit: Duration,
    err: &ServiceError,
) -> Isolated {
    tracing::error!(error = %err, batch = rows.len(), "group commit failed without an answer; settling its outcome");
    let ids: Vec<MessageRow> = rows.clone();
    match tokio::time::timeout(limit, messages::resolve_batch(store, rows)).await {
        Ok(Ok(resolved)) => {
            if !resolved.stored.is_empty() {
                tracing::warn!(
                    stored = resolved.stored.len(),
                    absent = resolved.absent.len(),
                    "the failed group commit had committed; acknowledging it"
                );
            }
            Isolated {
                committed: messages::Committed {
                    rows: resolved.stored,
                    ..Default::default()
                },
                refused: resolved.absent,
                unknown: Vec::new(),
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "group commit failed and its outcome is unknown; senders told to resend");
            unsettled(ids)
        }
        Err(_) => {
            tracing::error!(
                "group commit failed and its outcome is unknown (no answer); senders told to resend"
            );
            unsettled(ids)
        }
    }
}

fn unsettled(rows: Vec<MessageRow>) -> Isolated {
    Isolated {
        committed: messages::Committed::default(),
        refused: Vec::new(),
        unknown: rows,
    }
}

pub(super) fn abandoned(limit: Duration) -> ServiceError {
    ServiceError::Db(crate::db::DbError::Unavailable(format!(
        "database operation abandoned after {} ms without an answer",
        limit.as_millis()
    )))
}

/// What a private channel's refusal tells the sender.
fn private_refusal(code: &str) -> &'static str {
    if code == error_code::ROTATION_REQUIRED {
        "not saved: this channel needs a new key generation first (a member or device left)"
    } else {
        "not saved: sealed under an old key generation; fetch the current key and send again"
    }
}

/// A failure after which the commit may still have happened (see
/// [`crate::db::DbError::certainly_rolled_back`]); settling anything else would only hold the
/// lane longer.
fn may_have_committed(e: &ServiceError) -> bool {
    !matches!(e, ServiceError::Db(db) if db.certainly_rolled_back())
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
        self.session.outbound.do_send(Outbound::Event(Box::new(
            Event::channel_message(
                row.id.clone(),
                row.channel_id.clone(),
                row.sender_id.clone(),
                row.sender_name_enc.clone(),
                row.body.clone(),
                row.sent_at.wire(),
                row.client_message_id.clone(),
            )
            .with_seq(row.seq),
        )));
    }

    /// `do_send`: at most one answer per message taken into a batch, and batches hold at most
    /// `DIALTONE_DB_MAX_PENDING` messages.
    fn reject(&self, code: &'static str, message: &str) {
        self.session.outbound.do_send(Outbound::Event(Box::new(
            Event::error(code, message).for_request(
                Some(self.channel_id.clone()),
                self.client_message_id.clone(),
            ),
        )));
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

/// One committed message with the session that sent it (`None`: it was sent on another node).
pub struct CommittedMessage {
    pub row: MessageRow,
    pub origin: Option<SessionHandle>,
}

/// A committed batch, in commit order, for fan-out, with its ticket: the batch counts against
/// `DIALTONE_DB_MAX_PENDING` until the fan-out is done with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CommittedBatch(pub Vec<CommittedMessage>, pub Arc<FanoutTicket>);

/// How many committed messages are still on their way through the fan-out (the hub's and the
/// channel actors' mailboxes): admission counts them with the messages waiting for a commit, so
/// a fan-out that falls behind makes new sends wait (`rate_limited`) instead of letting committed
/// batches pile up in mailboxes without a bound.
#[derive(Debug, Clone, Default)]
pub struct FanoutGauge(Arc<AtomicUsize>);

impl FanoutGauge {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// `n` messages leave for the fan-out; they count until the ticket's last holder drops it.
    pub fn ticket(&self, n: usize) -> Arc<FanoutTicket> {
        self.0.fetch_add(n, Ordering::Relaxed);
        Arc::new(FanoutTicket {
            gauge: self.clone(),
            n,
        })
    }
}

/// `n` committed messages in the fan-out; every part of the batch (a channel actor's share)
/// holds a clone, and the count goes down when the last part has been delivered.
#[derive(Debug)]
pub struct FanoutTicket {
    gauge: FanoutGauge,
    n: usize,
}

impl Drop for FanoutTicket {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(self.n, Ordering::Relaxed);
    }
}

impl Handler<PersistChannelMessage> for DbActor {
    type Result = ();

    fn handle(&mut self, msg: PersistChannelMessage, ctx: &mut Context<Self>) {
        self.mailbox.handled();
        if self.pending() + self.in_fanout.get() >= self.config.max_pending {
            self.metrics.messages_rejected.inc();
            // do_send: one refusal per send the socket made, and a socket's sends are bounded by
            // its own and its user's budgets before they reach this mailbox.
            msg.origin.outbound.do_send(Outbound::Event(Box::new(
                Event::error(error_code::RATE_LIMITED, "server busy; retry later")
                    .for_request(Some(msg.channel_id.clone()), msg.client_message_id.clone()),
            )));
            return;
        }
        let lane = self.lane_of(&msg.channel_id);
        self.lanes[lane].pending.push_back(msg);
        if self.lanes[lane].committing_since.is_none() {
            self.schedule(ctx, None);
        }
    }
}
