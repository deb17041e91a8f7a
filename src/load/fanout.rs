//! The `fanout` scenario: channels × members, publishers at an open-loop rate, send→receive latency
//! of every delivery; with several server URLs, members and publishers spread over them and every
//! delivery attributed to its publisher's node and its receiver's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::pacing::Pacer;
use super::reader::*;
use super::runner::*;
use super::spread::fanout_node;
use super::stats::{Counters, LatencySummary, Report};
use super::*;
use crate::crypto::e2e::seal;
use crate::protocol::ws::ClientFrame;

impl Runner {
    pub(super) async fn fanout(
        &self,
        report: &mut Report,
        load: FanoutLoad,
    ) -> Result<(), LoadError> {
        self.fanout_in(report, load, None).await
    }

    /// The fan-out, publishing its clock on `window` once the sockets are up (the `abuse`
    /// scenario measures its side traffic against it).
    pub(super) async fn fanout_in(
        &self,
        report: &mut Report,
        load: FanoutLoad,
        window: Option<tokio::sync::watch::Sender<Option<Window>>>,
    ) -> Result<(), LoadError> {
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
        let urls = self.target.node_urls();
        let nodes = urls.len();
        let ctx = ReadCtx::spread_over(self.live.clone(), base, nodes);
        // Socket `c × members + m` is member `m` of local channel `c`; its node follows the
        // global channel index, so a split run lays sockets out as a whole one would.
        let (share, of) = self.share;
        let place = move |i: usize| {
            let global = share + (i / members.max(1)) * of.max(1);
            fanout_node(global, i % members.max(1), publishers, nodes)
        };
        report.server_figures.rss_before_bytes = self.probe.rss_bytes();

        self.live.set_phase("connecting");
        let total = channels * members;
        let explicit = !self.options.default_subscriptions;
        let (mut conns, ramp) = self.open(total, explicit, &ctx, &place).await;
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
        if let Some(w) = &window {
            let _ = w.send(Some(Window {
                start,
                measure_start,
                measure_end,
            }));
        }
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
                let node = place(idx);
                ctx.spread.publisher_on(node);
                // Where this channel's members are: what each of its messages should reach.
                let mut members_on = vec![0u64; nodes];
                for m in 0..members {
                    members_on[place(c * members + m)] += 1;
                }
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
                            Some(format!("lt:{sent}:{idx}:{node}")),
                        );
                        if tx.send(&frame).await.is_err() {
                            Counters::add(&live.counters.send_failures, 1);
                            break;
                        }
                        Counters::add(&live.counters.sent, 1);
                        if due >= measure_start {
                            in_window.fetch_add(1, Ordering::Relaxed);
                            ctx.spread.sent_from(node, &members_on);
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
        // After the close: a late duplicate or reordering in the drain still counts.
        report.delivery = Some(ctx.spread.figures(&urls));
        add_error_notes(report, &ctx);
        Ok(())
    }
}
