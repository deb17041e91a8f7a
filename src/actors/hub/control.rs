//! Hub handlers for operators and shutdown: stats, quiesce, shutdown.
use actix::prelude::*;

use super::*;
use futures_util::future::join_all;

use crate::actors::channel::Flush;
use crate::protocol::ws::close_code;

impl Handler<Stats> for Hub {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        MessageResult(HubStats {
            connections: self.sessions.len(),
            users_online: self.online.len(),
            channels: self.channels.len(),
            channel_actors: self.channels.values().filter(|a| a.is_some()).count(),
        })
    }
}

impl Handler<Quiesce> for Hub {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Quiesce, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        self.shutting_down = true;
        let acks: Vec<_> = self
            .sessions
            .values()
            .map(|e| e.handle.outbound.send(crate::actors::Outbound::Quiesce))
            .collect();
        Box::pin(async move {
            join_all(acks).await;
        })
    }
}

impl Handler<Shutdown> for Hub {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.mailbox.handled();
        self.shutting_down = true;
        self.publish_leaving();
        let flushes: Vec<_> = self
            .channels
            .values()
            .flatten()
            .map(|addr| addr.send(Flush))
            .collect();
        Box::pin(join_all(flushes).into_actor(self).map(|_, act, _| {
            // Every committed message is now in the session mailboxes, ahead of this close.
            act.close_where(close_code::GOING_AWAY, "server shutting down", |_| true);
        }))
    }
}
