//! What the load generator reads off the server: RSS and CPU from `/proc` (when the server runs on
//! this machine) and counters from its Prometheus `/metrics`.

use std::collections::BTreeMap;

use crate::client::RestClient;

/// Linux reports `/proc/<pid>/stat` CPU times in USER_HZ, which is 100 on every x86/arm Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// Access to the server's processes (one per node) and metrics.
#[derive(Clone)]
pub struct ServerProbe {
    /// The first process (reported as the server's pid).
    pub pid: Option<u32>,
    pids: Vec<u32>,
    metrics: Option<RestClient>,
}

/// The counters the report uses from `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub persisted: u64,
    pub slow_consumer_closes: u64,
    /// actor kind → (depth, high-water mark)
    pub mailbox: BTreeMap<String, (i64, i64)>,
}

impl ServerProbe {
    /// `metrics`: a client allowed to read `/metrics` (admin token), if any.
    /// `pids`: the server's processes, summed (several nodes on this machine); none: not read.
    pub fn new(pids: Vec<u32>, metrics: Option<RestClient>) -> Self {
        Self {
            pid: pids.first().copied(),
            pids,
            metrics,
        }
    }

    /// Resident set size in bytes, summed over the processes (`None` if any cannot be read).
    pub fn rss_bytes(&self) -> Option<u64> {
        self.sum(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            parse_vm_rss(&status)
        })
    }

    /// CPU time (user + system) consumed so far, in seconds, summed over the processes.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.sum(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_cpu_ticks(&stat)
        })
        .map(|t| t as f64 / TICKS_PER_SECOND)
    }

    fn sum(&self, read: impl Fn(u32) -> Option<u64>) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|p| read(*p)).sum()
    }

    pub async fn metrics(&self) -> Option<MetricsSnapshot> {
        let text = self.metrics.as_ref()?.metrics_text().await.ok()?;
        Some(parse_metrics(&text))
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime (fields 14 and 15; the command name in field 2 may contain spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Pick dialtone's counters out of Prometheus text.
pub fn parse_metrics(text: &str) -> MetricsSnapshot {
    let mut snap = MetricsSnapshot::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name == "dialtone_messages_persisted_total" {
            snap.persisted = value as u64;
        } else if name == "dialtone_slow_consumer_closes_total" {
            snap.slow_consumer_closes = value as u64;
        } else if let Some(actor) = label(name, "dialtone_mailbox_depth{") {
            snap.mailbox.entry(actor).or_default().0 = value as i64;
        } else if let Some(actor) = label(name, "dialtone_mailbox_depth_high_water{") {
            snap.mailbox.entry(actor).or_default().1 = value as i64;
        }
    }
    snap
}

fn label(name: &str, prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let v = rest.strip_prefix("actor=\"")?;
    Some(v[..v.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        let stat = "1234 (dial tone) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn metrics_parsing() {
        let text = "# HELP x\n\
            dialtone_messages_persisted_total 1200\n\
            dialtone_slow_consumer_closes_total 2\n\
            dialtone_mailbox_depth{actor=\"db\"} 3\n\
            dialtone_mailbox_depth_high_water{actor=\"db\"} 17\n\
            dialtone_mailbox_depth{actor=\"hub\"} 0\n";
        let s = parse_metrics(text);
        assert_eq!(s.persisted, 1200);
        assert_eq!(s.slow_consumer_closes, 2);
        assert_eq!(s.mailbox["db"], (3, 17));
        assert_eq!(s.mailbox["hub"], (0, 0));
    }
}
