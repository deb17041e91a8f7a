//! Integration tests: the real server over TLS on a fresh database per test, driven through the
//! client library (black box) and checked with SQL.
//!
//! `cargo test` runs them on PostgreSQL (`DIALTONE_TEST_DB_URL`, default the local server);
//! `DIALTONE_TEST_BACKEND=sqlite cargo test` runs the same suite on the embedded store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certs;
mod pg_tls;
mod procs;
mod support;

mod at_rest;
mod browser;
mod channel_seq;
mod cluster;
mod commit_faults;
mod commit_lanes;
mod concurrency;
mod crash_safety;
mod db_tls;
mod dependency_down;
mod device_races;
pub(crate) mod e2e;
mod embedded;
mod hard_kill;
mod hostile;
mod http_conventions;
mod idempotency;
mod key_authority;
mod listener_modes;
mod load_smoke;
mod metrics;
mod openapi;
mod password_work;
mod private_channels;
mod process_contract;
mod rate_limits;
mod rest_admin;
mod rest_auth;
mod rest_channels;
mod rest_devices;
mod rest_keys;
mod rest_users;
mod smoke;
mod tls_trust;
mod trust;
mod upgrade_v1;
mod ws_announcements;
mod ws_events;
mod ws_fuzz;
mod ws_lifecycle;
mod ws_order;
mod ws_revocation;
mod ws_shutdown;
