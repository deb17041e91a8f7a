//! The per-socket reader: classifies every frame by the generator's own mark and counts it, and
//! checks each `channel.message.new` for duplicates and order and attributes it to the nodes of its
//! publisher and receiver.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::ledger::{Ledger, Received};
use super::spread::Spread;
use super::stats::{Counters, Report};
use super::*;
use crate::client::ws::{RawIncoming, WsReceiver};
use crate::protocol::ws::close_code;

/// The generator marks the `client_message_id` of what it sends: `lt:<sent>:<socket>[:<node>]`,
/// the scheduled send time (nanoseconds since the run's start), the publishing socket's index and,
/// in a fan-out, the index of the server URL that socket is on.
pub(super) const MARK: &str = "\"client_message_id\":\"lt:";
/// How every `channel.message.new` starts (`type` is the first field the server writes).
pub(super) const NEW_MESSAGE_EVENT: &str = "{\"type\":\"channel.message.new\"";
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
    /// Deliveries per node, duplicates and order (a fan-out reports it).
    pub(super) spread: Spread,
}

/// What a marked frame says about the message it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    /// The publishing socket.
    pub(super) from: usize,
    /// Its scheduled send time, nanoseconds since the run's start.
    pub(super) sent: u64,
    /// The publishing socket's node (absent outside a fan-out).
    pub(super) node: Option<usize>,
}

impl ReadCtx {
    pub(super) fn new(live: Arc<Live>, base: Instant) -> Arc<Self> {
        Self::spread_over(live, base, 1)
    }

    /// Readers for sockets spread over `nodes` server URLs.
    pub(super) fn spread_over(live: Arc<Live>, base: Instant, nodes: usize) -> Arc<Self> {
        Arc::new(Self {
            live,
            base,
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            echoes_in_window: AtomicU64::new(0),
            ending: AtomicBool::new(false),
            first_errors: Mutex::new(Vec::new()),
            spread: Spread::new(nodes),
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
    /// Returns its mark when it is one of ours.
    pub(super) fn on_text(&self, me: usize, text: &str) -> Option<Mark> {
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
        let mut parts = rest[..end].split(':');
        let sent: u64 = parts.next()?.parse().ok()?;
        let from: usize = parts.next()?.parse().ok()?;
        let node = match parts.next() {
            Some(n) => Some(n.parse().ok()?),
            None => None,
        };
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
        Some(Mark { from, sent, node })
    }

    /// A marked frame received on a socket on node `node`: when it is a new message, check it
    /// against the socket's ledger and count it for its publisher's node and ours.
    pub(super) fn attribute(&self, node: usize, ledger: &mut Ledger, text: &str, mark: &Mark) {
        if !text.starts_with(NEW_MESSAGE_EVENT) {
            return;
        }
        let verdict = ledger.observe(&Received::from_text(text, mark.from, mark.sent));
        self.spread.received(
            mark.node.unwrap_or(0),
            node,
            verdict,
            self.in_window(mark.sent),
        );
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

/// Read socket `me` (on node `node`) until it ends, counting.
pub(super) async fn read_loop(me: usize, node: usize, mut rx: WsReceiver, ctx: Arc<ReadCtx>) {
    let mut ledger = Ledger::default();
    loop {
        match rx.next_raw().await {
            Ok(RawIncoming::Text(t)) => {
                let text = t.as_str();
                if let Some(mark) = ctx.on_text(me, text) {
                    ctx.attribute(node, &mut ledger, text, &mark);
                }
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
        let mark = Mark {
            from: 7,
            sent: 5,
            node: None,
        };
        assert_eq!(ctx.on_text(7, own), Some(mark));
        assert_eq!(ctx.on_text(3, own), Some(mark));
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

    #[test]
    fn new_messages_are_attributed_to_both_nodes_and_checked() {
        let live = Arc::new(Live::default());
        let ctx = ReadCtx::spread_over(live, Instant::now(), 2);
        ctx.window_start.store(0, Ordering::Relaxed);
        ctx.window_end.store(u64::MAX - 1, Ordering::Relaxed);
        let frame = |id: &str, seq: i64, sent: u64| {
            format!(
                r#"{{"type":"channel.message.new","message_id":"{id}","channel_id":"c","client_message_id":"lt:{sent}:4:1","seq":{seq}}}"#
            )
        };
        let mut ledger = Ledger::default();
        let mut feed = |text: String| {
            let mark = ctx.on_text(0, &text).unwrap();
            assert_eq!(mark.node, Some(1));
            ctx.attribute(0, &mut ledger, &text, &mark);
        };
        feed(frame("m1", 1, 10));
        feed(frame("m2", 2, 20));
        feed(frame("m2", 2, 20));
        feed(frame("m0", 1, 5));
        let f = ctx.spread.figures(&["a".into(), "b".into()]);
        assert_eq!((f.duplicates, f.order_violations), (1, 1));
        // Publisher on node 1, receiver on node 0: cross-node, first receipts only.
        assert_eq!(f.cross_node.map(|c| c.delivered), Some(3));
        assert_eq!(f.same_node.delivered, 0);
        // Only new messages are checked: an echo-less error or other event is not.
        let other = r#"{"type":"presence.updated","client_message_id":"lt:30:4:1"}"#;
        let mark = ctx.on_text(0, other).unwrap();
        ctx.attribute(0, &mut Ledger::default(), other, &mark);
        assert_eq!(ctx.spread.figures(&[]).order_checked_by_seq, 3);
    }
}
