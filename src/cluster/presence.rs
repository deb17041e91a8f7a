//! Presence on the other nodes: which users each peer has online, and which peers are alive.
//!
//! Owns: one user set per peer, built from the peer's joins and leaves and replaced by each full
//! heartbeat round (so a lost join or leave heals within one heartbeat). Bound: a peer's set is
//! at most its sockets' users; a peer silent for the timeout is dropped with its users.
//! Every method that changes a set returns the users whose "online on some peer" state changed:
//! the hub combines that with its own sockets before it tells clients.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Peer {
    users: HashSet<String>,
    last_seen: Option<Instant>,
    /// The heartbeat round being assembled: its number, parts seen, users so far.
    building: Option<(u64, u32, HashSet<String>)>,
}

/// One heartbeat part as received.
pub struct Beat {
    pub round: u64,
    pub part: u32,
    pub parts: u32,
    pub users: Vec<String>,
}

pub struct Peers {
    peers: HashMap<String, Peer>,
    timeout: Duration,
}

/// Users whose presence on the peers changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

impl Peers {
    pub fn new(timeout: Duration) -> Self {
        Self {
            peers: HashMap::new(),
            timeout,
        }
    }

    /// Online on any peer.
    pub fn has(&self, user_id: &str) -> bool {
        self.peers.values().any(|p| p.users.contains(user_id))
    }

    /// Whether `node` is a live peer.
    pub fn knows(&self, node: &str) -> bool {
        self.peers.contains_key(node)
    }

    /// Peers heard from within the timeout.
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// Any message from `node` shows it is alive.
    pub fn seen(&mut self, node: &str, now: Instant) {
        self.peers.entry(node.to_owned()).or_default().last_seen = Some(now);
    }

    pub fn online(&mut self, node: &str, user_id: &str, now: Instant) -> Changed {
        let was = self.has(user_id);
        let p = self.peers.entry(node.to_owned()).or_default();
        p.last_seen = Some(now);
        p.users.insert(user_id.to_owned());
        if let Some((_, _, b)) = &mut p.building {
            b.insert(user_id.to_owned());
        }
        Changed {
            online: if was {
                vec![]
            } else {
                vec![user_id.to_owned()]
            },
            offline: vec![],
        }
    }

    pub fn offline(&mut self, node: &str, user_id: &str, now: Instant) -> Changed {
        let p = self.peers.entry(node.to_owned()).or_default();
        p.last_seen = Some(now);
        let removed = p.users.remove(user_id);
        if let Some((_, _, b)) = &mut p.building {
            b.remove(user_id);
        }
        Changed {
            online: vec![],
            offline: if removed && !self.has(user_id) {
                vec![user_id.to_owned()]
            } else {
                vec![]
            },
        }
    }

    /// One part of a heartbeat round; the last part replaces the peer's set.
    pub fn heartbeat(&mut self, node: &str, beat: Beat, now: Instant) -> Changed {
        let p = self.peers.entry(node.to_owned()).or_default();
        p.last_seen = Some(now);
        let fresh = !matches!(&p.building, Some((round, _, _)) if *round == beat.round);
        if fresh {
            p.building = Some((beat.round, 0, HashSet::new()));
        }
        let Some((_, seen, users)) = &mut p.building else {
            return Changed::default();
        };
        *seen += 1;
        users.extend(beat.users);
        if *seen < beat.parts.max(1) {
            return Changed::default();
        }
        let complete = p.building.take().map(|(_, _, u)| u).unwrap_or_default();
        self.replace(node, complete)
    }

    fn replace(&mut self, node: &str, users: HashSet<String>) -> Changed {
        let before: HashSet<String> = self
            .peers
            .get(node)
            .map(|p| p.users.clone())
            .unwrap_or_default();
        let came: Vec<String> = users.difference(&before).cloned().collect();
        let went: Vec<String> = before.difference(&users).cloned().collect();
        let mut changed = Changed::default();
        for u in &came {
            if !self.has(u) {
                changed.online.push(u.clone());
            }
        }
        if let Some(p) = self.peers.get_mut(node) {
            p.users = users;
        }
        for u in went {
            if !self.has(&u) {
                changed.offline.push(u);
            }
        }
        changed
    }

    /// The peer said it is leaving (graceful shutdown).
    pub fn leave(&mut self, node: &str) -> Changed {
        let Some(p) = self.peers.remove(node) else {
            return Changed::default();
        };
        Changed {
            online: vec![],
            offline: p.users.into_iter().filter(|u| !self.has(u)).collect(),
        }
    }

    /// Drop peers silent for longer than the timeout; returns them and the users they took.
    pub fn expire(&mut self, now: Instant) -> (Vec<String>, Changed) {
        let dead: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.last_seen
                    .is_none_or(|t| now.duration_since(t) > self.timeout)
            })
            .map(|(n, _)| n.clone())
            .collect();
        let mut changed = Changed::default();
        for node in &dead {
            changed.offline.extend(self.leave(node).offline);
        }
        (dead, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(6);

    fn beat(round: u64, part: u32, parts: u32, users: &[&str]) -> Beat {
        Beat {
            round,
            part,
            parts,
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn joins_and_leaves_report_changes_across_peers() {
        let now = Instant::now();
        let mut p = Peers::new(T);
        assert_eq!(p.online("a", "u", now).online, vec!["u"]);
        assert!(
            p.online("b", "u", now).online.is_empty(),
            "already online on a"
        );
        assert!(p.offline("a", "u", now).offline.is_empty(), "still on b");
        assert_eq!(p.offline("b", "u", now).offline, vec!["u"]);
        assert!(!p.has("u"));
    }

    #[test]
    fn a_full_heartbeat_round_replaces_the_set_and_heals_lost_deltas() {
        let now = Instant::now();
        let mut p = Peers::new(T);
        p.online("a", "stale", now);
        assert_eq!(
            p.heartbeat("a", beat(1, 0, 2, &["x"]), now),
            Changed::default()
        );
        let c = p.heartbeat("a", beat(1, 1, 2, &["y"]), now);
        let mut online = c.online.clone();
        online.sort();
        assert_eq!(online, vec!["x", "y"]);
        assert_eq!(c.offline, vec!["stale"]);
        assert!(p.has("x") && p.has("y") && !p.has("stale"));
    }

    #[test]
    fn an_incomplete_round_is_dropped_when_the_next_starts() {
        let now = Instant::now();
        let mut p = Peers::new(T);
        p.heartbeat("a", beat(1, 0, 2, &["x"]), now);
        let c = p.heartbeat("a", beat(2, 0, 1, &["z"]), now);
        assert_eq!(c.online, vec!["z"]);
        assert!(!p.has("x"));
    }

    #[test]
    fn a_silent_peer_expires_with_its_users() {
        let now = Instant::now();
        let mut p = Peers::new(T);
        p.online("a", "u", now);
        p.online("b", "v", now + T);
        let (dead, c) = p.expire(now + T + Duration::from_secs(1));
        assert_eq!(dead, vec!["a"]);
        assert_eq!(c.offline, vec!["u"]);
        assert!(p.has("v"));
        assert_eq!(p.count(), 1);
        assert_eq!(p.leave("b").offline, vec!["v"]);
    }
}
