//! The messages the hub answers, with who sends each and how.
use std::collections::BTreeMap;

use actix::prelude::*;

use crate::actors::{SessionHandle, SessionKey};
use crate::protocol::rest::Channel;
use crate::service::messages::StoredBroadcast;

/// A socket opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub handle: SessionHandle,
    pub user_id: String,
    pub device_id: String,
    pub db_session_id: String,
    /// Subscribe to every channel (now and later); `false` for `/ws?subscribe=none`.
    pub subscribe_all: bool,
}

/// A socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect(pub SessionKey);

/// Subscribe a session; `Err(())` for an unknown channel.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Subscribe {
    pub key: SessionKey,
    pub channel_id: String,
}

/// Unsubscribe a session; `Err(())` for an unknown channel.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Unsubscribe {
    pub key: SessionKey,
    pub channel_id: String,
}

/// REST changes that reach WebSocket clients (the notifier seam); they cross nodes as they are.
#[derive(Message, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
pub enum Notice {
    ChannelCreated(Channel),
    /// [v2] A private or direct channel, with its first members.
    PrivateChannelCreated {
        channel: Channel,
        members: Vec<String>,
    },
    /// [v2] A user joined a private channel (or changed role).
    MemberAdded {
        channel_id: String,
        user_id: String,
        role: String,
    },
    /// [v2] A user left or was removed: their sockets leave the channel at once.
    MemberRemoved {
        channel_id: String,
        user_id: String,
    },
    /// [v2] A private channel's key moved to a new generation.
    KeyRotated {
        channel_id: String,
        generation: i64,
    },
    ChannelUpdated(Channel),
    ChannelDeleted(String),
    ProfileUpdated {
        user_id: String,
    },
    DeviceJoined {
        user_id: String,
        device_id: String,
    },
    /// A user published a new signed device list (trust v2).
    DeviceListUpdated {
        user_id: String,
        version: u64,
    },
    /// These login sessions were revoked (logout, device removed): close their sockets.
    SessionsRevoked {
        session_ids: Vec<String>,
    },
    /// The device was deleted: close every socket of it, whatever session it runs on (the
    /// sessions revoked with it were read before the deletion; one made meanwhile is covered).
    DeviceRemoved {
        device_id: String,
    },
    /// The user was disabled: close every socket of theirs.
    UserDisabled {
        user_id: String,
    },
}

/// A persisted broadcast to deliver to every connected device, each with its own envelope.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast(pub StoredBroadcast);

/// Which of these users have an open socket.
#[derive(Message)]
#[rtype(result = "BTreeMap<String, bool>")]
pub struct Presence(pub Vec<String>);

/// Broker counters.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub users_online: usize,
    pub channels: usize,
    pub channel_actors: usize,
}

#[derive(Message)]
#[rtype(result = "HubStats")]
pub struct Stats;

/// First step of a graceful shutdown: every session stops accepting sends. Resolves once every
/// session has processed it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Quiesce;

/// Graceful shutdown: fan out everything already committed, then close every socket with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;
