//! dialtone: a self-hosted real-time chat backend with end-to-end encryption.
//!
//! The server stores and relays client ciphertext; it never sees message plaintext. This crate is a
//! library with thin binaries (`dialtone`, `dialtone-load`):
//!
//! - [`server::run`] starts the whole server on a bound listener until a shutdown future resolves,
//!   exactly as `dialtone serve` does, so tests drive the real thing on port 0;
//! - [`protocol`] holds every wire type, shared by the server, [`client`], the CLI and the load
//!   generator so they cannot drift;
//! - [`client`] is the E2E client library (REST + WebSocket over rustls); it only uses
//!   [`protocol`], [`crypto`] and the wire, never server internals.
//!
//! Layers point one way: [`http`]/[`ws`] handlers → [`actors`] → [`service`] → [`db`] + [`crypto`].

pub mod actors;
pub mod app;
pub mod bootstrap;
pub mod client;
pub mod cluster;

pub mod config;
pub mod crypto;
pub mod data_dir;
pub mod db;
pub mod error;
pub mod http;
pub mod limits;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod service;
pub mod tls;
pub mod ws;

pub use config::Config;
pub use server::run;
