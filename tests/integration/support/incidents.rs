//! Server errors that must fail the test that caused them: every `ERROR` event and every panic,
//! attributed to the actix System (so to the test server) whose thread raised it.
//!
//! Each test server runs its own System; its arbiters and HTTP workers inherit it, so
//! `System::try_current()` on the raising thread names the server. A [`TestServer`] checks its
//! systems' incidents when it stops or is dropped: a panic always fails, an `ERROR` fails unless the
//! test declared it with [`TestServer::expect_error`].
//!
//! [`TestServer`]: super::TestServer
//! [`TestServer::expect_error`]: super::TestServer::expect_error

use std::sync::Mutex;

use actix_web::rt::System;

/// What went wrong on a server thread.
#[derive(Debug, Clone)]
pub struct Incident {
    pub system: usize,
    pub panic: bool,
    pub text: String,
}

static INCIDENTS: Mutex<Vec<Incident>> = Mutex::new(Vec::new());

fn record(panic: bool, text: String) {
    // Threads outside any System (the test's own, blocking-pool threads) cannot be attributed;
    // the test's own panics are its failures anyway.
    let Some(system) = System::try_current().map(|s| s.id()) else {
        return;
    };
    if let Ok(mut all) = INCIDENTS.lock() {
        all.push(Incident {
            system,
            panic,
            text,
        });
    }
}

/// Take (remove) every incident of `systems`.
pub fn take_incidents(systems: &[usize]) -> Vec<Incident> {
    let Ok(mut all) = INCIDENTS.lock() else {
        return Vec::new();
    };
    let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|i| systems.contains(&i.system));
    *all = rest;
    mine
}

/// Chain a panic hook that records panics on server threads (the default hook still prints).
pub(crate) fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        record(true, format!("panic on thread {thread}: {info}"));
        previous(info);
    }));
}

/// A tracing layer that records `ERROR` events from every target.
pub(crate) struct ErrorLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut text = format!("ERROR {}:", event.metadata().target());
        event.record(&mut Fields(&mut text));
        record(false, text);
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}
