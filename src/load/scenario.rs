//! What a load run does: the scenarios, their parameters, and how a run is split over processes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `fanout`: channels × members, publishers at a fixed open-loop rate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FanoutLoad {
    pub channels: usize,
    pub members: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Publishing members per channel.
    pub publishers: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Plaintext bytes per message (the sealed body is base64 of it plus nonce and tag).
    pub size: usize,
}

/// `connections`: ramp to N idle sessions and hold them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ConnectionsLoad {
    pub connections: usize,
    pub hold: Duration,
}

/// `persist`: senders with a window of messages in flight.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PersistLoad {
    pub senders: usize,
    /// Messages in flight per sender.
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub size: usize,
    /// Channels the senders share, sender `i` on channel `i mod channels`; 0: one channel per
    /// sender. One channel for all measures the per-channel commit order (its `seq` counter row)
    /// against many channels.
    #[serde(default)]
    pub channels: usize,
}

/// `churn`: connect/disconnect loops.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChurnLoad {
    pub workers: usize,
    pub duration: Duration,
}

/// `abuse`: a fan-out and logged-in REST users, measured while anonymous clients flood login,
/// register and WebSocket upgrades.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AbuseLoad {
    /// The legitimate chat traffic (its duration and warm-up are the scenario's).
    pub fanout: FanoutLoad,
    /// Logged-in users making REST calls (`GET /channels`, then a page of history, in turn).
    pub rest_users: usize,
    /// Their REST calls per second, all together (open loop).
    pub rest_rate: f64,
    /// Flooders in flight per kind; each repeats its request as soon as it is answered.
    pub flood_login: usize,
    pub flood_register: usize,
    pub flood_upgrade: usize,
    /// Source addresses the flood comes from (`127.0.2.1` upwards for a loopback server), apart
    /// from the legitimate clients' addresses.
    pub flood_sources: u16,
}

impl AbuseLoad {
    pub fn flooders(&self) -> usize {
        self.flood_login + self.flood_register + self.flood_upgrade
    }
}

/// What to run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Scenario {
    Fanout(FanoutLoad),
    Abuse(AbuseLoad),
    Connections(ConnectionsLoad),
    Persist(PersistLoad),
    Churn(ChurnLoad),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Abuse(_) => "abuse",
            Scenario::Connections(_) => "connections",
            Scenario::Persist(_) => "persist",
            Scenario::Churn(_) => "churn",
        }
    }

    pub fn parameters(&self) -> BTreeMap<String, String> {
        let d = |d: Duration| format!("{}s", d.as_secs_f64());
        let fanout = |f: &FanoutLoad| {
            vec![
                ("channels", f.channels.to_string()),
                ("members", f.members.to_string()),
                ("rate", format!("{} msg/s", f.rate)),
                ("publishers/channel", f.publishers.to_string()),
                ("duration", d(f.duration)),
                ("warmup", d(f.warmup)),
                ("size", format!("{} B", f.size)),
            ]
        };
        let pairs: Vec<(&str, String)> = match *self {
            Scenario::Fanout(f) => fanout(&f),
            Scenario::Abuse(a) => {
                let mut v = fanout(&a.fanout);
                v.extend([
                    ("REST users", a.rest_users.to_string()),
                    ("REST rate", format!("{} req/s", a.rest_rate)),
                    ("flood login", a.flood_login.to_string()),
                    ("flood register", a.flood_register.to_string()),
                    ("flood upgrade", a.flood_upgrade.to_string()),
                    ("flood sources", a.flood_sources.to_string()),
                ]);
                v
            }
            Scenario::Connections(c) => vec![
                ("connections", c.connections.to_string()),
                ("hold", d(c.hold)),
            ],
            Scenario::Persist(p) => vec![
                ("senders", p.senders.to_string()),
                ("window", p.window.to_string()),
                (
                    "channels",
                    if p.channels == 0 {
                        "one per sender".to_owned()
                    } else {
                        p.channels.to_string()
                    },
                ),
                ("duration", d(p.duration)),
                ("warmup", d(p.warmup)),
                ("size", format!("{} B", p.size)),
            ],
            Scenario::Churn(c) => vec![
                ("workers", c.workers.to_string()),
                ("duration", d(c.duration)),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Sockets this scenario opens.
    pub fn sockets(&self) -> usize {
        match self {
            Scenario::Fanout(f) => f.channels * f.members,
            // Every flooder may hold one connection, every REST user its keep-alive connection.
            Scenario::Abuse(a) => {
                a.fanout.channels * a.fanout.members + a.rest_users + a.flooders()
            }
            Scenario::Connections(c) => c.connections,
            Scenario::Persist(p) => p.senders,
            Scenario::Churn(c) => c.workers,
        }
    }

    /// Channels the scenario needs provisioned.
    pub(super) fn channels_needed(&self) -> usize {
        match self {
            Scenario::Fanout(f) => f.channels,
            Scenario::Abuse(a) => a.fanout.channels,
            Scenario::Persist(p) if p.channels > 0 => p.channels.min(p.senders.max(1)),
            Scenario::Persist(p) => p.senders,
            Scenario::Connections(_) | Scenario::Churn(_) => 0,
        }
    }

    /// Whether the scenario can be split over worker processes (`abuse` measures its legitimate
    /// and flooding clients against one clock, in one process).
    pub fn splits(&self) -> bool {
        !matches!(self, Scenario::Abuse(_))
    }

    /// The share of worker `index` of `of` (channels, connections, senders or workers are split;
    /// a fan-out share keeps its channels' members and its part of the rate; a scenario that does
    /// not [split](Self::splits) is whole in share 0).
    pub fn slice(&self, index: usize, of: usize) -> Scenario {
        let of = of.max(1);
        let share = |n: usize| n / of + usize::from(index < n % of);
        let mut s = *self;
        match &mut s {
            Scenario::Fanout(f) => {
                let mine = share(f.channels);
                f.rate *= mine as f64 / f.channels.max(1) as f64;
                f.channels = mine;
            }
            Scenario::Abuse(_) => {}
            Scenario::Connections(c) => c.connections = share(c.connections),
            Scenario::Persist(p) => p.senders = share(p.senders),
            Scenario::Churn(c) => c.workers = share(c.workers),
        }
        s
    }
}

/// How to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// Local addresses connections are spread over (empty: the system's choice).
    pub source_ips: Vec<IpAddr>,
    /// Accounts to provision (sockets share them round-robin).
    pub users: usize,
    /// Server process ids, for RSS and CPU (local servers; several nodes are summed).
    #[serde(default)]
    pub server_pids: Vec<u32>,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// Rely on the server's default subscriptions instead of `subscribe=none` + `subscribe`
    /// (servers without the extension; every socket then receives every channel).
    pub default_subscriptions: bool,
    /// After the measured window: how long in-flight deliveries may still arrive.
    pub drain: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            source_ips: Vec::new(),
            users: 50,
            server_pids: Vec::new(),
            connect_concurrency: 128,
            default_subscriptions: false,
            drain: Duration::from_secs(2),
        }
    }
}
