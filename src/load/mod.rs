//! The load generator behind `dialtone-load`: drives a server through the public protocol (REST to
//! provision, TLS WebSockets to load) and reports what it measured.
//!
//! It uses only [`crate::client`], [`crate::protocol`] and [`crate::crypto`], so it measures any
//! server that speaks the dialtone v1 events. Scenarios:
//! - `fanout`: channels × members, publishers sending at a fixed open-loop rate; send→receive
//!   latency of every delivery;
//! - `connections`: ramp to N idle sessions, hold, report server RSS per connection;
//! - `persist`: senders with a window of messages in flight, no other subscribers: committed
//!   (echoed) messages per second;
//! - `churn`: connect/disconnect in a loop.

pub mod pacing;
pub mod probe;
pub mod provision;
pub mod stats;
pub mod workers;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::pacing::Pacer;
use self::probe::{MetricsSnapshot, ServerProbe};
use self::provision::{LoadChannel, LoadUser, Provisioned};
use self::stats::{Counters, Latencies, LatencySummary, Report, ServerFigures};
use crate::client::rest::Credentials;
use crate::client::ws::{RawIncoming, WsReceiver, WsSender};
use crate::client::{ClientResult, ConnectAs, RestClient, Trust, WsClient, WsConnector};
use crate::crypto::e2e::seal;
use crate::protocol::ws::{ClientFrame, close_code};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("provisioning failed: {0}")]
    Provision(String),
    #[error("{0}")]
    Config(String),
    #[error("no connection could be opened: {0}")]
    Connect(String),
}

/// The server under test.
#[derive(Clone, Serialize, Deserialize)]
pub struct Target {
    pub base_url: String,
    pub trust: Trust,
    /// Admin token for provisioning and `/metrics`.
    pub admin_token: Option<String>,
    /// Pre-provisioned session tokens (one per line) instead of registering users.
    pub tokens_file: Option<PathBuf>,
    /// Existing channels to use with `tokens_file`.
    pub channel_ids: Vec<String>,
}

/// `fanout`: channels × members, publishers at a fixed open-loop rate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FanoutLoad {
    pub channels: usize,
    pub members: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Publishing members per channel.
    pub publishers: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Plaintext bytes per message (the sealed body is base64 of it plus nonce and tag).
    pub size: usize,
}

/// `connections`: ramp to N idle sessions and hold them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ConnectionsLoad {
    pub connections: usize,
    pub hold: Duration,
}

/// `persist`: senders with a window of messages in flight.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PersistLoad {
    pub senders: usize,
    /// Messages in flight per sender.
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub size: usize,
}

/// `churn`: connect/disconnect loops.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChurnLoad {
    pub workers: usize,
    pub duration: Duration,
}

/// What to run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Scenario {
    Fanout(FanoutLoad),
    Connections(ConnectionsLoad),
    Persist(PersistLoad),
    Churn(ChurnLoad),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Connections(_) => "connections",
            Scenario::Persist(_) => "persist",
            Scenario::Churn(_) => "churn",
        }
    }

    pub fn parameters(&self) -> BTreeMap<String, String> {
        let d = |d: Duration| format!("{}s", d.as_secs_f64());
        let pairs: Vec<(&str, String)> = match *self {
            Scenario::Fanout(f) => vec![
                ("channels", f.channels.to_string()),
                ("members", f.members.to_string()),
                ("rate", format!("{} msg/s", f.rate)),
                ("publishers/channel", f.publishers.to_string()),
                ("duration", d(f.duration)),
                ("warmup", d(f.warmup)),
                ("size", format!("{} B", f.size)),
            ],
            Scenario::Connections(c) => vec![
                ("connections", c.connections.to_string()),
                ("hold", d(c.hold)),
            ],
            Scenario::Persist(p) => vec![
                ("senders", p.senders.to_string()),
                ("window", p.window.to_string()),
                ("duration", d(p.duration)),
                ("warmup", d(p.warmup)),
                ("size", format!("{} B", p.size)),
            ],
            Scenario::Churn(c) => vec![
                ("workers", c.workers.to_string()),
                ("duration", d(c.duration)),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Sockets this scenario opens.
    pub fn sockets(&self) -> usize {
        match self {
            Scenario::Fanout(f) => f.channels * f.members,
            Scenario::Connections(c) => c.connections,
            Scenario::Persist(p) => p.senders,
            Scenario::Churn(c) => c.workers,
        }
    }

    /// Channels the scenario needs provisioned.
    fn channels_needed(&self) -> usize {
        match self {
            Scenario::Fanout(f) => f.channels,
            Scenario::Persist(p) => p.senders,
            Scenario::Connections(_) | Scenario::Churn(_) => 0,
        }
    }

    /// The share of worker `index` of `of` (channels, connections, senders or workers are split;
    /// a fan-out share keeps its channels' members and its part of the rate).
    pub fn slice(&self, index: usize, of: usize) -> Scenario {
        let of = of.max(1);
        let share = |n: usize| n / of + usize::from(index < n % of);
        let mut s = *self;
        match &mut s {
            Scenario::Fanout(f) => {
                let mine = share(f.channels);
                f.rate *= mine as f64 / f.channels.max(1) as f64;
                f.channels = mine;
            }
            Scenario::Connections(c) => c.connections = share(c.connections),
            Scenario::Persist(p) => p.senders = share(p.senders),
            Scenario::Churn(c) => c.workers = share(c.workers),
        }
        s
    }
}

/// How to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// Local addresses connections are spread over (empty: the system's choice).
    pub source_ips: Vec<IpAddr>,
    /// Accounts to provision (sockets share them round-robin).
    pub users: usize,
    /// Server process id, for RSS and CPU (local servers).
    pub server_pid: Option<u32>,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// Rely on the server's default subscriptions instead of `subscribe=none` + `subscribe`
    /// (servers without the extension; every socket then receives every channel).
    pub default_subscriptions: bool,
    /// After the measured window: how long in-flight deliveries may still arrive.
    pub drain: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source_ips: Vec::new(),
            users: 50,
            server_pid: None,
            connect_concurrency: 128,
            default_subscriptions: false,
            drain: Duration::from_secs(2),
        }
    }
}

/// Live state shared with the progress display.
#[derive(Default)]
pub struct Live {
    pub counters: Counters,
    pub latencies: Latencies,
    phase: Mutex<&'static str>,
}

impl Live {
    pub fn phase(&self) -> &'static str {
        self.phase.lock().map(|p| *p).unwrap_or("")
    }

    fn set_phase(&self, p: &'static str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p;
        }
    }
}

/// Marks `client_message_id` values the generator sent: `lt:<nanos since start>:<connection>`.
const MARK: &str = "\"client_message_id\":\"lt:";
/// How every `error` event starts.
const ERROR_EVENT: &str = "{\"type\":\"error\"";

/// Everything the per-connection readers share.
struct ReadCtx {
    live: Arc<Live>,
    base: Instant,
    /// Measured window, in nanoseconds since `base` (empty until the measurement starts).
    window_start: AtomicU64,
    window_end: AtomicU64,
    echoes_in_window: AtomicU64,
    /// Closes after this are expected.
    ending: AtomicBool,
    first_errors: Mutex<Vec<String>>,
}

impl ReadCtx {
    fn new(live: Arc<Live>, base: Instant) -> Arc<Self> {
        Arc::new(Self {
            live,
            base,
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            echoes_in_window: AtomicU64::new(0),
            ending: AtomicBool::new(false),
            first_errors: Mutex::new(Vec::new()),
        })
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn in_window(&self, sent: u64) -> bool {
        sent >= self.window_start.load(Ordering::Relaxed)
            && sent < self.window_end.load(Ordering::Relaxed)
    }

    /// One text frame: count deliveries (by the time they were scheduled) and latency.
    /// Returns the connection index and send time when it is one of ours.
    fn on_text(&self, me: usize, text: &str) -> Option<(usize, u64)> {
        let c = &self.live.counters;
        // An error names the message it answers (its `client_message_id` carries our mark), so
        // errors are told apart first; `type` is the first field the server writes.
        if text.starts_with(ERROR_EVENT) {
            Counters::add(&c.error_events, 1);
            if let Ok(mut first) = self.first_errors.lock()
                && first.len() < 5
            {
                first.push(text.chars().take(300).collect());
            }
            return None;
        }
        let pos = text.find(MARK)?;
        let rest = &text[pos + MARK.len()..];
        let end = rest.find('"')?;
        let (sent, from) = rest[..end].split_once(':')?;
        let (sent, from): (u64, usize) = (sent.parse().ok()?, from.parse().ok()?);
        if self.in_window(sent) {
            Counters::add(&c.delivered, 1);
            let now = self.nanos(Instant::now());
            self.live
                .latencies
                .record(me, now.saturating_sub(sent) / 1000);
            if from == me {
                self.echoes_in_window.fetch_add(1, Ordering::Relaxed);
            }
        }
        if from == me {
            Counters::add(&c.echoes, 1);
        }
        Some((from, sent))
    }

    fn on_close(&self, code: u16) {
        let c = &self.live.counters;
        if code == close_code::POLICY {
            Counters::add(&c.slow_consumer_closes, 1);
        } else if !self.ending.load(Ordering::Relaxed) {
            Counters::add(&c.unexpected_closes, 1);
        }
    }
}

/// Read a socket until it ends, counting.
async fn read_loop(me: usize, mut rx: WsReceiver, ctx: Arc<ReadCtx>) {
    loop {
        match rx.next_raw().await {
            Ok(RawIncoming::Text(t)) => {
                ctx.on_text(me, t.as_str());
            }
            Ok(RawIncoming::Closed { code, .. }) => {
                ctx.on_close(code);
                return;
            }
            Ok(RawIncoming::Ended) | Err(_) => {
                if !ctx.ending.load(Ordering::Relaxed) {
                    Counters::add(&ctx.live.counters.unexpected_closes, 1);
                }
                return;
            }
        }
    }
}

/// Everything a run needs after provisioning: what worker processes receive.
#[derive(Clone, Serialize, Deserialize)]
pub struct Plan {
    pub target: Target,
    pub scenario: Scenario,
    pub options: Options,
    pub provisioned: Provisioned,
}

/// How many worker processes `scenario` needs: one unless its sockets exceed what one process may
/// open (its open-file limit, raised to the hard limit, minus a reserve).
pub fn processes_needed(scenario: &Scenario) -> usize {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    let per_process = soft.saturating_sub(200).max(64) as usize;
    scenario.sockets().div_ceil(per_process).max(1)
}

/// Provision and run a scenario in this process.
pub async fn run(
    target: &Target,
    scenario: &Scenario,
    options: &Options,
    live: Arc<Live>,
) -> Result<Report, LoadError> {
    let plan = provision(target, scenario, options, &live).await?;
    execute(&plan, 0, 1, live, true).await
}

/// Provision users and channels for `scenario`.
pub async fn provision(
    target: &Target,
    scenario: &Scenario,
    options: &Options,
    live: &Live,
) -> Result<Plan, LoadError> {
    let rest = RestClient::new(&target.base_url, &target.trust)
        .map_err(|e| LoadError::Config(e.to_string()))?;
    live.set_phase("provisioning");
    let channels_needed = scenario.channels_needed();
    let provisioned = match (&target.tokens_file, &target.admin_token) {
        (Some(file), _) => provision::from_file(file, &target.channel_ids)?,
        (None, Some(token)) => {
            provision::through_api(&rest, token, options.users.max(1), channels_needed).await?
        }
        (None, None) => {
            return Err(LoadError::Config(
                "give --admin-token (provisioning through invites) or --tokens-file".into(),
            ));
        }
    };
    if provisioned.channels.len() < channels_needed {
        return Err(LoadError::Config(format!(
            "the scenario needs {channels_needed} channels, {} given",
            provisioned.channels.len()
        )));
    }
    Ok(Plan {
        target: target.clone(),
        scenario: *scenario,
        options: options.clone(),
        provisioned,
    })
}

/// Run share `index` of `of` of a provisioned plan. `measure_server`: read the server's RSS, CPU
/// and metrics (the parent does it when the load is split over processes).
pub async fn execute(
    plan: &Plan,
    index: usize,
    of: usize,
    live: Arc<Live>,
    measure_server: bool,
) -> Result<Report, LoadError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let target = &plan.target;
    let scenario = plan.scenario.slice(index, of);
    let options = &plan.options;
    let rest = RestClient::new(&target.base_url, &target.trust)
        .map_err(|e| LoadError::Config(e.to_string()))?;
    let connector = WsConnector::new(&target.base_url, &target.trust)
        .map_err(|e| LoadError::Config(e.to_string()))?;
    let metrics_client = target
        .admin_token
        .as_ref()
        .filter(|_| measure_server)
        .map(|t| rest.with_credentials(Credentials::AdminToken(t.clone())));
    let probe = ServerProbe::new(
        options.server_pid.filter(|_| measure_server),
        metrics_client,
    );
    check_fd_budget(&scenario)?;
    // Each share takes its own slice of the channels (a fan-out share's channel k is global
    // channel index + k × of), and the accounts are shared by all.
    let mut provisioned = plan.provisioned.clone();
    if matches!(scenario, Scenario::Fanout(_)) && of > 1 {
        provisioned.channels = provisioned
            .channels
            .iter()
            .skip(index)
            .step_by(of)
            .cloned()
            .collect();
    }

    let mut report = Report {
        scenario: scenario.name().to_owned(),
        server: target.base_url.clone(),
        started_at: crate::protocol::format_time(chrono::Utc::now()),
        parameters: plan.scenario.parameters(),
        ..Report::default()
    };
    report
        .parameters
        .insert("users".into(), provisioned.users.len().to_string());
    report.parameters.insert(
        "source addresses".into(),
        if options.source_ips.is_empty() {
            "default".into()
        } else {
            options.source_ips.len().to_string()
        },
    );
    report.parameters.insert("processes".into(), of.to_string());
    let runner = Runner {
        connector,
        options: options.clone(),
        live,
        probe,
        provisioned,
    };
    match scenario {
        Scenario::Fanout(f) => runner.fanout(&mut report, f).await?,
        Scenario::Connections(c) => runner.connections(&mut report, c).await?,
        Scenario::Persist(p) => runner.persist(&mut report, p).await?,
        Scenario::Churn(c) => runner.churn(&mut report, c).await?,
    }
    report.errors = runner.live.counters.snapshot();
    Ok(report)
}

/// One process can hold only as many sockets as its open-file limit.
fn check_fd_budget(scenario: &Scenario) -> Result<(), LoadError> {
    let sockets = scenario.sockets() as u64;
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    if sockets + 64 > soft {
        return Err(LoadError::Config(format!(
            "{sockets} sockets do not fit this process's open-file limit ({soft}); split the load \
             over worker processes (--processes)"
        )));
    }
    Ok(())
}

struct Runner {
    connector: WsConnector,
    options: Options,
    live: Arc<Live>,
    probe: ServerProbe,
    provisioned: Provisioned,
}

/// A connected socket's sending half and its reader task.
struct Conn {
    tx: WsSender,
    reader: tokio::task::JoinHandle<()>,
}

impl Runner {
    fn user(&self, i: usize) -> &LoadUser {
        &self.provisioned.users[i % self.provisioned.users.len()]
    }

    fn channel(&self, i: usize) -> &LoadChannel {
        &self.provisioned.channels[i % self.provisioned.channels.len()]
    }

    /// Connect socket `i` as its user, from its source address.
    async fn connect(&self, i: usize, subscribe_none: bool) -> ClientResult<WsClient> {
        let ips = &self.options.source_ips;
        self.connector
            .connect(&ConnectAs {
                token: &self.user(i).token,
                subscribe_none,
                token_in_subprotocol: false,
                local_addr: (!ips.is_empty()).then(|| ips[i % ips.len()]),
            })
            .await
    }

    /// Open `n` sockets (index-preserving; failures are `None`), each with a reader task.
    async fn open(
        &self,
        n: usize,
        subscribe_none: bool,
        ctx: &Arc<ReadCtx>,
    ) -> (Vec<Option<Conn>>, Duration) {
        let started = Instant::now();
        let conns: Vec<Option<Conn>> = stream::iter(0..n)
            .map(|i| {
                let ctx = ctx.clone();
                async move {
                    match self.connect(i, subscribe_none).await {
                        Ok(ws) => {
                            Counters::add(&self.live.counters.connected, 1);
                            let (tx, rx) = ws.split();
                            let reader = tokio::spawn(read_loop(i, rx, ctx));
                            Some(Conn { tx, reader })
                        }
                        Err(e) => {
                            Counters::add(&self.live.counters.connect_failures, 1);
                            if let Ok(mut first) = ctx.first_errors.lock()
                                && first.len() < 5
                            {
                                first.push(format!("connect: {e}"));
                            }
                            None
                        }
                    }
                }
            })
            .buffered(self.options.connect_concurrency.max(1))
            .collect()
            .await;
        (conns, started.elapsed())
    }

    /// Close every socket (expected closes from here on) and wait briefly for each reader to see
    /// the server's close reply.
    async fn close_all(&self, conns: Vec<Option<Conn>>, ctx: &Arc<ReadCtx>) {
        ctx.ending.store(true, Ordering::Relaxed);
        stream::iter(conns.into_iter().flatten())
            .for_each_concurrent(256, |mut c| async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.tx.close()).await;
                if tokio::time::timeout(Duration::from_secs(5), &mut c.reader)
                    .await
                    .is_err()
                {
                    c.reader.abort();
                }
            })
            .await;
    }

    /// RSS peak sampler; returns a stop flag and the handle yielding the peak.
    fn sample_rss(&self) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Option<u64>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let probe = self.probe.clone();
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut peak = probe.rss_bytes();
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                peak = peak.max(probe.rss_bytes());
            }
            peak
        });
        (stop, handle)
    }

    /// Server figures over a measured window.
    async fn window_figures(
        &self,
        report: &mut Report,
        cpu_before: Option<f64>,
        metrics_before: Option<MetricsSnapshot>,
        seconds: f64,
    ) {
        let f: &mut ServerFigures = &mut report.server_figures;
        f.pid = self.probe.pid;
        if let (Some(a), Some(b)) = (cpu_before, self.probe.cpu_seconds()) {
            f.cpu_percent = Some((b - a) / seconds * 100.0);
        }
        if let Some(after) = self.probe.metrics().await {
            if let Some(before) = metrics_before {
                f.persisted_in_window = Some(after.persisted.saturating_sub(before.persisted));
            }
            f.slow_consumer_closes = Some(after.slow_consumer_closes);
            f.mailbox_depth = after.mailbox;
        }
    }

    async fn fanout(&self, report: &mut Report, load: FanoutLoad) -> Result<(), LoadError> {
        let FanoutLoad {
            channels,
            members,
            rate,
            publishers,
            duration,
            warmup,
            size,
        } = load;
        let publishers = publishers.clamp(1, members.max(1));
        let base = Instant::now();
        let ctx = ReadCtx::new(self.live.clone(), base);
        report.server_figures.rss_before_bytes = self.probe.rss_bytes();

        self.live.set_phase("connecting");
        let total = channels * members;
        let explicit = !self.options.default_subscriptions;
        let (mut conns, ramp) = self.open(total, explicit, &ctx).await;
        let established = conns.iter().filter(|c| c.is_some()).count();
        report.connections = established as u64;
        report.connect_failures = (total - established) as u64;
        report.connect_rate_per_sec = established as f64 / ramp.as_secs_f64().max(1e-9);
        if established == 0 {
            return Err(LoadError::Connect(first_error(&ctx)));
        }
        if explicit {
            for (i, c) in conns.iter_mut().enumerate() {
                if let Some(c) = c {
                    let channel = &self.channel(i / members).id;
                    if c.tx.send(&ClientFrame::subscribe(channel)).await.is_err() {
                        Counters::add(&self.live.counters.send_failures, 1);
                    }
                }
            }
        }
        // Let the subscriptions settle before the clock starts.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Publishers take their sending halves out of the connection list.
        let per_sender_rate = rate / (channels * publishers) as f64;
        let start = Instant::now();
        let measure_start = start + warmup;
        let measure_end = measure_start + duration;
        let padding = "p".repeat(size.saturating_sub(24));
        let sent_in_window = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..channels {
            for p in 0..publishers {
                let idx = c * members + p;
                let Some(conn) = conns.get_mut(idx).and_then(Option::take) else {
                    continue;
                };
                let k = c * publishers + p;
                let mut pacer = Pacer::new(start, per_sender_rate);
                // Stagger the senders across one interval so sends do not arrive in bursts.
                let offset = pacer
                    .interval()
                    .mul_f64(k as f64 / (channels * publishers) as f64);
                pacer = Pacer::new(start + offset, per_sender_rate);
                let channel = self.channel(c).clone();
                let live = self.live.clone();
                let ctx = ctx.clone();
                let padding = padding.clone();
                let in_window = sent_in_window.clone();
                let name = seal(&channel.key, b"load");
                tasks.push(tokio::spawn(async move {
                    let mut tx = conn.tx;
                    loop {
                        let due = pacer.tick().await;
                        if due >= measure_end {
                            break;
                        }
                        let sent = ctx.nanos(due);
                        let body = seal(&channel.key, format!("{sent}:{padding}").as_bytes());
                        let frame = ClientFrame::channel_message(
                            &channel.id,
                            body,
                            name.clone(),
                            Some(format!("lt:{sent}:{idx}")),
                        );
                        if tx.send(&frame).await.is_err() {
                            Counters::add(&live.counters.send_failures, 1);
                            break;
                        }
                        Counters::add(&live.counters.sent, 1);
                        if due >= measure_start {
                            in_window.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Conn {
                        tx,
                        reader: conn.reader,
                    }
                }));
            }
        }

        self.live.set_phase("warm-up");
        tokio::time::sleep_until(measure_start).await;
        ctx.window_start
            .store(ctx.nanos(measure_start), Ordering::Relaxed);
        ctx.window_end
            .store(ctx.nanos(measure_end), Ordering::Relaxed);
        let cpu_before = self.probe.cpu_seconds();
        let metrics_before = self.probe.metrics().await;
        let (stop_rss, rss_peak) = self.sample_rss();
        self.live.set_phase("measuring");
        tokio::time::sleep_until(measure_end).await;
        self.window_figures(report, cpu_before, metrics_before, duration.as_secs_f64())
            .await;
        self.live.set_phase("draining");
        tokio::time::sleep(self.options.drain).await;
        stop_rss.store(true, Ordering::Relaxed);
        report.server_figures.rss_peak_bytes = rss_peak.await.ok().flatten();
        for t in tasks {
            if let Ok(conn) = t.await {
                conns.push(Some(conn));
            }
        }

        let secs = duration.as_secs_f64();
        let c = self.live.counters.snapshot();
        let sent = sent_in_window.load(Ordering::Relaxed);
        report.measured_seconds = secs;
        report.sent = sent;
        report.sent_per_sec = sent as f64 / secs;
        report.delivered = c.delivered;
        report.deliveries_per_sec = c.delivered as f64 / secs;
        report.persisted_per_sec = ctx.echoes_in_window.load(Ordering::Relaxed) as f64 / secs;
        report.latency = LatencySummary::of(&self.live.latencies.merged());
        let expected = sent * members as u64;
        if expected > 0 {
            report.notes.push(format!(
                "{:.2}% of the {} expected deliveries arrived within the drain period",
                c.delivered as f64 * 100.0 / expected as f64,
                expected
            ));
        }
        self.live.set_phase("closing");
        self.close_all(conns, &ctx).await;
        add_error_notes(report, &ctx);
        Ok(())
    }

    async fn connections(
        &self,
        report: &mut Report,
        load: ConnectionsLoad,
    ) -> Result<(), LoadError> {
        let ConnectionsLoad { connections, hold } = load;
        let ctx = ReadCtx::new(self.live.clone(), Instant::now());
        let before = self.probe.rss_bytes();
        report.server_figures.rss_before_bytes = before;
        self.live.set_phase("connecting");
        let (conns, ramp) = self.open(connections, true, &ctx).await;
        let established = conns.iter().filter(|c| c.is_some()).count();
        report.connections = established as u64;
        report.connect_failures = (connections - established) as u64;
        report.connect_rate_per_sec = established as f64 / ramp.as_secs_f64().max(1e-9);
        if established == 0 {
            return Err(LoadError::Connect(first_error(&ctx)));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let at_load = self.probe.rss_bytes();
        report.server_figures.rss_peak_bytes = at_load;
        if let (Some(b), Some(a)) = (before, at_load) {
            report.server_figures.rss_per_connection_bytes =
                Some(a.saturating_sub(b) / established as u64);
        }
        let cpu_before = self.probe.cpu_seconds();
        let metrics_before = self.probe.metrics().await;
        self.live.set_phase("holding");
        let (stop_rss, rss_peak) = self.sample_rss();
        tokio::time::sleep(hold).await;
        stop_rss.store(true, Ordering::Relaxed);
        let peak = rss_peak.await.ok().flatten();
        report.server_figures.rss_peak_bytes = report.server_figures.rss_peak_bytes.max(peak);
        report.measured_seconds = hold.as_secs_f64();
        self.window_figures(report, cpu_before, metrics_before, hold.as_secs_f64())
            .await;
        let dropped = self.live.counters.snapshot().unexpected_closes;
        report.notes.push(format!(
            "{established} sessions held for {:.0} s; {dropped} dropped during the hold",
            hold.as_secs_f64()
        ));
        self.live.set_phase("closing");
        self.close_all(conns, &ctx).await;
        report.server_figures.rss_after_bytes = self.probe.rss_bytes();
        add_error_notes(report, &ctx);
        Ok(())
    }

    async fn persist(&self, report: &mut Report, load: PersistLoad) -> Result<(), LoadError> {
        let PersistLoad {
            senders,
            window,
            duration,
            warmup,
            size,
        } = load;
        let base = Instant::now();
        let ctx = ReadCtx::new(self.live.clone(), base);
        self.live.set_phase("connecting");
        let started = Instant::now();
        let padding = "p".repeat(size.saturating_sub(24));
        // Each sender has its own channel and no subscriptions: every message's only delivery is
        // its echo, the commit acknowledgement.
        let conns: Vec<_> = stream::iter(0..senders)
            .map(|i| async move { self.connect(i, true).await.ok() })
            .buffered(self.options.connect_concurrency.max(1))
            .collect()
            .await;
        let established = conns.iter().filter(|c| c.is_some()).count();
        report.connections = established as u64;
        report.connect_failures = (senders - established) as u64;
        report.connect_rate_per_sec =
            established as f64 / started.elapsed().as_secs_f64().max(1e-9);
        Counters::add(&self.live.counters.connected, established as u64);
        if established == 0 {
            return Err(LoadError::Connect("every connection failed".into()));
        }
        let measure_start = Instant::now() + warmup;
        let measure_end = measure_start + duration;
        ctx.window_start
            .store(ctx.nanos(measure_start), Ordering::Relaxed);
        ctx.window_end
            .store(ctx.nanos(measure_end), Ordering::Relaxed);
        let mut tasks = Vec::new();
        for (i, ws) in conns.into_iter().enumerate() {
            let Some(ws) = ws else { continue };
            let channel = self.channel(i).clone();
            let ctx = ctx.clone();
            let padding = padding.clone();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let name = seal(&channel.key, b"load");
                let frame = |ctx: &ReadCtx| {
                    let sent = ctx.nanos(Instant::now());
                    ClientFrame::channel_message(
                        &channel.id,
                        seal(&channel.key, format!("{sent}:{padding}").as_bytes()),
                        name.clone(),
                        Some(format!("lt:{sent}:{i}")),
                    )
                };
                let counters = &ctx.live.counters;
                for _ in 0..window.max(1) {
                    if tx.send(&frame(&ctx)).await.is_err() {
                        Counters::add(&counters.send_failures, 1);
                        return;
                    }
                    Counters::add(&counters.sent, 1);
                }
                let mut outstanding = window.max(1);
                while outstanding > 0 {
                    match tokio::time::timeout(Duration::from_secs(30), rx.next_raw()).await {
                        Ok(Ok(RawIncoming::Text(t))) => {
                            if matches!(ctx.on_text(i, t.as_str()), Some((from, _)) if from == i) {
                                outstanding -= 1;
                                if Instant::now() < measure_end {
                                    if tx.send(&frame(&ctx)).await.is_err() {
                                        Counters::add(&counters.send_failures, 1);
                                        break;
                                    }
                                    Counters::add(&counters.sent, 1);
                                    outstanding += 1;
                                }
                            } else if t.as_str().contains("\"type\":\"error\"") {
                                // A refused message will not be echoed.
                                outstanding -= 1;
                            }
                        }
                        Ok(Ok(RawIncoming::Closed { code, .. })) => {
                            ctx.on_close(code);
                            break;
                        }
                        _ => {
                            Counters::add(&counters.unexpected_closes, 1);
                            break;
                        }
                    }
                }
                let _ = tx.close().await;
            }));
        }
        self.live.set_phase("warm-up");
        tokio::time::sleep_until(measure_start).await;
        let cpu_before = self.probe.cpu_seconds();
        let metrics_before = self.probe.metrics().await;
        self.live.set_phase("measuring");
        tokio::time::sleep_until(measure_end).await;
        self.window_figures(report, cpu_before, metrics_before, duration.as_secs_f64())
            .await;
        self.live.set_phase("draining");
        ctx.ending.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        let secs = duration.as_secs_f64();
        let echoes = ctx.echoes_in_window.load(Ordering::Relaxed);
        report.measured_seconds = secs;
        report.sent = self.live.counters.snapshot().sent;
        report.sent_per_sec = report.sent as f64 / (secs + warmup.as_secs_f64());
        report.delivered = echoes;
        report.deliveries_per_sec = echoes as f64 / secs;
        report.persisted_per_sec = echoes as f64 / secs;
        report.latency = LatencySummary::of(&self.live.latencies.merged());
        report
            .notes
            .push("latency here is send → echo: the commit latency".into());
        add_error_notes(report, &ctx);
        Ok(())
    }

    async fn churn(&self, report: &mut Report, load: ChurnLoad) -> Result<(), LoadError> {
        let ChurnLoad { workers, duration } = load;
        self.live.set_phase("churning");
        let end = Instant::now() + duration;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let connector = self.connector.clone();
                let token = self.user(w).token.clone();
                let ips = self.options.source_ips.clone();
                let live = self.live.clone();
                let errors = errors.clone();
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while Instant::now() < end {
                        let who = ConnectAs {
                            token: &token,
                            subscribe_none: true,
                            token_in_subprotocol: false,
                            local_addr: (!ips.is_empty()).then(|| ips[(w + n) % ips.len()]),
                        };
                        n += 1;
                        match connector.connect(&who).await {
                            Ok(mut ws) => {
                                Counters::add(&live.counters.connected, 1);
                                let _ =
                                    tokio::time::timeout(Duration::from_secs(2), ws.close()).await;
                                let _ =
                                    tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                                Counters::add(&live.counters.cycles, 1);
                            }
                            Err(e) => {
                                Counters::add(&live.counters.connect_failures, 1);
                                if let Ok(mut v) = errors.lock()
                                    && v.len() < 5
                                {
                                    v.push(e.to_string());
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let cpu_before = self.probe.cpu_seconds();
        for t in tasks {
            let _ = t.await;
        }
        let secs = duration.as_secs_f64();
        let c = self.live.counters.snapshot();
        report.measured_seconds = secs;
        report.connections = c.connected;
        report.connect_failures = c.connect_failures;
        report.connect_rate_per_sec = c.connected as f64 / secs;
        report.cycles_per_sec = c.cycles as f64 / secs;
        self.window_figures(report, cpu_before, None, secs).await;
        if let Ok(v) = errors.lock() {
            report.notes.extend(v.iter().map(|e| format!("error: {e}")));
        }
        Ok(())
    }
}

fn first_error(ctx: &ReadCtx) -> String {
    ctx.first_errors
        .lock()
        .ok()
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| "unknown error".into())
}

fn add_error_notes(report: &mut Report, ctx: &ReadCtx) {
    if let Ok(v) = ctx.first_errors.lock() {
        report.notes.extend(v.iter().map(|e| format!("error: {e}")));
    }
}

/// `127.0.0.1 ..= 127.0.0.n` for a loopback server (each source address has its own ephemeral
/// ports), nothing otherwise.
pub fn loopback_sources(base_url: &str, n: u8) -> Vec<IpAddr> {
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host == "localhost" || host.starts_with("127.") {
        (1..=n.max(1))
            .map(|i| IpAddr::from([127, 0, 0, i]))
            .collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_only_for_loopback_servers() {
        assert_eq!(loopback_sources("https://localhost:8080", 3).len(), 3);
        assert_eq!(
            loopback_sources("https://127.0.0.1:8080", 2)[1],
            IpAddr::from([127, 0, 0, 2])
        );
        assert!(loopback_sources("https://chat.example.org", 4).is_empty());
    }

    #[test]
    fn frames_are_classified_by_their_mark() {
        let live = Arc::new(Live::default());
        let ctx = ReadCtx::new(live.clone(), Instant::now());
        ctx.window_start.store(0, Ordering::Relaxed);
        ctx.window_end.store(u64::MAX - 1, Ordering::Relaxed);
        let own = r#"{"type":"channel.message.new","client_message_id":"lt:5:7","body":"x"}"#;
        assert_eq!(ctx.on_text(7, own), Some((7, 5)));
        assert_eq!(ctx.on_text(3, own), Some((7, 5)));
        assert_eq!(ctx.on_text(3, r#"{"type":"presence.updated"}"#), None);
        assert_eq!(
            ctx.on_text(3, r#"{"type":"error","code":"rate_limited"}"#),
            None
        );
        // A refusal naming one of our messages is an error, not an echo or a delivery.
        let refused = r#"{"type":"error","code":"rate_limited","client_message_id":"lt:6:3"}"#;
        assert_eq!(ctx.on_text(3, refused), None);
        let c = live.counters.snapshot();
        assert_eq!((c.delivered, c.echoes, c.error_events), (2, 1, 2));
        assert_eq!(ctx.echoes_in_window.load(Ordering::Relaxed), 1);
        assert_eq!(live.latencies.merged().len(), 2);
    }
}
