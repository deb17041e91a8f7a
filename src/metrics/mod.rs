//! Prometheus metrics (text exposition via `GET /metrics`).
//!
//! One [`Metrics`] per server, shared by reference-counted handles. Mailbox depth is counted by the
//! senders (increment) and the receiving handler (decrement), per actor kind, with a high-water
//! mark, because actix does not expose mailbox lengths.

mod cluster;

pub use cluster::ClusterMetrics;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabel {
    pub actor: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub ws_connections: Gauge,
    pub ws_sessions_total: Counter,
    pub ws_refused_total: Counter,
    pub users_online: Gauge,
    pub channel_actors: Gauge,
    mailbox_depth: Family<ActorLabel, Gauge>,
    mailbox_high_water: Family<ActorLabel, Gauge>,
    pub messages_persisted: Counter,
    pub messages_rejected: Counter,
    pub broadcasts_persisted: Counter,
    pub fanout_deliveries: Counter,
    pub slow_consumer_closes: Counter,
    pub db_batch_size: Histogram,
    pub db_commit_seconds: Histogram,
    pub db_call_timeouts: Counter,
    db_pool_in_use: Gauge,
    db_pool_idle: Gauge,
    /// Reads the request pool's (in use, idle) connection counts at scrape time.
    pool_probe: std::sync::OnceLock<PoolProbe>,
    pub http_responses: Family<StatusLabel, Counter>,
    pub ws_errors: Family<CodeLabel, Counter>,
    pub login_failures: Counter,
    pub password_computations: Counter,
    pub password_queue_depth: Gauge,
    pub password_queue_refused: Counter,
    rate_limited: Family<LimitLabel, Counter>,
    pub cluster: ClusterMetrics,
}

/// Reads (in use, idle) connection counts of a pool.
pub type PoolProbe = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// Depth counter of one actor kind's mailboxes.
#[derive(Clone)]
pub struct MailboxMeter {
    depth: Gauge,
    high: Gauge,
}

impl MailboxMeter {
    /// A message was queued.
    pub fn queued(&self) {
        let now = self.depth.inc() + 1;
        self.high.inner().fetch_max(now, Ordering::Relaxed);
    }

    /// A message was taken out by its handler (or dropped with its mailbox).
    pub fn handled(&self) {
        self.depth.dec();
    }

    pub fn depth(&self) -> i64 {
        self.depth.get()
    }

    pub fn high_water(&self) -> i64 {
        self.high.get()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("dialtone");
        let m = Metrics {
            ws_connections: Gauge::default(),
            ws_sessions_total: Counter::default(),
            ws_refused_total: Counter::default(),
            users_online: Gauge::default(),
            channel_actors: Gauge::default(),
            mailbox_depth: Family::default(),
            mailbox_high_water: Family::default(),
            messages_persisted: Counter::default(),
            messages_rejected: Counter::default(),
            broadcasts_persisted: Counter::default(),
            fanout_deliveries: Counter::default(),
            slow_consumer_closes: Counter::default(),
            db_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            db_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            db_call_timeouts: Counter::default(),
            db_pool_in_use: Gauge::default(),
            db_pool_idle: Gauge::default(),
            pool_probe: std::sync::OnceLock::new(),
            http_responses: Family::default(),
            ws_errors: Family::default(),
            login_failures: Counter::default(),
            password_computations: Counter::default(),
            password_queue_depth: Gauge::default(),
            password_queue_refused: Counter::default(),
            rate_limited: Family::default(),
            cluster: ClusterMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ws_connections",
            "Open WebSocket sessions",
            m.ws_connections.clone(),
        );
        registry.register(
            "ws_sessions",
            "WebSocket sessions opened",
            m.ws_sessions_total.clone(),
        );
        registry.register(
            "ws_refused",
            "WebSocket upgrades refused at the session limit",
            m.ws_refused_total.clone(),
        );
        registry.register(
            "users_online",
            "Users with at least one open socket",
            m.users_online.clone(),
        );
        registry.register(
            "channel_actors",
            "Live channel actors",
            m.channel_actors.clone(),
        );
        registry.register(
            "mailbox_depth",
            "Messages waiting in actor mailboxes, by actor kind",
            m.mailbox_depth.clone(),
        );
        registry.register(
            "mailbox_depth_high_water",
            "Highest mailbox depth seen since start, by actor kind",
            m.mailbox_high_water.clone(),
        );
        registry.register(
            "messages_persisted",
            "Channel messages committed",
            m.messages_persisted.clone(),
        );
        registry.register(
            "messages_rejected",
            "Channel messages refused (unknown channel, overload, database error)",
            m.messages_rejected.clone(),
        );
        registry.register(
            "broadcasts_persisted",
            "Broadcast messages committed",
            m.broadcasts_persisted.clone(),
        );
        registry.register(
            "fanout_deliveries",
            "Events handed to sockets by fan-out",
            m.fanout_deliveries.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Sockets closed with 1008 because their outbound queue overflowed",
            m.slow_consumer_closes.clone(),
        );
        registry.register(
            "db_batch_size",
            "Channel messages per group commit",
            m.db_batch_size.clone(),
        );
        registry.register(
            "db_commit_seconds",
            "Group commit latency",
            m.db_commit_seconds.clone(),
        );
        registry.register(
            "db_pool_in_use",
            "Request pool connections checked out (read at scrape time)",
            m.db_pool_in_use.clone(),
        );
        registry.register(
            "db_pool_idle",
            "Request pool connections open and idle (read at scrape time)",
            m.db_pool_idle.clone(),
        );
        registry.register(
            "db_call_timeouts",
            "Database calls that ran past the call timeout (503; an operation not yet started is dropped)",
            m.db_call_timeouts.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status",
            m.http_responses.clone(),
        );
        registry.register(
            "ws_errors",
            "WebSocket error events sent, by code",
            m.ws_errors.clone(),
        );
        registry.register(
            "login_failures",
            "Refused logins: wrong password, unknown or disabled user",
            m.login_failures.clone(),
        );
        registry.register(
            "password_computations",
            "Password checks and hashes run (argon2/bcrypt, the dummy check included)",
            m.password_computations.clone(),
        );
        registry.register(
            "password_queue_depth",
            "Password checks and hashes running or waiting for a worker",
            m.password_queue_depth.clone(),
        );
        registry.register(
            "password_queue_refused",
            "Password checks and hashes refused with 503 because the queue was full",
            m.password_queue_refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests and frames refused by a rate limit or cap, by limit",
            m.rate_limited.clone(),
        );
        m.cluster.register(&mut registry);
        Arc::new(Metrics { registry, ..m })
    }

    /// The depth meter of one actor kind (`db`, `hub`, `channel`, `session`, `admin`).
    pub fn mailbox(&self, actor: &'static str) -> MailboxMeter {
        MailboxMeter {
            depth: self
                .mailbox_depth
                .get_or_create(&ActorLabel { actor })
                .clone(),
            high: self
                .mailbox_high_water
                .get_or_create(&ActorLabel { actor })
                .clone(),
        }
    }

    pub fn http_response(&self, status: u16) {
        self.http_responses
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabel { limit }).inc();
    }

    pub fn ws_error(&self, code: &'static str) {
        self.ws_errors.get_or_create(&CodeLabel { code }).inc();
    }

    /// Where [`Metrics::render`] reads the pool's connection counts (set once, at start).
    pub fn set_pool_probe(&self, probe: PoolProbe) {
        let _ = self.pool_probe.set(probe);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(probe) = self.pool_probe.get() {
            let (in_use, idle) = probe();
            self.db_pool_in_use
                .set(i64::try_from(in_use).unwrap_or(i64::MAX));
            self.db_pool_idle
                .set(i64::try_from(idle).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
