//! Measurements and the report: latency histograms (HDR), counters, and the final table / JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency tracked (60 s, in microseconds); larger values are clamped.
const MAX_US: u64 = 60_000_000;
const SHARDS: usize = 16;

/// A new latency histogram: 1 µs .. 60 s, 3 significant digits.
#[allow(clippy::expect_used)] // constant, valid bounds: creation cannot fail
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram as text (HDR V2 format, base64), for worker processes to report.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for a valid histogram.
    let _ = V2Serializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Option<Histogram<u64>> {
    use base64::Engine;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).ok()
}

/// Latencies recorded from many tasks: sharded to keep lock contention away from the hot path.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }
}

impl Latencies {
    /// Record one latency (microseconds) from the task with id `who`.
    pub fn record(&self, who: usize, micros: u64) {
        if let Ok(mut h) = self.shards[who % SHARDS].lock() {
            h.saturating_record(micros.clamp(1, MAX_US));
        }
    }

    /// Everything recorded so far, merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            if let Ok(h) = s.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// Live counters, shared by the workers and the progress display.
#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub connect_failures: AtomicU64,
    pub sent: AtomicU64,
    pub send_failures: AtomicU64,
    pub delivered: AtomicU64,
    pub echoes: AtomicU64,
    pub error_events: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub unexpected_closes: AtomicU64,
    pub decrypt_failures: AtomicU64,
    pub cycles: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            connected: g(&self.connected),
            connect_failures: g(&self.connect_failures),
            sent: g(&self.sent),
            send_failures: g(&self.send_failures),
            delivered: g(&self.delivered),
            echoes: g(&self.echoes),
            error_events: g(&self.error_events),
            slow_consumer_closes: g(&self.slow_consumer_closes),
            unexpected_closes: g(&self.unexpected_closes),
            decrypt_failures: g(&self.decrypt_failures),
            cycles: g(&self.cycles),
        }
    }
}

/// A copy of the counters (also what worker processes report).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub connected: u64,
    pub connect_failures: u64,
    pub sent: u64,
    pub send_failures: u64,
    pub delivered: u64,
    pub echoes: u64,
    pub error_events: u64,
    pub slow_consumer_closes: u64,
    pub unexpected_closes: u64,
    pub decrypt_failures: u64,
    pub cycles: u64,
}

impl CounterSnapshot {
    pub fn merge(&mut self, o: &CounterSnapshot) {
        self.connected += o.connected;
        self.connect_failures += o.connect_failures;
        self.sent += o.sent;
        self.send_failures += o.send_failures;
        self.delivered += o.delivered;
        self.echoes += o.echoes;
        self.error_events += o.error_events;
        self.slow_consumer_closes += o.slow_consumer_closes;
        self.unexpected_closes += o.unexpected_closes;
        self.decrypt_failures += o.decrypt_failures;
        self.cycles += o.cycles;
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Server-side figures, when the server is local (`/proc`) and `/metrics` is reachable.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerFigures {
    pub pid: Option<u32>,
    pub rss_before_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// (RSS at full load − RSS before connecting) / connections.
    pub rss_per_connection_bytes: Option<u64>,
    /// `connections` only: RSS at the end of the hold, once the connect ramp's bursts (each new
    /// socket announced to every open one) have settled.
    pub rss_held_bytes: Option<u64>,
    /// (RSS at the end of the hold − RSS before connecting) / connections.
    pub rss_per_connection_held_bytes: Option<u64>,
    /// CPU time used during the measured window, as a share of one core (100 = one core busy).
    pub cpu_percent: Option<f64>,
    /// Actor kind → (depth at the end, high-water mark).
    pub mailbox_depth: BTreeMap<String, (i64, i64)>,
    /// `dialtone_messages_persisted` grew by this much during the measured window.
    pub persisted_in_window: Option<u64>,
    pub slow_consumer_closes: Option<u64>,
}

/// The final report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub server: String,
    pub started_at: String,
    /// Scenario parameters as given.
    pub parameters: BTreeMap<String, String>,
    pub measured_seconds: f64,
    pub connections: u64,
    pub connect_failures: u64,
    pub connect_rate_per_sec: f64,
    pub sent: u64,
    pub sent_per_sec: f64,
    pub delivered: u64,
    pub deliveries_per_sec: f64,
    /// Own messages echoed back (= committed) per second.
    pub persisted_per_sec: f64,
    pub latency: LatencySummary,
    pub errors: CounterSnapshot,
    pub cycles_per_sec: f64,
    pub server_figures: ServerFigures,
    /// The `abuse` scenario's legitimate REST calls and flood answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abuse: Option<super::abuse::AbuseFigures>,
    /// The fan-out's deliveries per server URL and across them, duplicates and order violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<super::spread::DeliveryFigures>,
    pub notes: Vec<String>,
}

impl Report {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("scenario".into(), self.scenario.clone()),
            ("server".into(), self.server.clone()),
            ("started".into(), self.started_at.clone()),
        ];
        for (k, v) in &self.parameters {
            rows.push((format!("  {k}"), v.clone()));
        }
        let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
        rows.extend([
            ("measured".into(), format!("{:.1} s", self.measured_seconds)),
            (
                "connections".into(),
                format!(
                    "{} ok, {} failed, {:.0}/s",
                    self.connections, self.connect_failures, self.connect_rate_per_sec
                ),
            ),
            ("sent".into(), format!("{} ({:.0}/s)", self.sent, self.sent_per_sec)),
            (
                "delivered".into(),
                format!("{} ({:.0}/s)", self.delivered, self.deliveries_per_sec),
            ),
            ("persisted (echoed)".into(), format!("{:.0}/s", self.persisted_per_sec)),
            (
                "latency p50/p90/p99".into(),
                format!(
                    "{} / {} / {}",
                    ms(self.latency.p50_us),
                    ms(self.latency.p90_us),
                    ms(self.latency.p99_us)
                ),
            ),
            (
                "latency p99.9/max".into(),
                format!("{} / {}", ms(self.latency.p999_us), ms(self.latency.max_us)),
            ),
            (
                "errors".into(),
                format!(
                    "send {}, error events {}, decrypt {}, unexpected closes {}, slow-consumer closes {}",
                    self.errors.send_failures,
                    self.errors.error_events,
                    self.errors.decrypt_failures,
                    self.errors.unexpected_closes,
                    self.errors.slow_consumer_closes
                ),
            ),
        ]);
        if self.cycles_per_sec > 0.0 {
            rows.push((
                "churn cycles".into(),
                format!("{:.0}/s", self.cycles_per_sec),
            ));
        }
        let s = &self.server_figures;
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        if let Some(b) = s.rss_before_bytes {
            rows.push(("server RSS before".into(), mib(b)));
        }
        if let Some(b) = s.rss_peak_bytes {
            rows.push(("server RSS at load".into(), mib(b)));
        }
        if let Some(b) = s.rss_per_connection_bytes {
            rows.push((
                "server RSS / connection".into(),
                format!("{:.1} KiB", b as f64 / 1024.0),
            ));
        }
        if let Some(b) = s.rss_per_connection_held_bytes {
            rows.push((
                "server RSS / connection, end of hold".into(),
                format!("{:.1} KiB", b as f64 / 1024.0),
            ));
        }
        if let Some(c) = s.cpu_percent {
            rows.push(("server CPU".into(), format!("{c:.0}% of one core")));
        }
        if let Some(p) = s.persisted_in_window {
            rows.push(("server persisted (metrics)".into(), p.to_string()));
        }
        for (actor, (depth, high)) in &s.mailbox_depth {
            rows.push((
                format!("mailbox {actor}"),
                format!("depth {depth}, high-water {high}"),
            ));
        }
        if let Some(d) = &self.delivery {
            rows.extend(d.rows());
        }
        if let Some(a) = &self.abuse {
            rows.extend(a.rows());
        }
        for n in &self.notes {
            rows.push(("note".into(), n.clone()));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let lat = Latencies::default();
        for v in 1..=1000u64 {
            lat.record(v as usize, v * 10);
        }
        let s = LatencySummary::of(&lat.merged());
        assert_eq!(s.count, 1000);
        // HDR keeps 3 significant digits: values are exact to within 0.1 %.
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 1000 + 1;
        assert!(near(s.p50_us, 5000), "{s:?}");
        assert!(near(s.p90_us, 9000), "{s:?}");
        assert!(near(s.p99_us, 9900), "{s:?}");
        assert!(near(s.p999_us, 9990), "{s:?}");
        assert!(near(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5005.0).abs() < 10.0);
    }

    #[test]
    fn shards_merge_and_out_of_range_values_clamp() {
        let lat = Latencies::default();
        lat.record(0, 0);
        lat.record(1, u64::MAX);
        let h = lat.merged();
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_US - MAX_US / 1000);
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn histograms_survive_the_trip_between_processes() {
        let lat = Latencies::default();
        for v in [5u64, 50, 500, 5000] {
            lat.record(0, v);
        }
        let h = lat.merged();
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(LatencySummary::of(&back), LatencySummary::of(&h));
        assert!(decode_histogram("not base64!").is_none());
    }

    #[test]
    fn report_json_shape() {
        let mut r = Report {
            scenario: "fanout".into(),
            delivered: 10,
            ..Report::default()
        };
        r.server_figures.mailbox_depth.insert("db".into(), (1, 5));
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "scenario",
            "server",
            "started_at",
            "parameters",
            "measured_seconds",
            "connections",
            "connect_failures",
            "connect_rate_per_sec",
            "sent",
            "sent_per_sec",
            "delivered",
            "deliveries_per_sec",
            "persisted_per_sec",
            "latency",
            "errors",
            "cycles_per_sec",
            "server_figures",
            "notes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in [
            "count", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
        ] {
            assert!(v["latency"].get(key).is_some(), "missing latency.{key}");
        }
        assert_eq!(
            v["server_figures"]["mailbox_depth"]["db"],
            serde_json::json!([1, 5])
        );
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert!(r.table().contains("mailbox db"));
    }
}
