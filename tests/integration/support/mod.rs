//! Test harness: a real server (real TLS, real database) per test.
//!
//! Each [`TestServer`] gets a fresh database — a new PostgreSQL database created from
//! `DIALTONE_TEST_DB_URL` (default: the local server), or a new SQLite file when
//! `DIALTONE_TEST_BACKEND=sqlite` — binds port 0, and serves its generated self-signed certificate,
//! which clients pin by fingerprint. The server runs in its own thread with its own actix System,
//! exactly as `dialtone serve` runs it; tests talk to it only through the client library and SQL.

#![allow(dead_code, unused_imports)]

use std::time::Duration;

mod asserts;
mod browser;
mod cluster;
mod db;
mod envelopes;
mod faults;
mod incidents;
mod logs;
mod metrics;
mod pg_frontend;
mod proxy;
mod races;
mod rekey;
mod server;
mod ws;

pub use asserts::*;
pub use browser::*;
pub use cluster::*;
pub use db::*;
pub use envelopes::*;
pub use faults::*;
pub use incidents::*;
pub use logs::*;
pub use metrics::*;
pub use proxy::*;
pub use races::*;
pub use rekey::*;
pub use server::*;
pub use ws::*;

pub const WAIT: Duration = Duration::from_secs(10);
