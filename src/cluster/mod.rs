//! Several dialtone nodes as one service: the bus seam between them and the bookkeeping each node
//! keeps about the others. PostgreSQL stays the log; the bus only carries what changed, and may
//! lose it (NATS core is at-most-once): every loss is repaired from the database by `seq`.
//!
//! - [`bus`]: the [`Bus`] trait, the one seam to the transport;
//! - [`local`]: an in-process bus (tests; several nodes in one process);
//! - [`nats`]: the NATS bus (`async-nats`), what `DIALTONE_NATS_URL` turns on;
//! - [`sequencer`]: per-channel delivery in `seq` order, duplicates dropped, gaps found;
//! - [`presence`]: which users the other nodes have online, and which nodes are alive.
//!
//! The hub drives all of it (`actors::hub::cluster`).

pub mod bus;
pub mod local;
pub mod nats;
pub mod presence;
pub mod sequencer;

pub use bus::{Bus, BusError, BusStatus, Inbound};
