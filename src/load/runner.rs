//! The runner's shared machinery: opening and closing sockets, sampling RSS, reading the server's
//! figures for the measured window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::time::Instant;

use super::probe::{MetricsSnapshot, ServerProbe};
use super::provision::{LoadChannel, LoadUser, Provisioned};
use super::reader::*;
use super::stats::{Counters, Report, ServerFigures};
use super::*;
use crate::client::ws::WsSender;
use crate::client::{ClientResult, ConnectAs, WsClient, WsConnector};

pub(super) struct Runner {
    pub(super) target: Target,
    /// One per server URL, node `i` at index `i` (at least one).
    pub(super) connectors: Vec<WsConnector>,
    /// This process's share of the run: `(index, of)` (a fan-out's local channel `k` is global
    /// channel `index + k × of`).
    pub(super) share: (usize, usize),
    pub(super) options: Options,
    pub(super) live: Arc<Live>,
    pub(super) probe: ServerProbe,
    pub(super) provisioned: Provisioned,
}

/// A run's clock, for side traffic measured against the same window as the fan-out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// Traffic starts (the warm-up begins).
    pub(super) start: Instant,
    pub(super) measure_start: Instant,
    pub(super) measure_end: Instant,
}

/// A connected socket's sending half and its reader task.
pub(super) struct Conn {
    pub(super) tx: WsSender,
    pub(super) reader: tokio::task::JoinHandle<()>,
}

impl Runner {
    pub(super) fn user(&self, i: usize) -> &LoadUser {
        &self.provisioned.users[i % self.provisioned.users.len()]
    }

    pub(super) fn channel(&self, i: usize) -> &LoadChannel {
        &self.provisioned.channels[i % self.provisioned.channels.len()]
    }

    /// The connector of node `node` (taken modulo the number of URLs).
    pub(super) fn connector(&self, node: usize) -> &WsConnector {
        &self.connectors[node % self.connectors.len()]
    }

    /// Where socket `i` goes outside a fan-out: round-robin, node `i mod nodes`.
    pub(super) fn round_robin(&self) -> impl Fn(usize) -> usize + Sync + use<> {
        let nodes = self.connectors.len().max(1);
        move |i| i % nodes
    }

    /// Connect socket `i` as its user, from its source address, to node `i mod nodes`.
    pub(super) async fn connect(&self, i: usize, subscribe_none: bool) -> ClientResult<WsClient> {
        self.connect_on(i, (self.round_robin())(i), subscribe_none)
            .await
    }

    /// Connect socket `i` as its user, from its source address, to node `node`.
    pub(super) async fn connect_on(
        &self,
        i: usize,
        node: usize,
        subscribe_none: bool,
    ) -> ClientResult<WsClient> {
        let ips = &self.options.source_ips;
        self.connector(node)
            .connect(&ConnectAs {
                token: &self.user(i).token,
                subscribe_none,
                token_in_subprotocol: false,
                local_addr: (!ips.is_empty()).then(|| ips[i % ips.len()]),
            })
            .await
    }

    /// Open `n` sockets (index-preserving; failures are `None`), socket `i` on node `place(i)`,
    /// each with a reader task.
    pub(super) async fn open(
        &self,
        n: usize,
        subscribe_none: bool,
        ctx: &Arc<ReadCtx>,
        place: &(dyn Fn(usize) -> usize + Sync),
    ) -> (Vec<Option<Conn>>, Duration) {
        let started = Instant::now();
        let conns: Vec<Option<Conn>> = stream::iter(0..n)
            .map(|i| {
                let ctx = ctx.clone();
                let node = place(i);
                async move {
                    match self.connect_on(i, node, subscribe_none).await {
                        Ok(ws) => {
                            Counters::add(&self.live.counters.connected, 1);
                            ctx.spread.socket_on(node);
                            let (tx, rx) = ws.split();
                            let reader = tokio::spawn(read_loop(i, node, rx, ctx));
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
    pub(super) async fn close_all(&self, conns: Vec<Option<Conn>>, ctx: &Arc<ReadCtx>) {
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
    pub(super) fn sample_rss(&self) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Option<u64>>) {
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
    pub(super) async fn window_figures(
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
}
