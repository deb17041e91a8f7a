//! The per-socket reader: classifies every frame by the generator's own mark and counts it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::stats::{Counters, Report};
use super::*;
use crate::client::ws::{RawIncoming, WsReceiver};
use crate::protocol::ws::close_code;

pub(super) const MARK: &str = "\"client_message_id\":\"lt:";
/// How every `error` event starts.
pub(super) const ERROR_EVENT: &str = "{\"type\":\"error\"";

/// Everything the per-connection readers share.
pub(super) struct ReadCtx {
    pub(super) live: Arc<Live>,
    pub(super) base: Instant,
    /// Measured window, in nanoseconds since `base` (empty until the measurement starts).
    pub(super) window_start: AtomicU64,
    pub(super) window_end: AtomicU64,
    pub(super) echoes_in_window: AtomicU64,
    /// Closes after this are expected.
    pub(super) ending: AtomicBool,
    pub(super) first_errors: Mutex<Vec<String>>,
}

impl ReadCtx {
    pub(super) fn new(live: Arc<Live>, base: Instant) -> Arc<Self> {
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

    pub(super) fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    pub(super) fn in_window(&self, sent: u64) -> bool {
        sent >= self.window_start.load(Ordering::Relaxed)
            && sent < self.window_end.load(Ordering::Relaxed)
    }

    /// One text frame: count deliveries (by the time they were scheduled) and latency.
    /// Returns the connection index and send time when it is one of ours.
    pub(super) fn on_text(&self, me: usize, text: &str) -> Option<(usize, u64)> {
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

    pub(super) fn on_close(&self, code: u16) {
        let c = &self.live.counters;
        if code == close_code::POLICY {
            Counters::add(&c.slow_consumer_closes, 1);
        } else if !self.ending.load(Ordering::Relaxed) {
            Counters::add(&c.unexpected_closes, 1);
        }
    }
}

/// Read a socket until it ends, counting.
pub(super) async fn read_loop(me: usize, mut rx: WsReceiver, ctx: Arc<ReadCtx>) {
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

pub(super) fn first_error(ctx: &ReadCtx) -> String {
    ctx.first_errors
        .lock()
        .ok()
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| "unknown error".into())
}

pub(super) fn add_error_notes(report: &mut Report, ctx: &ReadCtx) {
    if let Ok(v) = ctx.first_errors.lock() {
        report.notes.extend(v.iter().map(|e| format!("error: {e}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn frames_are_classified_by_their_mark() {
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
