//! Commit lanes: which lane a channel's messages queue in, and when a lane may start its batch.
//!
//! A lane commits one batch at a time. When no other lane is committing it starts at once. While
//! another one is, it starts alongside only if it holds a quarter of a full batch
//! (`DIALTONE_DB_BATCH_MAX` / 4: 256 rows by default) or the oldest commit in flight has run for
//! [`OVERLAP_AFTER`]; otherwise it waits for that commit to end (a wake-up makes sure it is looked
//! at again after [`OVERLAP_AFTER`]). Measured at 100 k deliveries/s (1,000 messages/s), two lanes committing
//! whenever they had anything made twice the commits of one lane, each half as full, and cost
//! PostgreSQL about a third more CPU and the fan-out's p99 13–37 ms (BENCHMARKS.md, "Commit
//! lanes at fan-out rates"); a backlog (the durable-throughput case) or a commit stuck on one
//! channel's lock is what a second commit in flight is for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{DbActor, PersistChannelMessage};

/// Commits in flight this long let another lane start beside them whatever it holds: a lock on
/// one channel must not hold up the others for long.
pub(super) const OVERLAP_AFTER: Duration = Duration::from_millis(50);

/// A lane holding this share of a full batch starts beside another lane's commit.
const OVERLAP_SHARE: usize = 4;

/// Rows a lane needs to start beside another lane's commit, for `batch_max`.
fn overlap_min_rows(batch_max: usize) -> usize {
    (batch_max / OVERLAP_SHARE).max(1)
}

/// One group-commit lane: its queue, and since when its batch is committing (if it is).
#[derive(Default)]
pub(super) struct Lane {
    pub(super) pending: VecDeque<PersistChannelMessage>,
    pub(super) committing_since: Option<Instant>,
}

/// The commit lane of `channel_id` among `lanes`: fixed for the process's life (a keyless hash of
/// the id), so one channel's batches commit one after the other.
pub fn commit_lane(channel_id: &str, lanes: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(channel_id);
    (hash % lanes.max(1) as u64) as usize
}

/// Whether a lane holding `pending` rows may start now, given how long the oldest commit in
/// flight has run (`None`: none is).
fn may_start(pending: usize, oldest: Option<Duration>, batch_max: usize) -> bool {
    pending > 0
        && oldest.is_none_or(|ran| pending >= overlap_min_rows(batch_max) || ran >= OVERLAP_AFTER)
}

impl DbActor {
    pub(super) fn lane_of(&self, channel_id: &str) -> usize {
        commit_lane(channel_id, self.lanes.len())
    }

    /// Messages waiting in all lanes (bounded by `max_pending`).
    pub(super) fn pending(&self) -> usize {
        self.lanes.iter().map(|l| l.pending.len()).sum()
    }

    /// No message waits and no batch commits.
    pub(super) fn idle(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.committing_since.is_none() && l.pending.is_empty())
    }

    /// Start every lane that may start, beginning after `after` (the lane that just finished, so
    /// the others, which waited for it, go first); set a wake-up for any lane held back.
    pub(super) fn schedule(&mut self, ctx: &mut Context<Self>, after: Option<usize>) {
        let n = self.lanes.len();
        let first = after.map_or(0, |l| l + 1);
        let mut oldest = self
            .lanes
            .iter()
            .filter_map(|l| l.committing_since)
            .min()
            .map(|since| since.elapsed());
        let mut held_back = None;
        for lane in (0..n).map(|i| (first + i) % n) {
            let l = &self.lanes[lane];
            if l.committing_since.is_some() || l.pending.is_empty() {
                continue;
            }
            if may_start(l.pending.len(), oldest, self.config.batch_max) {
                self.start_batch(ctx, lane);
                // A commit is in flight now, if none was.
                oldest = oldest.or(Some(Duration::ZERO));
            } else {
                held_back = oldest;
            }
        }
        if let Some(ran) = held_back
            && !self.overlap_wake
        {
            self.overlap_wake = true;
            ctx.run_later(OVERLAP_AFTER.saturating_sub(ran), |act, ctx| {
                act.overlap_wake = false;
                act.schedule(ctx, None);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_overlaps_another_commit_only_with_a_backlog_or_once_that_commit_is_slow() {
        let quick = Some(Duration::from_millis(5));
        assert!(may_start(1, None, 512), "nothing in flight: at once");
        assert!(!may_start(0, None, 512), "nothing to commit");
        assert!(
            !may_start(127, quick, 512),
            "a small batch waits for the commit in flight"
        );
        assert!(
            may_start(128, quick, 512),
            "a quarter batch starts beside it"
        );
        assert!(
            may_start(1, Some(OVERLAP_AFTER), 512),
            "a slow commit holds up no one"
        );
        assert!(may_start(1, quick, 1), "a batch of one is always full");
    }
}
