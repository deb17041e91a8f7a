//! Trust v2 on the client (docs/TRUST.md): identities pinned on first use, and every device list
//! the server serves checked link by link against the pin before any key is wrapped for it.
//!
//! - [`pins`]: what a client remembers of each contact's identity, and the verdict on what the
//!   server serves now;
//! - [`lists`]: fetching a user's lists from the pinned version on and checking the chain;
//! - [`screen`]: which devices may get a key (only those of a verified list, for users who
//!   published one);
//! - [`identity`]: what a device does with its identity: the first list, pairing, reset, and
//!   checking or accepting contacts;
//! - [`bound`]: sealing for private channels, each value bound to its channel, key generation,
//!   sender and kind, and signed by the sender's device;
//! - [`authors`]: a sender device's keys, from its user's verified lists only.

pub mod authors;
pub mod bound;
pub mod identity;
pub mod lists;
pub mod pins;
pub mod screen;

pub use lists::{TrustError, verified_devices};
pub use pins::{Pin, Verdict};
