//! Splitting a load over worker processes, for when one process's open-file limit cannot hold all
//! the sockets.
//!
//! The parent provisions once and writes the [`Plan`] to a private temporary file; each worker
//! (`dialtone-load worker --plan FILE --index i --of N`) runs its share and reports on stdout:
//! `progress {json}` every second and `result {json}` at the end. The parent aggregates progress,
//! measures the server itself (RSS, CPU, `/metrics` — once, not N times), and merges the results.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::probe::ServerProbe;
use super::stats::{
    CounterSnapshot, LatencySummary, Report, decode_histogram, encode_histogram, new_histogram,
};
use super::{Live, LoadError, Plan, Scenario, execute};
use crate::client::RestClient;
use crate::client::rest::Credentials;

/// One progress line of a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    pub counters: CounterSnapshot,
}

/// A worker's final answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    pub report: Report,
    /// Its latency histogram (HDR V2, base64), merged by the parent.
    pub histogram: String,
}

/// Worker side: run share `index` of `of` and report on stdout.
pub async fn run_worker(plan_file: &Path, index: usize, of: usize) -> Result<(), LoadError> {
    let text = std::fs::read_to_string(plan_file)
        .map_err(|e| LoadError::Config(format!("{}: {e}", plan_file.display())))?;
    let plan: Plan = serde_json::from_str(&text)
        .map_err(|e| LoadError::Config(format!("{}: {e}", plan_file.display())))?;
    let live = Arc::new(Live::default());
    let reporter = live.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let p = Progress {
                phase: reporter.phase().to_owned(),
                counters: reporter.counters.snapshot(),
            };
            if let Ok(json) = serde_json::to_string(&p) {
                println!("progress {json}");
            }
        }
    });
    let result = execute(&plan, index, of, live.clone(), false).await;
    ticker.abort();
    let report = result?;
    let out = WorkerResult {
        report,
        histogram: encode_histogram(&live.latencies.merged()),
    };
    let json = serde_json::to_string(&out).map_err(|e| LoadError::Config(e.to_string()))?;
    println!("result {json}");
    Ok(())
}

enum Line {
    Progress(usize, Progress),
    Result(usize, Box<WorkerResult>),
    Failed(usize, String),
}

/// Parent side: run `plan` over `of` worker processes of `exe`, aggregating into `live`.
pub async fn run_split(
    plan: &Plan,
    of: usize,
    exe: &Path,
    live: Arc<Live>,
) -> Result<Report, LoadError> {
    let dir = tempfile_dir()?;
    let plan_path = dir.join("plan.json");
    let json = serde_json::to_vec(plan).map_err(|e| LoadError::Config(e.to_string()))?;
    // The plan holds session tokens: readable by this user only.
    crate::config::write_private_file(&plan_path, &json)
        .map_err(|e| LoadError::Config(format!("{}: {e}", plan_path.display())))?;

    let rest = RestClient::new(&plan.target.base_url, &plan.target.trust)
        .map_err(|e| LoadError::Config(e.to_string()))?;
    let probe = ServerProbe::new(
        plan.options.server_pids.clone(),
        plan.target
            .admin_token
            .as_ref()
            .map(|t| rest.with_credentials(Credentials::AdminToken(t.clone()))),
    );
    let rss_before = probe.rss_bytes();

    let (tx, mut rx) = mpsc::channel::<Line>(1024);
    let mut children = Vec::with_capacity(of);
    for index in 0..of {
        let mut child = Command::new(exe)
            .arg("worker")
            .arg("--plan")
            .arg(&plan_path)
            .arg("--index")
            .arg(index.to_string())
            .arg("--of")
            .arg(of.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Config(format!("starting worker {index}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LoadError::Config("worker stdout".into()))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut answered = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let parsed = if let Some(j) = line.strip_prefix("progress ") {
                    serde_json::from_str(j)
                        .ok()
                        .map(|p| Line::Progress(index, p))
                } else if let Some(j) = line.strip_prefix("result ") {
                    answered = true;
                    Some(match serde_json::from_str(j) {
                        Ok(r) => Line::Result(index, Box::new(r)),
                        Err(e) => Line::Failed(index, format!("unreadable result: {e}")),
                    })
                } else {
                    None
                };
                if let Some(l) = parsed {
                    let _ = tx.send(l).await;
                }
            }
            if !answered {
                let _ = tx
                    .send(Line::Failed(index, "exited without a result".into()))
                    .await;
            }
        });
        children.push(child);
    }
    drop(tx);

    let mut progress: Vec<Option<Progress>> = vec![None; of];
    let mut results: Vec<Option<WorkerResult>> = (0..of).map(|_| None).collect();
    // When every worker is measuring: start time and server CPU then; the share of a core the
    // server used until the first worker stops measuring.
    let mut window: Option<(Instant, Option<f64>)> = None;
    let mut cpu_percent = None;
    let mut figures_done = false;
    let mut held_rss = None;
    let mut failure = None;
    while let Some(line) = rx.recv().await {
        match line {
            Line::Progress(i, p) => progress[i] = Some(p),
            Line::Result(i, r) => results[i] = Some(*r),
            Line::Failed(i, e) => failure = Some(format!("worker {i}: {e}")),
        }
        // Live view: the sum of the workers' counters, and their common phase.
        let mut sum = CounterSnapshot::default();
        for p in progress.iter().flatten() {
            sum.merge(&p.counters);
        }
        store(&live, &sum);
        let phases: Vec<&str> = progress
            .iter()
            .flatten()
            .map(|p| p.phase.as_str())
            .collect();
        let all = |ph: &str| phases.len() == of && phases.iter().all(|p| *p == ph);
        if all("measuring") && window.is_none() {
            window = Some((Instant::now(), probe.cpu_seconds()));
        }
        if all("holding") && held_rss.is_none() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            held_rss = Some(probe.rss_bytes());
        }
        if let Some((start, cpu)) = window
            && !figures_done
            && phases.iter().any(|p| *p != "measuring")
        {
            figures_done = true;
            let secs = start.elapsed().as_secs_f64();
            cpu_percent = cpu
                .zip(probe.cpu_seconds())
                .map(|(a, b)| (b - a) / secs * 100.0);
        }
    }
    for mut c in children {
        let _ = c.wait().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(f) = failure {
        return Err(LoadError::Config(f));
    }

    let parts: Vec<WorkerResult> = results.into_iter().flatten().collect();
    let mut report = merge(&parts, &plan.scenario);
    let f = &mut report.server_figures;
    f.pid = plan.options.server_pids.first().copied();
    f.rss_before_bytes = rss_before;
    f.rss_after_bytes = probe.rss_bytes();
    if let Some(Some(at_load)) = held_rss {
        f.rss_peak_bytes = Some(at_load);
        if let Some(before) = rss_before
            && report.connections > 0
        {
            f.rss_per_connection_bytes = Some(at_load.saturating_sub(before) / report.connections);
        }
    }
    f.cpu_percent = cpu_percent;
    if let Some(m) = probe.metrics().await {
        f.slow_consumer_closes = Some(m.slow_consumer_closes);
        f.mailbox_depth = m.mailbox;
    }
    Ok(report)
}

fn store(live: &Live, sum: &CounterSnapshot) {
    let c = &live.counters;
    c.connected.store(sum.connected, Ordering::Relaxed);
    c.connect_failures
        .store(sum.connect_failures, Ordering::Relaxed);
    c.sent.store(sum.sent, Ordering::Relaxed);
    c.delivered.store(sum.delivered, Ordering::Relaxed);
    c.echoes.store(sum.echoes, Ordering::Relaxed);
    c.error_events.store(sum.error_events, Ordering::Relaxed);
    c.unexpected_closes
        .store(sum.unexpected_closes, Ordering::Relaxed);
    c.slow_consumer_closes
        .store(sum.slow_consumer_closes, Ordering::Relaxed);
}

/// Combine the workers' reports: counts and rates add up, latencies merge.
pub fn merge(parts: &[WorkerResult], scenario: &Scenario) -> Report {
    let mut report = parts.first().map(|p| p.report.clone()).unwrap_or_default();
    report.scenario = scenario.name().to_owned();
    report.parameters.extend(scenario.parameters());
    let mut histogram = new_histogram();
    let mut errors = CounterSnapshot::default();
    let (mut conns, mut fails) = (0, 0);
    let (mut rate, mut sent, mut sent_ps, mut deliv, mut deliv_ps, mut pers, mut cyc) =
        (0.0, 0, 0.0, 0, 0.0, 0.0, 0.0);
    let mut notes = Vec::new();
    let mut delivery: Option<super::spread::DeliveryFigures> = None;
    let mut measured: f64 = 0.0;
    for p in parts {
        let r = &p.report;
        conns += r.connections;
        fails += r.connect_failures;
        rate += r.connect_rate_per_sec;
        sent += r.sent;
        sent_ps += r.sent_per_sec;
        deliv += r.delivered;
        deliv_ps += r.deliveries_per_sec;
        pers += r.persisted_per_sec;
        cyc += r.cycles_per_sec;
        measured = measured.max(r.measured_seconds);
        errors.merge(&r.errors);
        for n in &r.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        if let Some(d) = &r.delivery {
            match &mut delivery {
                Some(all) => all.merge(d),
                None => delivery = Some(d.clone()),
            }
        }
        if let Some(h) = decode_histogram(&p.histogram) {
            let _ = histogram.add(&h);
        }
    }
    report.connections = conns;
    report.connect_failures = fails;
    report.connect_rate_per_sec = rate;
    report.sent = sent;
    report.sent_per_sec = sent_ps;
    report.delivered = deliv;
    report.deliveries_per_sec = deliv_ps;
    report.persisted_per_sec = pers;
    report.cycles_per_sec = cyc;
    report.measured_seconds = measured;
    report.errors = errors;
    report.latency = LatencySummary::of(&histogram);
    report.notes = notes;
    report.delivery = delivery;
    report
        .notes
        .push(format!("load split over {} worker processes", parts.len()));
    report
}

/// A private temporary directory for the plan.
fn tempfile_dir() -> Result<std::path::PathBuf, LoadError> {
    let dir = std::env::temp_dir().join(format!("dialtone-load-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).map_err(|e| LoadError::Config(format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{ChurnLoad, ConnectionsLoad, FanoutLoad};

    #[test]
    fn shares_add_up_to_the_whole() {
        let s = Scenario::Connections(ConnectionsLoad {
            connections: 19_003,
            hold: Duration::from_secs(1),
        });
        let total: usize = (0..4).map(|i| s.slice(i, 4).sockets()).sum();
        assert_eq!(total, 19_003);
        let f = Scenario::Fanout(FanoutLoad {
            channels: 20,
            members: 100,
            rate: 2000.0,
            publishers: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            size: 8,
        });
        let rates: f64 = (0..3)
            .map(|i| match f.slice(i, 3) {
                Scenario::Fanout(f) => f.rate,
                _ => 0.0,
            })
            .sum();
        assert!((rates - 2000.0).abs() < 1e-6);
    }

    #[test]
    fn merged_reports_add_counts_and_merge_latencies() {
        let part = |delivered: u64, v: u64| {
            let lat = super::super::stats::Latencies::default();
            lat.record(0, v);
            WorkerResult {
                report: Report {
                    delivered,
                    deliveries_per_sec: delivered as f64,
                    connections: 10,
                    ..Report::default()
                },
                histogram: encode_histogram(&lat.merged()),
            }
        };
        let s = Scenario::Churn(ChurnLoad {
            workers: 2,
            duration: Duration::from_secs(1),
        });
        let r = merge(&[part(5, 100), part(7, 900)], &s);
        assert_eq!(r.delivered, 12);
        assert_eq!(r.connections, 20);
        assert_eq!(r.latency.count, 2);
        assert!(r.latency.max_us >= 899);
    }
}
