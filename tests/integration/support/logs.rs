//! The process-wide log subscriber: prints per `DIALTONE_TEST_LOG`, and feeds [`LogCapture`]s.

/// `DIALTONE_TEST_LOG=<filter>` prints the servers' logs (e.g. `dialtone=debug`); a
/// [`LogCapture`] records them.
pub(crate) fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_log_subscriber);
}

/// Buffers that currently receive the servers' logs, see [`LogCapture`].
static LOG_CAPTURES: std::sync::Mutex<Vec<std::sync::Weak<std::sync::Mutex<Vec<u8>>>>> =
    std::sync::Mutex::new(Vec::new());

/// How many [`LogCapture`]s are live (the capture layer is idle at zero).
static LOG_CAPTURING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Records every server log line of every target (dialtone, actix, rustls, diesel…) at `trace` and
/// above, while alive. Server lines are those of threads running an actix System (HTTP workers,
/// the database actor's arbiter, the channel arbiters); the tests' own clients run outside any
/// System and are not recorded (tungstenite's client, for one, traces its request headers).
///
/// A server's log comes from many threads (HTTP workers, the database actor's arbiter, the
/// channel arbiters), so a thread-local default subscriber would miss most of it: the process-wide
/// subscriber ([`install_log_subscriber`]) copies each line into every live capture. Servers of
/// tests running in parallel are recorded too — harmless for "this text never appears" checks.
pub struct LogCapture {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn start() -> Self {
        init_logging();
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        LOG_CAPTURES
            .lock()
            .unwrap()
            .push(std::sync::Arc::downgrade(&buf));
        LOG_CAPTURING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self { buf }
    }

    /// Everything recorded so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        LOG_CAPTURING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut all) = LOG_CAPTURES.lock() {
            all.retain(|w| {
                w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), std::sync::Arc::as_ptr(&self.buf))
            });
        }
    }
}

/// Writes one formatted line into every live capture.
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(all) = LOG_CAPTURES.lock() {
            for buf in all.iter().filter_map(std::sync::Weak::upgrade) {
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(bytes);
                }
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One process-wide subscriber: prints per `DIALTONE_TEST_LOG`, and feeds [`LogCapture`]s.
fn install_log_subscriber() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let print = std::env::var("DIALTONE_TEST_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    let capture = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| CaptureWriter)
        .with_filter(tracing_subscriber::filter::filter_fn(|_| {
            LOG_CAPTURING.load(std::sync::atomic::Ordering::Relaxed) > 0
                && actix_web::rt::System::try_current().is_some()
        }))
        .with_filter(dialtone::logging::env_filter(Some("trace")));
    // Captures and ERROR checks see what a server logs in production: every level, less the
    // targets `dialtone::logging` switches off.
    let errors =
        super::incidents::ErrorLayer.with_filter(dialtone::logging::env_filter(Some("trace")));
    let _ = tracing_subscriber::registry()
        .with(print)
        .with(capture)
        .with(errors)
        .try_init();
    super::incidents::install_panic_hook();
}
