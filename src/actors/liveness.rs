//! Actor liveness: does an actor still run, and answer within a bound?
//!
//! An actor that panicked or stopped has a closed mailbox; one that is wedged does not answer.
//! `/health` and `/ready` ask each long-lived actor (hub, database actor, admin actor) and each
//! channel-actor thread (`DIALTONE_CHANNEL_ARBITERS`, through the [`Pinger`] that lives on it)
//! through [`answers`] and report 503 `actor_unavailable` naming the first that fails. The process policy
//! on a panic is to exit (see `main.rs`), so a failed probe is what an embedder that keeps the
//! process alive, or a wedged actor, looks like.

use std::borrow::Cow;
use std::time::Duration;

use actix::prelude::*;

/// How long an actor may take to answer a probe.
pub const PROBE_BOUND: Duration = Duration::from_secs(2);

/// Why an actor failed its probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dead {
    #[error("{0} has stopped")]
    Stopped(Cow<'static, str>),
    #[error("{0} did not answer within {1:?}")]
    Unresponsive(Cow<'static, str>, Duration),
}

/// Whether the actor behind `addr` is running and answers `msg` within `bound`.
pub async fn answers<M>(
    name: impl Into<Cow<'static, str>>,
    addr: &Recipient<M>,
    msg: M,
    bound: Duration,
) -> Result<(), Dead>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    let name = name.into();
    if !addr.connected() {
        return Err(Dead::Stopped(name));
    }
    match addr.send(msg).timeout(bound).await {
        Ok(_) => Ok(()),
        Err(MailboxError::Closed) => Err(Dead::Stopped(name)),
        Err(MailboxError::Timeout) => Err(Dead::Unresponsive(name, bound)),
    }
}

/// The probe message every long-lived actor answers (from its own handler, so an answer proves
/// the actor's loop runs).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Probe;

/// Answers probes on a thread that has no long-lived actor of its own (a channel arbiter, whose
/// channel actors come and go): an answer proves the thread's event loop runs, so a channel actor
/// that blocks its thread, or a thread that ended, shows up as a failed probe.
pub struct Pinger;

impl Actor for Pinger {
    type Context = Context<Self>;
}

impl Handler<Probe> for Pinger {
    type Result = ();
    fn handle(&mut self, _: Probe, _: &mut Context<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Worker;
    impl Actor for Worker {
        type Context = Context<Self>;
    }
    impl Handler<Probe> for Worker {
        type Result = ();
        fn handle(&mut self, _: Probe, _: &mut Context<Self>) {}
    }

    /// Blocks its thread on its first message: a wedged actor.
    struct Stuck;
    impl Actor for Stuck {
        type Context = Context<Self>;
    }
    impl Handler<Probe> for Stuck {
        type Result = ();
        fn handle(&mut self, _: Probe, ctx: &mut Context<Self>) {
            ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
        }
    }

    #[actix::test]
    async fn a_running_actor_answers() {
        let addr = Worker.start().recipient();
        assert_eq!(answers("worker", &addr, Probe, PROBE_BOUND).await, Ok(()));
    }

    #[actix::test]
    async fn a_stopped_actor_is_detected() {
        let arbiter = Arbiter::new();
        let addr = Worker::start_in_arbiter(&arbiter.handle(), |_| Worker).recipient();
        assert_eq!(answers("worker", &addr, Probe, PROBE_BOUND).await, Ok(()));
        // What a panic in one of its handlers leaves: the actor's thread gone, its mailbox closed.
        arbiter.stop();
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        let dead = answers("worker", &addr, Probe, PROBE_BOUND).await;
        assert_eq!(dead, Err(Dead::Stopped("worker".into())));
        assert_eq!(dead.unwrap_err().to_string(), "worker has stopped");
    }

    #[actix::test]
    async fn a_wedged_actor_is_detected() {
        let addr = Stuck.start();
        let bound = Duration::from_millis(50);
        // The first probe occupies it forever (`wait`-like); the second cannot be answered.
        // why `do_send`: a test, one message.
        addr.do_send(Probe);
        assert_eq!(
            answers("stuck", &addr.clone().recipient(), Probe, bound).await,
            Err(Dead::Unresponsive("stuck".into(), bound))
        );
    }
}
