//! Scenarios without message traffic: `connections` (idle sessions held, RSS per session) and
//! `churn` (connect and disconnect in a loop).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::reader::*;
use super::runner::*;
use super::stats::{Counters, Report};
use super::*;
use crate::client::ConnectAs;

impl Runner {
    pub(super) async fn connections(
        &self,
        report: &mut Report,
        load: ConnectionsLoad,
    ) -> Result<(), LoadError> {
        let ConnectionsLoad { connections, hold } = load;
        let ctx = ReadCtx::new(self.live.clone(), Instant::now());
        let before = self.probe.rss_bytes();
        report.server_figures.rss_before_bytes = before;
        self.live.set_phase("connecting");
        let (conns, ramp) = self
            .open(connections, true, &ctx, &self.round_robin())
            .await;
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
        let held = self.probe.rss_bytes();
        report.server_figures.rss_held_bytes = held;
        if let (Some(b), Some(h)) = (before, held) {
            report.server_figures.rss_per_connection_held_bytes =
                Some(h.saturating_sub(b) / established as u64);
        }
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

    pub(super) async fn churn(
        &self,
        report: &mut Report,
        load: ChurnLoad,
    ) -> Result<(), LoadError> {
        let ChurnLoad { workers, duration } = load;
        self.live.set_phase("churning");
        let end = Instant::now() + duration;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                // Worker `w` churns on node `w mod nodes`.
                let connector = self.connector(w).clone();
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
