//! The cluster's metrics (`dialtone_cluster_*`): what crossed the bus and what repair had to do.
//! They stay at zero on a single node.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct ClusterMetrics {
    pub bus_out: Counter,
    pub bus_dropped: Counter,
    pub bus_in: Counter,
    pub bus_undecodable: Counter,
    pub gap_fills: Counter,
    pub gap_filled_messages: Counter,
    pub repairs: Counter,
    pub duplicates_dropped: Counter,
    pub held: Gauge,
    pub held_evicted: Counter,
    pub peers: Gauge,
    pub connected: Gauge,
    pub reconnects: Counter,
    pub session_checks: Counter,
    pub sessions_closed_by_check: Counter,
}

impl ClusterMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "bus_out",
            "Messages this node published on the cluster bus",
            self.bus_out.clone(),
        );
        r.register(
            "bus_dropped",
            "Messages not published because the bus queue was full or closed (peers repair them)",
            self.bus_dropped.clone(),
        );
        r.register(
            "bus_in",
            "Messages received from other nodes",
            self.bus_in.clone(),
        );
        r.register(
            "bus_undecodable",
            "Bus messages ignored: bad signature (another cluster's key, a forgery) or undecodable",
            self.bus_undecodable.clone(),
        );
        r.register(
            "gap_fills",
            "Reads from the database to fill a seq gap",
            self.gap_fills.clone(),
        );
        r.register(
            "gap_filled_messages",
            "Channel messages delivered by a gap fill rather than by the bus",
            self.gap_filled_messages.clone(),
        );
        r.register(
            "repairs",
            "Periodic and after-reconnect comparisons of every channel's last seq",
            self.repairs.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Channel messages dropped because their seq was already delivered",
            self.duplicates_dropped.clone(),
        );
        r.register(
            "held_messages",
            "Channel messages waiting behind a seq gap",
            self.held.clone(),
        );
        r.register(
            "held_evicted",
            "Messages let go from a full gap hold (MAX_HELD_PER_CHANNEL); the gap fill reads them",
            self.held_evicted.clone(),
        );
        r.register(
            "peers",
            "Other nodes heard from within the peer timeout",
            self.peers.clone(),
        );
        r.register(
            "bus_connected",
            "1 while the NATS connection is up",
            self.connected.clone(),
        );
        r.register(
            "bus_reconnects",
            "NATS connections re-established after a loss",
            self.reconnects.clone(),
        );
        r.register(
            "session_checks",
            "Re-checks of this node's sockets against the database's login sessions",
            self.session_checks.clone(),
        );
        r.register(
            "sessions_closed_by_check",
            "Sockets closed because the re-check found their session revoked or user disabled",
            self.sessions_closed_by_check.clone(),
        );
    }
}
