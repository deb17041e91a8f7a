//! The hub's view of private and direct channels (trust v2): who may subscribe, who hears their
//! events, and what a membership change does to live sockets.
//!
//! Owns `Hub::private`: channel id → its active members' user ids, for every private channel
//! (a channel absent from it is public). Loaded at start, kept by the membership notices, and on a
//! cluster node rebuilt from the database on every repair, so a lost notice heals too. The
//! database stays the authority: a send is checked again inside its group commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Hub, SessionKey};
use crate::actors::{Frames, frame};
use crate::protocol::ws::Event;

impl Hub {
    /// May this user's sessions follow this channel? (Every public channel; a private one only
    /// for its active members.)
    pub(super) fn may_follow(&self, user_id: &str, channel_id: &str) -> bool {
        self.private
            .get(channel_id)
            .is_none_or(|members| members.contains(user_id))
    }

    /// One event to whoever may see the channel: everyone for a public one, the members'
    /// sessions for a private one.
    pub(super) fn tell_audience(&mut self, channel_id: &str, event: &Event) {
        let Some(members) = self.private.get(channel_id) else {
            self.tell_everyone(event);
            return;
        };
        let members = members.clone();
        self.tell_users(&members, event);
    }

    /// One event to every session of these users (serialized once).
    pub(super) fn tell_users(&self, users: &HashSet<String>, event: &Event) {
        let frames: Frames = Arc::from(vec![frame(event)]);
        for entry in self
            .sessions
            .values()
            .filter(|e| users.contains(&e.user_id))
        {
            entry.handle.send_frames(frames.clone());
        }
    }

    /// A private channel to track with these members (created here, on another node, or learned
    /// by repair).
    pub(super) fn private_appeared(&mut self, channel_id: &str, members: HashSet<String>) {
        self.private.insert(channel_id.to_owned(), members);
        self.channel_appeared(channel_id);
    }

    /// The user is in: their sessions that follow every channel join it.
    pub(super) fn member_joined(&mut self, channel_id: &str, user_id: &str) {
        let Some(members) = self.private.get_mut(channel_id) else {
            return;
        };
        if !members.insert(user_id.to_owned()) {
            return;
        }
        let auto: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.auto && e.user_id == user_id)
            .map(|(k, _)| *k)
            .collect();
        for key in auto {
            self.join(key, channel_id);
        }
    }

    /// The user is out: every session of theirs leaves the channel now, before anything else
    /// committed there reaches them.
    pub(super) fn member_left(&mut self, channel_id: &str, user_id: &str) {
        if let Some(members) = self.private.get_mut(channel_id) {
            members.remove(user_id);
        }
        let keys: Vec<SessionKey> = self
            .sessions
            .iter_mut()
            .filter(|(_, e)| e.user_id == user_id)
            .filter_map(|(k, e)| e.channels.remove(channel_id).then_some(*k))
            .collect();
        for key in keys {
            self.leave(key, channel_id);
        }
    }

    /// Bring the view in line with the database's (a cluster repair): members added or removed
    /// by notices this node never got are applied as those notices would have been, without
    /// their events (the clients' own refresh finds them).
    /// Count a membership notice (see `Node::membership_changes`).
    pub(super) fn membership_changed(&mut self) {
        if let Some(node) = self.cluster.as_mut() {
            node.membership_changes += 1;
        }
    }

    /// Of a membership snapshot a newer notice overtook, only what no notice can have changed
    /// here: the members of private channels this node does not track yet (so the channel pass
    /// that follows does not take them for public ones).
    pub(super) fn reconcile_new_private(&mut self, snapshot: Vec<(String, Vec<String>)>) {
        for (channel_id, users) in snapshot {
            if !self.channels.contains_key(&channel_id) && !self.private.contains_key(&channel_id) {
                self.private.insert(channel_id, users.into_iter().collect());
            }
        }
    }

    pub(super) fn reconcile_members(&mut self, snapshot: Vec<(String, Vec<String>)>) {
        let snapshot: HashMap<String, HashSet<String>> = snapshot
            .into_iter()
            .map(|(id, users)| (id, users.into_iter().collect()))
            .collect();
        for (channel_id, wanted) in &snapshot {
            if !self.channels.contains_key(channel_id) {
                // Not known here yet: the repair's channel pass adds it.
                self.private.insert(channel_id.clone(), wanted.clone());
                continue;
            }
            let known = self.private.get(channel_id).cloned().unwrap_or_default();
            if !self.private.contains_key(channel_id) {
                // Tracked as public but private in the database: nobody may follow it until
                // the members below join.
                self.private.insert(channel_id.clone(), HashSet::new());
                let followers: Vec<(SessionKey, String)> = self
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.channels.contains(channel_id))
                    .map(|(k, e)| (*k, e.user_id.clone()))
                    .collect();
                for (_, user) in followers {
                    self.member_left(channel_id, &user);
                }
            }
            for gone in known.difference(wanted) {
                self.member_left(channel_id, gone);
            }
            for user in wanted {
                self.member_joined(channel_id, user);
            }
        }
    }
}
