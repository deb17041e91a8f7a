//! Sockets spread over several server URLs (nodes of one deployment): where each socket goes, the
//! shared tally of expected and delivered messages per (sender node, receiver node), duplicates
//! and order violations, and the fan-out report's figures built from it.
//!
//! Node `i` is the `i`-th URL given. Which node a delivery crossed from is known from the wire
//! alone: the publisher's mark names its socket, and the reader knows its own socket's node.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::ledger::{Basis, Verdict};

/// Node of fan-out member `m` of global channel `c`, with `publishers` publishing members per
/// channel and `nodes` URLs: `(c × publishers + m) mod nodes`.
///
/// Members of a channel go round-robin over the nodes, and so do publishers (publisher `p` of
/// channel `c` is publisher number `c × publishers + p` of the run), so every node hosts
/// publishers as soon as there are as many publishers as nodes, whatever the channel size. The
/// global channel index keeps the layout the same when the run is split over processes.
pub fn fanout_node(c: usize, m: usize, publishers: usize, nodes: usize) -> usize {
    (c * publishers + m) % nodes.max(1)
}

/// The live tally, shared by the readers and publishers of one run.
#[derive(Debug)]
pub struct Spread {
    nodes: usize,
    /// `nodes × nodes`, index `sender × nodes + receiver`: in-window deliveries expected and
    /// received (first receipts only).
    expected: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    /// Per node: sockets established, publishers, messages sent in the window.
    sockets: Vec<AtomicU64>,
    publishers: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
    duplicates: AtomicU64,
    order_violations: AtomicU64,
    by_seq: AtomicU64,
    by_send_order: AtomicU64,
}

impl Spread {
    pub fn new(nodes: usize) -> Self {
        let nodes = nodes.max(1);
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            nodes,
            expected: zeros(nodes * nodes),
            delivered: zeros(nodes * nodes),
            sockets: zeros(nodes),
            publishers: zeros(nodes),
            sent: zeros(nodes),
            duplicates: AtomicU64::new(0),
            order_violations: AtomicU64::new(0),
            by_seq: AtomicU64::new(0),
            by_send_order: AtomicU64::new(0),
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    fn at(&self, node: usize) -> usize {
        node % self.nodes
    }

    pub fn socket_on(&self, node: usize) {
        self.sockets[self.at(node)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn publisher_on(&self, node: usize) {
        self.publishers[self.at(node)].fetch_add(1, Ordering::Relaxed);
    }

    /// A publisher on `sender` sent one message in the window to a channel with
    /// `members_on[r]` members on node `r`.
    pub fn sent_from(&self, sender: usize, members_on: &[u64]) {
        let s = self.at(sender);
        self.sent[s].fetch_add(1, Ordering::Relaxed);
        for (r, &n) in members_on.iter().enumerate().take(self.nodes) {
            self.expected[s * self.nodes + r].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A socket on `receiver` got a message from a publisher on `sender`; `in_window`: it was
    /// sent in the measured window (only those count as deliveries; every receipt is checked for
    /// duplicates and order).
    pub fn received(&self, sender: usize, receiver: usize, verdict: Verdict, in_window: bool) {
        let counter = match verdict {
            Verdict::Duplicate => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Verdict::OutOfOrder(b) => {
                self.order_violations.fetch_add(1, Ordering::Relaxed);
                b
            }
            Verdict::InOrder(b) => b,
        };
        match counter {
            Basis::Seq => &self.by_seq,
            Basis::SendOrder => &self.by_send_order,
        }
        .fetch_add(1, Ordering::Relaxed);
        if in_window {
            let i = self.at(sender) * self.nodes + self.at(receiver);
            self.delivered[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The report's figures; `urls[i]` is node `i`.
    pub fn figures(&self, urls: &[String]) -> DeliveryFigures {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let n = self.nodes;
        let several = n > 1;
        let mut same = Flow::default();
        let mut cross = Flow::default();
        let nodes = (0..n)
            .map(|r| {
                let mut to_me = Flow::default();
                let mut from_others = Flow::default();
                for s in 0..n {
                    let flow = Flow {
                        expected: g(&self.expected[s * n + r]),
                        delivered: g(&self.delivered[s * n + r]),
                    };
                    to_me.add(&flow);
                    if s == r {
                        same.add(&flow);
                    } else {
                        from_others.add(&flow);
                        cross.add(&flow);
                    }
                }
                NodeFigures {
                    url: urls.get(r).cloned().unwrap_or_default(),
                    sockets: g(&self.sockets[r]),
                    publishers: g(&self.publishers[r]),
                    sent: g(&self.sent[r]),
                    expected: to_me.expected,
                    delivered: to_me.delivered,
                    from_other_nodes: several.then_some(from_others),
                }
            })
            .collect();
        let mut f = DeliveryFigures {
            nodes,
            same_node: same,
            cross_node: several.then_some(cross),
            cross_node_delivery_ratio: None,
            duplicates: g(&self.duplicates),
            order_violations: g(&self.order_violations),
            order_checked_by_seq: g(&self.by_seq),
            order_checked_by_send_order: g(&self.by_send_order),
        };
        f.cross_node_delivery_ratio = f.cross_node.as_ref().and_then(Flow::ratio);
        f
    }
}

/// Deliveries expected and received.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flow {
    pub expected: u64,
    pub delivered: u64,
}

impl Flow {
    fn add(&mut self, o: &Flow) {
        self.expected += o.expected;
        self.delivered += o.delivered;
    }

    /// delivered ÷ expected; none when nothing was expected.
    pub fn ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.delivered as f64 / self.expected as f64)
    }
}

/// One server URL's share of a fan-out, as the receiving side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeFigures {
    pub url: String,
    /// Sockets established on this node.
    pub sockets: u64,
    /// Publishing sockets on this node.
    pub publishers: u64,
    /// Messages its publishers sent in the measured window.
    pub sent: u64,
    /// Deliveries to its sockets (from every node) expected and received.
    pub expected: u64,
    pub delivered: u64,
    /// The part of those whose publisher is on another node; none with one URL.
    pub from_other_nodes: Option<Flow>,
}

/// The fan-out's delivery check: per node and across nodes, duplicates and order.
///
/// Deliveries count messages sent in the measured window, first receipts only (a duplicate is
/// counted under `duplicates` instead). Duplicates and order are checked on every receipt of the
/// run (warm-up and drain too). Expected counts assume every member is subscribed: a socket that
/// failed to connect lowers the ratios.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeliveryFigures {
    pub nodes: Vec<NodeFigures>,
    /// Publisher and receiver on the same URL.
    pub same_node: Flow,
    /// Publisher and receiver on different URLs; none (JSON `null`) with one URL.
    pub cross_node: Option<Flow>,
    /// `cross_node.delivered ÷ cross_node.expected`; none with one URL (or nothing expected).
    pub cross_node_delivery_ratio: Option<f64>,
    /// Receipts of a message id the same socket had already received.
    pub duplicates: u64,
    /// Receipts, per socket and channel, with a `seq` not above the highest already received
    /// (for events without `seq`: a send time not after the publisher's last received one).
    pub order_violations: u64,
    /// Receipts whose order was checked by `seq`, and by the publisher's send order (no `seq`).
    pub order_checked_by_seq: u64,
    pub order_checked_by_send_order: u64,
}

impl DeliveryFigures {
    /// Add another process's share (same URLs, same node order).
    pub fn merge(&mut self, o: &DeliveryFigures) {
        if self.nodes.len() < o.nodes.len() {
            self.nodes.resize_with(o.nodes.len(), NodeFigures::default);
        }
        for (mine, theirs) in self.nodes.iter_mut().zip(&o.nodes) {
            if mine.url.is_empty() {
                mine.url.clone_from(&theirs.url);
            }
            mine.sockets += theirs.sockets;
            mine.publishers += theirs.publishers;
            mine.sent += theirs.sent;
            mine.expected += theirs.expected;
            mine.delivered += theirs.delivered;
            mine.from_other_nodes = match (mine.from_other_nodes, theirs.from_other_nodes) {
                (Some(mut a), Some(b)) => {
                    a.add(&b);
                    Some(a)
                }
                (a, b) => a.or(b),
            };
        }
        self.same_node.add(&o.same_node);
        self.cross_node = match (self.cross_node, o.cross_node) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.cross_node_delivery_ratio = self.cross_node.as_ref().and_then(Flow::ratio);
        self.duplicates += o.duplicates;
        self.order_violations += o.order_violations;
        self.order_checked_by_seq += o.order_checked_by_seq;
        self.order_checked_by_send_order += o.order_checked_by_send_order;
    }

    /// Rows for the report table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let flow = |f: &Flow| match f.ratio() {
            Some(r) => format!("{} of {} ({:.2}%)", f.delivered, f.expected, r * 100.0),
            None => format!("{} of {}", f.delivered, f.expected),
        };
        let mut rows = Vec::new();
        rows.push((
            "delivery by node".into(),
            format!(
                "{} server URL{} (node i = the i-th URL)",
                self.nodes.len(),
                if self.nodes.len() == 1 { "" } else { "s" }
            ),
        ));
        for (i, n) in self.nodes.iter().enumerate() {
            let mut v = format!(
                "{}: sockets {}, publishers {}, sent {}; delivered {}",
                n.url,
                n.sockets,
                n.publishers,
                n.sent,
                flow(&Flow {
                    expected: n.expected,
                    delivered: n.delivered
                })
            );
            if let Some(f) = &n.from_other_nodes {
                v.push_str(&format!(", from other nodes {}", flow(f)));
            }
            rows.push((format!("  node {i}"), v));
        }
        rows.push(("same-node deliveries".into(), flow(&self.same_node)));
        let (cross, ratio) = match (&self.cross_node, self.cross_node_delivery_ratio) {
            (Some(f), Some(r)) => (flow(f), format!("{r:.4}")),
            (Some(f), None) => (flow(f), "n/a (none expected)".into()),
            (None, _) => ("n/a (one server URL)".into(), "n/a (one server URL)".into()),
        };
        rows.push(("cross-node deliveries".into(), cross));
        rows.push(("cross-node delivery ratio".into(), ratio));
        rows.push(("duplicates".into(), self.duplicates.to_string()));
        let basis = match (self.order_checked_by_seq, self.order_checked_by_send_order) {
            (0, 0) => "nothing received".to_owned(),
            (_, 0) => "checked by seq".to_owned(),
            (0, _) => "checked by publisher send order: no seq on events".to_owned(),
            (s, o) => format!("{s} checked by seq, {o} by publisher send order"),
        };
        rows.push((
            "order violations".into(),
            format!("{} ({basis})", self.order_violations),
        ));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_publishers_go_round_robin() {
        // 2 nodes, 1 publisher per channel: channel 0's publisher on node 0, channel 1's on 1.
        assert_eq!(fanout_node(0, 0, 1, 2), 0);
        assert_eq!(fanout_node(1, 0, 1, 2), 1);
        let members: Vec<usize> = (0..4).map(|m| fanout_node(0, m, 1, 2)).collect();
        assert_eq!(members, [0, 1, 0, 1]);
        assert_eq!(fanout_node(5, 3, 2, 1), 0);
    }

    #[test]
    fn flows_split_same_and_cross_node_and_one_url_is_not_applicable() {
        let s = Spread::new(2);
        s.socket_on(0);
        s.socket_on(1);
        // One send from node 0 into a channel with one member on each node.
        s.sent_from(0, &[1, 1]);
        s.received(0, 0, Verdict::InOrder(Basis::Seq), true);
        s.received(0, 1, Verdict::InOrder(Basis::Seq), true);
        s.received(0, 1, Verdict::Duplicate, true);
        s.received(0, 1, Verdict::OutOfOrder(Basis::Seq), false);
        let f = s.figures(&["a".into(), "b".into()]);
        assert_eq!(
            f.same_node,
            Flow {
                expected: 1,
                delivered: 1
            }
        );
        assert_eq!(
            f.cross_node,
            Some(Flow {
                expected: 1,
                delivered: 1
            })
        );
        assert_eq!(f.cross_node_delivery_ratio, Some(1.0));
        assert_eq!((f.duplicates, f.order_violations), (1, 1));
        assert_eq!(
            f.nodes[1].from_other_nodes,
            Some(Flow {
                expected: 1,
                delivered: 1
            })
        );
        assert_eq!(f.nodes[1].delivered, 1);

        let mut merged = f.clone();
        merged.merge(&f);
        assert_eq!(
            merged.cross_node,
            Some(Flow {
                expected: 2,
                delivered: 2
            })
        );
        assert_eq!(merged.nodes[0].sockets, 2);
        assert_eq!(merged.duplicates, 2);

        let one = Spread::new(1);
        one.sent_from(0, &[3]);
        let f = one.figures(&["a".into()]);
        assert_eq!((f.cross_node, f.cross_node_delivery_ratio), (None, None));
        let json = serde_json::to_value(&f).unwrap();
        assert!(json["cross_node_delivery_ratio"].is_null());
        // Not applicable, not 0 %.
        let rows = f.rows();
        let row = |k: &str| {
            rows.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        for k in ["cross-node deliveries", "cross-node delivery ratio"] {
            assert_eq!(row(k).as_deref(), Some("n/a (one server URL)"), "{rows:?}");
        }
    }
}
