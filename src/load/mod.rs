//! The load generator behind `dialtone-load`: drives a server through the public protocol (REST to
//! provision, TLS WebSockets to load) and reports what it measured.
//!
//! It uses only [`crate::client`], [`crate::protocol`] and [`crate::crypto`], so it measures any
//! server that speaks the dialtone v1 events. Scenarios:
//! - `fanout`: channels × members, publishers sending at a fixed open-loop rate; send→receive
//!   latency of every delivery; with several server URLs, deliveries across nodes, duplicates and
//!   order violations;
//! - `connections`: ramp to N idle sessions, hold, report server RSS per connection;
//! - `persist`: senders with a window of messages in flight, no other subscribers: committed
//!   (echoed) messages per second;
//! - `churn`: connect/disconnect in a loop.

//!
//! Layout: [`scenario`] what to run; [`abuse`] the flood scenario; `reader` the per-socket reader that classifies frames;
//! `runner` connecting and measuring; `fanout`, `persist` and `idle` (connections, churn) the
//! scenarios; [`spread`] sockets over several server URLs and the fan-out's per-node tally;
//! [`ledger`] a socket's duplicate and order checks.

pub mod abuse;
mod fanout;
mod idle;
pub mod ledger;
pub mod pacing;
mod persist;
pub mod probe;
pub mod provision;
mod reader;
mod runner;
pub mod scenario;
pub mod spread;
pub mod stats;
pub mod workers;

pub use scenario::*;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use self::probe::ServerProbe;
use self::provision::Provisioned;
use self::runner::Runner;
use self::stats::{Counters, Latencies, Report};
use crate::client::rest::Credentials;
use crate::client::{RestClient, Trust, WsConnector};

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
    /// Provisioning (REST), `/metrics` and the flood of `abuse` go here: the first server URL.
    pub base_url: String,
    /// Every server URL WebSockets are spread over, node `i` being `nodes[i]` (the first is
    /// `base_url`); empty: `base_url` alone. One trust setting applies to all of them.
    #[serde(default)]
    pub nodes: Vec<String>,
    pub trust: Trust,
    /// Admin token for provisioning and `/metrics`.
    pub admin_token: Option<String>,
    /// Pre-provisioned session tokens (one per line) instead of registering users.
    pub tokens_file: Option<PathBuf>,
    /// Existing channels to use with `tokens_file`.
    pub channel_ids: Vec<String>,
}

impl Target {
    /// The server URLs sockets are spread over, in node order (at least one).
    pub fn node_urls(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.base_url.clone()]
        } else {
            self.nodes.clone()
        }
    }
}

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
    if !scenario.splits() {
        return 1;
    }
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
    let urls = target.node_urls();
    let connectors = urls
        .iter()
        .map(|url| WsConnector::new(url, &target.trust))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Config(e.to_string()))?;
    let metrics_client = target
        .admin_token
        .as_ref()
        .filter(|_| measure_server)
        .map(|t| rest.with_credentials(Credentials::AdminToken(t.clone())));
    let probe = ServerProbe::new(
        if measure_server {
            options.server_pids.clone()
        } else {
            Vec::new()
        },
        metrics_client,
    );
    if of > 1 && !scenario.splits() {
        return Err(LoadError::Config(format!(
            "the {} scenario runs in one process (no --processes)",
            scenario.name()
        )));
    }
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
    if urls.len() > 1 {
        report
            .parameters
            .insert("server URLs".into(), urls.join(", "));
    }
    let runner = Runner {
        target: target.clone(),
        connectors,
        share: (index, of),
        options: options.clone(),
        live,
        probe,
        provisioned,
    };
    match scenario {
        Scenario::Fanout(f) => runner.fanout(&mut report, f).await?,
        Scenario::Abuse(a) => runner.abuse(&mut report, a).await?,
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

/// [`loopback_sources`] for sockets spread over `urls`: only when every one is a loopback server
/// (a local address like 127.0.0.2 cannot reach another machine).
pub fn loopback_sources_for(urls: &[String], n: u8) -> Vec<IpAddr> {
    match urls.first() {
        Some(first) if urls.iter().all(|u| !loopback_sources(u, 1).is_empty()) => {
            loopback_sources(first, n)
        }
        _ => Vec::new(),
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
        let both = [
            "https://127.0.0.1:1".to_owned(),
            "https://localhost:2".to_owned(),
        ];
        assert_eq!(loopback_sources_for(&both, 3).len(), 3);
        let mixed = [
            "https://127.0.0.1:1".to_owned(),
            "https://a.example:2".to_owned(),
        ];
        assert!(loopback_sources_for(&mixed, 3).is_empty());
    }
}
