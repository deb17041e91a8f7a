//! The `abuse` scenario: legitimate fan-out and REST traffic, measured while anonymous clients
//! flood `POST /auth/login`, `POST /auth/register` and WebSocket upgrades from addresses of their
//! own. The report says what the legitimate users got (success ratio, p50/p99) and how each kind
//! of flood was answered (status counts, rate, answer latency).
//!
//! Flooders are closed-loop on purpose: each repeats its request the moment it is answered, as an
//! attacker would, so a server that answers refusals cheaply sees more of them. Legitimate REST
//! calls are open-loop (scheduled in advance, latency measured from the scheduled time), like the
//! fan-out's sends.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::pacing::Pacer;
use super::runner::{Runner, Window};
use super::stats::{Latencies, LatencySummary, Report};
use super::*;
use crate::client::rest::Page;
use crate::client::{ClientError, ClientResult, ConnectAs, RestClient, WsConnector};
use crate::crypto::e2e::DeviceKeypair;
use crate::protocol::rest::{LoginRequest, RegisterRequest};

/// A request that has not been answered after this is counted as `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one group of clients (the legitimate REST users, or one kind of flooder) got in the
/// measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestFigures {
    pub clients: usize,
    /// Requests started in the measured window.
    pub attempted: u64,
    /// Of those, answered with success (2xx; for an upgrade, 101).
    pub succeeded: u64,
    pub attempted_per_sec: f64,
    /// How they were answered: the HTTP status, `transport` (connection refused, reset, TLS
    /// failure) or `timeout` (no answer within 10 s).
    pub answers: BTreeMap<String, u64>,
    /// From the scheduled time (legitimate calls) or the start (flood) to the answer.
    pub latency: LatencySummary,
}

impl RequestFigures {
    pub fn success_ratio(&self) -> f64 {
        if self.attempted == 0 {
            return 0.0;
        }
        self.succeeded as f64 / self.attempted as f64
    }
}

/// The `abuse` part of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AbuseFigures {
    /// The logged-in users' REST calls.
    pub rest: RequestFigures,
    /// Per flood kind: `login`, `register`, `upgrade`.
    pub flood: BTreeMap<String, RequestFigures>,
}

impl AbuseFigures {
    /// Rows for the report table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
        let answers = |f: &RequestFigures| {
            f.answers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut rows = vec![(
            "REST (legitimate)".to_owned(),
            format!(
                "{} users, {} calls ({:.0}/s), {:.2}% ok, p50 {} p99 {} max {}; {}",
                self.rest.clients,
                self.rest.attempted,
                self.rest.attempted_per_sec,
                self.rest.success_ratio() * 100.0,
                ms(self.rest.latency.p50_us),
                ms(self.rest.latency.p99_us),
                ms(self.rest.latency.max_us),
                answers(&self.rest),
            ),
        )];
        for (kind, f) in &self.flood {
            rows.push((
                format!("flood {kind}"),
                format!(
                    "{} clients, {} attempts ({:.0}/s), answered p50 {} p99 {}; {}",
                    f.clients,
                    f.attempted,
                    f.attempted_per_sec,
                    ms(f.latency.p50_us),
                    ms(f.latency.p99_us),
                    answers(f),
                ),
            ));
        }
        rows
    }
}

/// Answers of one group, recorded from many tasks.
#[derive(Default)]
struct Tally {
    attempted: AtomicU64,
    succeeded: AtomicU64,
    answers: Mutex<BTreeMap<String, u64>>,
    latencies: Latencies,
}

impl Tally {
    /// Record a request that started at `from` if that was inside the measured window.
    fn record(&self, window: &Window, who: usize, from: Instant, answer: &Answer) {
        if from < window.measure_start || from >= window.measure_end {
            return;
        }
        self.attempted.fetch_add(1, Ordering::Relaxed);
        if answer.ok {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut a) = self.answers.lock() {
            *a.entry(answer.label.clone()).or_default() += 1;
        }
        self.latencies
            .record(who, Instant::now().duration_since(from).as_micros() as u64);
    }

    fn figures(&self, clients: usize, seconds: f64) -> RequestFigures {
        let attempted = self.attempted.load(Ordering::Relaxed);
        RequestFigures {
            clients,
            attempted,
            succeeded: self.succeeded.load(Ordering::Relaxed),
            attempted_per_sec: attempted as f64 / seconds.max(1e-9),
            answers: self.answers.lock().map(|a| a.clone()).unwrap_or_default(),
            latency: LatencySummary::of(&self.latencies.merged()),
        }
    }
}

/// How one request was answered.
struct Answer {
    ok: bool,
    label: String,
}

impl Answer {
    fn of<T>(result: Result<ClientResult<T>, tokio::time::error::Elapsed>, ok: &str) -> Self {
        let label = match result {
            Ok(Ok(_)) => ok.to_owned(),
            Ok(Err(ClientError::Api { status, .. })) => status.to_string(),
            Ok(Err(ClientError::Timeout(_))) | Err(_) => "timeout".to_owned(),
            Ok(Err(_)) => "transport".to_owned(),
        };
        Self {
            ok: label == ok,
            label,
        }
    }
}

/// The kinds of flood.
#[derive(Debug, Clone, Copy)]
enum Flood {
    /// Wrong passwords for names that do not exist.
    Login,
    /// Registrations with an invite that does not exist.
    Register,
    /// Upgrades with a token that does not exist.
    Upgrade,
}

impl Flood {
    fn name(self) -> &'static str {
        match self {
            Flood::Login => "login",
            Flood::Register => "register",
            Flood::Upgrade => "upgrade",
        }
    }
}

/// `n` flood source addresses for a loopback server (`127.0.2.1`, `127.0.2.2`, … — apart from the
/// legitimate clients' `127.0.0.x`), none otherwise (the flood then shares this host's address).
pub fn flood_sources(base_url: &str, n: u16) -> Vec<IpAddr> {
    if loopback_sources(base_url, 1).is_empty() {
        return Vec::new();
    }
    (0..n.max(1))
        .map(|k| IpAddr::from([127, 0, 2 + (k / 254) as u8, 1 + (k % 254) as u8]))
        .collect()
}

impl Runner {
    pub(super) async fn abuse(
        &self,
        report: &mut Report,
        load: AbuseLoad,
    ) -> Result<(), LoadError> {
        let (window_tx, window_rx) = watch::channel(None);
        let rest_tally = Arc::new(Tally::default());
        let flood_tallies: Vec<(Flood, usize, Arc<Tally>)> = [
            (Flood::Login, load.flood_login),
            (Flood::Register, load.flood_register),
            (Flood::Upgrade, load.flood_upgrade),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| (kind, n, Arc::new(Tally::default())))
        .collect();

        let mut tasks = Vec::new();
        let base = RestClient::new(&self.target.base_url, &self.target.trust)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        let rate = load.rest_rate / load.rest_users.max(1) as f64;
        for i in 0..load.rest_users {
            let rest = base.with_token(self.user(i).token.clone());
            let channel = self.channel(i).id.clone();
            let stagger = i as f64 / load.rest_users as f64;
            tasks.push(tokio::spawn(legitimate(
                i,
                rest,
                channel,
                rate,
                stagger,
                window_rx.clone(),
                rest_tally.clone(),
            )));
        }
        let sources = flood_sources(&self.target.base_url, load.flood_sources);
        let mut who = 0usize;
        for (kind, n, tally) in &flood_tallies {
            for _ in 0..*n {
                let source = (!sources.is_empty()).then(|| sources[who % sources.len()]);
                let client = match kind {
                    Flood::Upgrade => FloodClient::Ws(self.connector(0).clone()),
                    Flood::Login | Flood::Register => FloodClient::Rest(
                        RestClient::from_address(&self.target.base_url, &self.target.trust, source)
                            .map_err(|e| LoadError::Config(e.to_string()))?,
                    ),
                };
                tasks.push(tokio::spawn(flood(
                    *kind,
                    who,
                    client,
                    source,
                    window_rx.clone(),
                    tally.clone(),
                )));
                who += 1;
            }
        }
        drop(window_rx);

        let fanout = self.fanout_in(report, load.fanout, Some(window_tx)).await;
        for t in tasks {
            let _ = t.await;
        }
        fanout?;
        let secs = load.fanout.duration.as_secs_f64();
        let figures = AbuseFigures {
            rest: rest_tally.figures(load.rest_users, secs),
            flood: flood_tallies
                .iter()
                .map(|(kind, n, t)| (kind.name().to_owned(), t.figures(*n, secs)))
                .collect(),
        };
        if figures.rest.attempted > 0 && figures.rest.succeeded < figures.rest.attempted {
            report.notes.push(format!(
                "{} of {} legitimate REST calls failed",
                figures.rest.attempted - figures.rest.succeeded,
                figures.rest.attempted
            ));
        }
        report.abuse = Some(figures);
        Ok(())
    }
}

/// Wait for the fan-out to publish its window; `None` if it ended before (connect failure).
async fn window_of(mut rx: watch::Receiver<Option<Window>>) -> Option<Window> {
    rx.wait_for(Option::is_some).await.ok().and_then(|w| *w)
}

/// One logged-in user: `GET /channels` and a page of its channel's history, in turn, at `rate`
/// per second from the start of the fan-out's warm-up to the end of its measured window.
async fn legitimate(
    who: usize,
    rest: RestClient,
    channel: String,
    rate: f64,
    stagger: f64,
    window: watch::Receiver<Option<Window>>,
    tally: Arc<Tally>,
) {
    let Some(window) = window_of(window).await else {
        return;
    };
    let first = Pacer::new(window.start, rate);
    let mut pacer = Pacer::new(window.start + first.interval().mul_f64(stagger), rate);
    let page = Page {
        limit: Some(50),
        ..Page::default()
    };
    for n in 0u64.. {
        let due = pacer.tick().await;
        if due >= window.measure_end {
            break;
        }
        let answer = if n % 2 == 0 {
            Answer::of(
                tokio::time::timeout(REQUEST_TIMEOUT, rest.channels()).await,
                "200",
            )
        } else {
            Answer::of(
                tokio::time::timeout(REQUEST_TIMEOUT, rest.messages(&channel, &page)).await,
                "200",
            )
        };
        tally.record(&window, who, due, &answer);
    }
}

/// What a flooder sends with.
enum FloodClient {
    Rest(RestClient),
    Ws(WsConnector),
}

/// One anonymous flooder: its request again and again until the measured window ends.
async fn flood(
    kind: Flood,
    who: usize,
    client: FloodClient,
    source: Option<IpAddr>,
    window: watch::Receiver<Option<Window>>,
    tally: Arc<Tally>,
) {
    let Some(window) = window_of(window).await else {
        return;
    };
    tokio::time::sleep_until(window.start).await;
    // A well-formed body, so the refusal is the server's judgement and not a parse error.
    let public_key = DeviceKeypair::generate().public_key_b64();
    let junk_token = format!("flood{who}{}", "x".repeat(32));
    for n in 0u64.. {
        let from = Instant::now();
        if from >= window.measure_end {
            break;
        }
        let username = format!("flood{who}n{n}");
        let answer = match (&client, kind) {
            (FloodClient::Rest(rest), Flood::Login) => {
                let req = LoginRequest {
                    username,
                    password: "wrongpassword1".into(),
                    public_key: public_key.clone(),
                    invite_token: None,
                };
                Answer::of(
                    tokio::time::timeout(REQUEST_TIMEOUT, rest.login(&req)).await,
                    "200",
                )
            }
            (FloodClient::Rest(rest), _) => {
                let req = RegisterRequest {
                    username,
                    password: "floodpassword1".into(),
                    public_key: public_key.clone(),
                    invite_token: junk_token.clone(),
                };
                Answer::of(
                    tokio::time::timeout(REQUEST_TIMEOUT, rest.register(&req)).await,
                    "201",
                )
            }
            (FloodClient::Ws(connector), _) => {
                let who = ConnectAs {
                    token: &junk_token,
                    subscribe_none: true,
                    token_in_subprotocol: true,
                    local_addr: source,
                };
                Answer::of(
                    tokio::time::timeout(REQUEST_TIMEOUT, connector.connect(&who)).await,
                    "101",
                )
            }
        };
        tally.record(&window, who, from, &answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_sources_stay_apart_from_the_legitimate_addresses() {
        let s = flood_sources("https://127.0.0.1:8443", 300);
        assert_eq!(s.len(), 300);
        assert_eq!(s[0], IpAddr::from([127, 0, 2, 1]));
        assert_eq!(s[253], IpAddr::from([127, 0, 2, 254]));
        assert_eq!(s[254], IpAddr::from([127, 0, 3, 1]));
        let legit = loopback_sources("https://127.0.0.1:8443", 8);
        assert!(s.iter().all(|a| !legit.contains(a)));
        assert!(flood_sources("https://chat.example.org", 4).is_empty());
    }

    #[test]
    fn answers_are_labelled_by_status_and_only_the_window_counts() {
        let now = Instant::now();
        let window = Window {
            start: now,
            measure_start: now + Duration::from_secs(1),
            measure_end: now + Duration::from_secs(2),
        };
        let tally = Tally::default();
        let refused: ClientResult<()> = Err(ClientError::Api {
            status: 429,
            code: "rate_limited".into(),
            message: String::new(),
        });
        let in_window = window.measure_start + Duration::from_millis(10);
        tally.record(&window, 0, in_window, &Answer::of(Ok(refused), "200"));
        tally.record(&window, 0, in_window, &Answer::of(Ok(Ok(())), "200"));
        let reset: ClientResult<()> = Err(ClientError::Transport("reset".into()));
        tally.record(&window, 0, in_window, &Answer::of(Ok(reset), "200"));
        // Before the window (warm-up) and at its end: not counted.
        tally.record(&window, 0, now, &Answer::of(Ok(Ok(())), "200"));
        tally.record(
            &window,
            0,
            window.measure_end,
            &Answer::of(Ok(Ok(())), "200"),
        );
        let f = tally.figures(1, 1.0);
        assert_eq!((f.attempted, f.succeeded), (3, 1));
        let want: BTreeMap<String, u64> = [("200", 1), ("429", 1), ("transport", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(f.answers, want);
        assert!((f.success_ratio() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.latency.count, 3);
    }
}
