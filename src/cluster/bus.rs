//! The cluster bus seam: publish to every node, receive what every node published.
//!
//! Delivery is at-most-once and, per publishing node, in publish order (NATS core semantics).
//! Nothing above this trait relies on more: order across nodes comes from `seq`, and losses are
//! repaired from the database.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

/// One message received from the bus.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub subject: String,
    pub payload: Bytes,
}

/// The connection as the node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStatus {
    pub connected: bool,
    /// Times a connection was established (the first one included): a rise means "reconnected",
    /// and what was published meanwhile may be lost.
    pub connects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The publish queue is full: this message will not reach the peers (repair heals it).
    #[error("cluster bus publish queue full")]
    Full,
    #[error("cluster bus closed")]
    Closed,
    #[error("cluster bus: {0}")]
    Transport(String),
}

/// The transport between nodes.
pub trait Bus: Send + Sync + 'static {
    /// Queue `payload` on `subject` for every subscriber, this node's included. Never waits.
    fn publish(&self, subject: String, payload: Bytes) -> Result<(), BusError>;

    /// Receive everything published on subjects matching `filter` (NATS wildcards: `a.*`, `a.>`)
    /// from now on. The receiver is bounded; when its reader falls behind, the transport drops
    /// messages, which the reader finds as gaps.
    fn subscribe(
        &self,
        filter: String,
    ) -> BoxFuture<'static, Result<mpsc::Receiver<Inbound>, BusError>>;

    /// The connection state, updated as it changes.
    fn status(&self) -> watch::Receiver<BusStatus>;
}

/// Whether `subject` matches a NATS subscription `filter` (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("d.>", "d.ch.x"));
        assert!(subject_matches("d.>", "d.ev"));
        assert!(!subject_matches("d.>", "d"));
        assert!(!subject_matches("d.>", "e.ev"));
        assert!(subject_matches("d.*.x", "d.ch.x"));
        assert!(!subject_matches("d.*", "d.ch.x"));
        assert!(subject_matches("d.ev", "d.ev"));
        assert!(!subject_matches("d.ev", "d.evx"));
    }
}
