//! The log filter every dialtone process starts with: the operator's `RUST_LOG` (default `info`),
//! minus the library targets whose ERROR lines a remote peer can write at will.
//!
//! actix-http logs at ERROR, from inside its HTTP/1 dispatcher (`actix_http::h1::dispatcher`),
//! a request it cannot parse (`stream error: request parse error`: plain HTTP garbage, a TLS
//! hello sent to a plain listener, junk after a TLS handshake). That cannot be fixed at our
//! source, and every ERROR that target emits is caused by the peer, so the target is off unless
//! `RUST_LOG` names it. (WebSockets leave the dispatcher at their 101, `ws::conn`, and log their
//! own ends at DEBUG.)

use tracing_subscriber::EnvFilter;

/// Targets switched off by default (a directive in `RUST_LOG` that names one wins).
pub const QUIETED: &[&str] = &["actix_http::h1::dispatcher"];

/// `spec` (an `EnvFilter` directive list, e.g. `RUST_LOG`) with [`QUIETED`] off unless it names
/// them; an invalid `spec` falls back to `info`.
pub fn env_filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec.unwrap_or("info");
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in QUIETED {
        if !spec.contains(target)
            && let Ok(directive) = format!("{target}=off").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Records the messages of the events that pass `filter`.
    fn logged(filter: EnvFilter, emit: impl FnOnce()) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(move || Line(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
        tracing::subscriber::with_default(subscriber, emit);
        seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    struct Line(Arc<Mutex<Vec<String>>>);
    impl std::io::Write for Line {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.push(String::from_utf8_lossy(b).into_owned());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    use tracing_subscriber::Layer;

    fn emit() {
        tracing::error!(target: "actix_http::h1::dispatcher", "stream error: request parse error");
        tracing::error!(target: "dialtone::server", "ours");
    }

    #[test]
    fn peer_caused_actix_errors_are_off_by_default_and_ours_are_not() {
        let lines = logged(env_filter(None), emit);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("ours"), "{lines:?}");
        let lines = logged(env_filter(Some("debug")), emit);
        assert_eq!(lines.len(), 1, "{lines:?}");
    }

    #[test]
    fn naming_the_target_in_rust_log_brings_it_back() {
        let lines = logged(
            env_filter(Some("info,actix_http::h1::dispatcher=error")),
            emit,
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
    }
}
