//! The `persist` scenario: senders with a window in flight and no other subscribers: committed
//! (echoed) messages per second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::time::Instant;

use super::reader::*;
use super::runner::*;
use super::stats::{Counters, LatencySummary, Report};
use super::*;
use crate::client::ws::RawIncoming;
use crate::crypto::e2e::seal;
use crate::protocol::ws::ClientFrame;

impl Runner {
    pub(super) async fn persist(
        &self,
        report: &mut Report,
        load: PersistLoad,
    ) -> Result<(), LoadError> {
        let PersistLoad {
            senders,
            window,
            duration,
            warmup,
            size,
            channels: _,
        } = load;
        let base = Instant::now();
        let ctx = ReadCtx::new(self.live.clone(), base);
        self.live.set_phase("connecting");
        let started = Instant::now();
        let padding = "p".repeat(size.saturating_sub(24));
        // Each sender has its own channel (or shares one of `channels`) and no subscriptions:
        // every message's only delivery is its echo, the commit acknowledgement.
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
                            if matches!(ctx.on_text(i, t.as_str()), Some(m) if m.from == i) {
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
}
