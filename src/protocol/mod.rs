//! Wire types of the dialtone v1 protocol: REST bodies ([`rest`]) and WebSocket frames ([`ws`]);
//! trust v2 additions in [`trust`] and [`members`] (docs/TRUST.md).
//!
//! One definition shared by the server, the client library, the CLI and the load generator, so they
//! cannot drift. Field names are dialtone v1's; additions are optional fields that v1 clients ignore.
//! Request bodies reject unknown fields (SPEC §3); WebSocket frames tolerate them (v1 clients send
//! extras).

mod redact;
pub use redact::REDACTED;
pub mod members;
pub mod rest;
pub mod trust;
pub mod ws;

/// Format a timestamp as the wire expects: RFC 3339, UTC, `Z`, microseconds.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
