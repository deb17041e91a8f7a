//! Reading the server's Prometheus exposition (`GET /metrics`, admin token) in tests.

use super::server::TestServer;

/// One scrape of `/metrics`.
pub struct Scrape(pub String);

impl Scrape {
    /// Scrape `server` now.
    pub async fn of(server: &TestServer) -> Self {
        Scrape(server.admin().metrics_text().await.expect("GET /metrics"))
    }

    /// The value of the sample named exactly `series` (name plus `{labels}` as exposed, e.g.
    /// `dialtone_http_responses_total{status="404"}`); `None` when absent.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| {
                    value
                        .parse()
                        .unwrap_or_else(|e| panic!("sample {l:?} is not a number: {e}"))
                })
            })
    }

    /// A counter's value; an absent counter has not moved yet (a labelled family exposes a label
    /// set only once it was counted), so it reads 0.
    pub fn counter(&self, series: &str) -> u64 {
        let v = self.value(series).unwrap_or(0.0);
        assert!(v >= 0.0 && v.fract() == 0.0, "{series} = {v}, not a count");
        v as u64
    }
}

/// The `http_responses` series of one status.
pub fn http_status_series(status: u16) -> String {
    format!("dialtone_http_responses_total{{status=\"{status}\"}}")
}

/// Sockets closed with 1008 because their outbound queue overflowed.
pub const SLOW_CONSUMER_CLOSES: &str = "dialtone_slow_consumer_closes_total";
