//! Hub handlers for sockets arriving and leaving and for their channel subscriptions.
use std::collections::HashSet;

use actix::prelude::*;

use super::*;

use crate::protocol::ws::close_code;

impl Handler<Connect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.mailbox.handled();
        if self.shutting_down {
            msg.handle
                .close(close_code::GOING_AWAY, "server shutting down");
            return;
        }
        let key = msg.handle.key;
        self.everyone.insert(&msg.handle);
        self.sessions.insert(
            key,
            SessionEntry {
                handle: msg.handle,
                user_id: msg.user_id.clone(),
                device_id: msg.device_id,
                db_session_id: msg.db_session_id,
                channels: HashSet::new(),
                auto: msg.subscribe_all,
            },
        );
        if msg.subscribe_all {
            let ids: Vec<String> = self.channels.keys().cloned().collect();
            for id in ids {
                self.join(key, &id);
            }
        }
        let count = self.online.entry(msg.user_id.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.metrics.users_online.inc();
            self.local_presence(msg.user_id, true);
        }
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.mailbox.handled();
        let Some(entry) = self.sessions.remove(&msg.0) else {
            return;
        };
        self.everyone.remove(msg.0);
        for channel_id in &entry.channels {
            self.leave(msg.0, channel_id);
        }
        if let Some(count) = self.online.get_mut(&entry.user_id) {
            *count -= 1;
            if *count == 0 {
                self.online.remove(&entry.user_id);
                self.metrics.users_online.dec();
                self.local_presence(entry.user_id, false);
            }
        }
    }
}

impl Handler<Subscribe> for Hub {
    type Result = Result<(), ()>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Result<(), ()> {
        self.mailbox.handled();
        if !self.channels.contains_key(&msg.channel_id) {
            return Err(());
        }
        let Some(entry) = self.sessions.get(&msg.key) else {
            return Err(());
        };
        // A private channel is unknown to a non-member, as if it did not exist.
        if !self.may_follow(&entry.user_id, &msg.channel_id) {
            return Err(());
        }
        let already = self
            .sessions
            .get(&msg.key)
            .is_some_and(|e| e.channels.contains(&msg.channel_id));
        if !already {
            self.join(msg.key, &msg.channel_id);
        }
        Ok(())
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = Result<(), ()>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> Result<(), ()> {
        self.mailbox.handled();
        if !self.channels.contains_key(&msg.channel_id) {
            return Err(());
        }
        let was = self
            .sessions
            .get_mut(&msg.key)
            .is_some_and(|e| e.channels.remove(&msg.channel_id));
        if was {
            self.leave(msg.key, &msg.channel_id);
        }
        Ok(())
    }
}
