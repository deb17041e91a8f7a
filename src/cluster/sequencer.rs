//! Per-channel delivery in `seq` order, whichever node committed the message and however the bus
//! delivered it: each seq at most once, never one before its predecessor.
//!
//! Owns: for every channel, the last seq handed out (`delivered`), the messages that arrived
//! ahead of a gap (`held`), and the highest seq known to exist (`head`, from the messages seen
//! and from the database's counters). A channel whose `head` is ahead of `delivered` is
//! *behind*; once it has been behind for the hold time the hub fills it from the database.
//! Bound: `held` only grows while a gap is open. Seqs have no gaps within a channel, so a gap
//! closes as soon as a read sees the missing seqs (one hold plus one read, more while the
//! database is down); a deleted channel's state, held messages included, is dropped with it.
//! While the gap stays open (this node cannot read the database, the others can still commit),
//! at most [`MAX_HELD_PER_CHANNEL`] messages are held per channel. Overflow policy: the highest
//! seq is let go (handed back as `evicted`); `head` still counts it, so the fill reads it from
//! the database in order when the gap closes. Nothing is lost, only held in the database
//! instead of in memory.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Messages held ahead of one channel's gap, at most.
pub const MAX_HELD_PER_CHANNEL: usize = 10_000;

struct Stream<T> {
    delivered: i64,
    held: BTreeMap<i64, T>,
    head: i64,
    behind_since: Option<Instant>,
    filling: bool,
    /// The last fill stopped at its page size: fill again without waiting for the hold.
    refill: bool,
}

impl<T> Stream<T> {
    fn new(delivered: i64) -> Self {
        Self {
            delivered,
            held: BTreeMap::new(),
            head: delivered,
            behind_since: None,
            filling: false,
            refill: false,
        }
    }

    /// Move held messages that are now next into `ready`.
    fn drain(&mut self, ready: &mut Vec<T>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.delivered + 1 {
                break;
            }
            let seq = *entry.key();
            let item = entry.remove();
            if seq == self.delivered + 1 {
                ready.push(item);
                self.delivered = seq;
            }
        }
    }

    fn settle(&mut self, now: Instant) {
        self.head = self.head.max(self.delivered);
        if self.delivered >= self.head {
            self.behind_since = None;
        } else if self.behind_since.is_none() {
            self.behind_since = Some(now);
        }
    }
}

/// What [`Sequencer::offer`] made of one message.
pub struct Offered<T> {
    /// Messages now deliverable, in seq order (this one, and any it unblocked).
    pub ready: Vec<T>,
    /// The message itself, handed back: it had already been delivered or is already held.
    pub duplicate: Option<T>,
    /// A held message let go to keep the channel within [`MAX_HELD_PER_CHANNEL`] (the highest
    /// seq, maybe this one): the fill will read it from the database.
    pub evicted: Option<T>,
}

/// A gap to fill: read the channel's messages after `after_seq`.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    pub channel_id: String,
    pub after_seq: i64,
}

pub struct Sequencer<T> {
    channels: HashMap<String, Stream<T>>,
}

impl<T> Sequencer<T> {
    /// Start from the channels' last committed seqs. A channel not listed was created later, so
    /// its first message is seq 1.
    pub fn new(known: impl IntoIterator<Item = (String, i64)>) -> Self {
        Self {
            channels: known
                .into_iter()
                .map(|(id, seq)| (id, Stream::new(seq)))
                .collect(),
        }
    }

    fn stream(&mut self, channel_id: &str) -> &mut Stream<T> {
        self.channels
            .entry(channel_id.to_owned())
            .or_insert_with(|| Stream::new(0))
    }

    pub fn delivered(&self, channel_id: &str) -> i64 {
        self.channels.get(channel_id).map_or(0, |s| s.delivered)
    }

    /// Messages currently held behind gaps, over every channel.
    pub fn held(&self) -> usize {
        self.channels.values().map(|s| s.held.len()).sum()
    }

    /// One committed message, from this node or another.
    pub fn offer(&mut self, channel_id: &str, seq: i64, item: T, now: Instant) -> Offered<T> {
        let s = self.stream(channel_id);
        let mut ready = Vec::new();
        if seq <= s.delivered || s.held.contains_key(&seq) {
            return Offered {
                ready,
                duplicate: Some(item),
                evicted: None,
            };
        }
        s.head = s.head.max(seq);
        let mut evicted = None;
        if seq == s.delivered + 1 {
            ready.push(item);
            s.delivered = seq;
            s.drain(&mut ready);
        } else {
            s.held.insert(seq, item);
            if s.held.len() > MAX_HELD_PER_CHANNEL {
                evicted = s.held.pop_last().map(|(_, item)| item);
            }
        }
        s.settle(now);
        Offered {
            ready,
            duplicate: None,
            evicted,
        }
    }

    /// The database says the channel's last seq is `head` (the periodic repair).
    pub fn note_head(&mut self, channel_id: &str, head: i64, now: Instant) {
        let s = self.stream(channel_id);
        s.head = s.head.max(head);
        s.settle(now);
    }

    /// Channels behind for at least `hold` with no fill running; each is marked as filling.
    pub fn due(&mut self, now: Instant, hold: Duration) -> Vec<Due> {
        let mut due = Vec::new();
        for (id, s) in &mut self.channels {
            if s.filling {
                continue;
            }
            if let Some(since) = s.behind_since
                && (s.refill || now.duration_since(since) >= hold)
            {
                s.filling = true;
                s.refill = false;
                due.push(Due {
                    channel_id: id.clone(),
                    after_seq: s.delivered,
                });
            }
        }
        due
    }

    /// Rows read from the database after a [`Due`], ascending. `exhausted`: the read returned
    /// everything there is. Returns what is now deliverable; the channel is due again at once if
    /// it is still behind and more rows exist.
    pub fn filled(
        &mut self,
        channel_id: &str,
        rows: Vec<(i64, T)>,
        exhausted: bool,
        now: Instant,
    ) -> Vec<T> {
        let Some(s) = self.channels.get_mut(channel_id) else {
            return Vec::new();
        };
        s.filling = false;
        let mut ready = Vec::new();
        for (seq, item) in rows {
            s.head = s.head.max(seq);
            if seq == s.delivered + 1 {
                s.held.remove(&seq);
                ready.push(item);
                s.delivered = seq;
            } else if seq > s.delivered + 1 && s.held.len() < MAX_HELD_PER_CHANNEL {
                // Beyond the bound a row is simply not kept: the next fill reads it again.
                s.held.entry(seq).or_insert(item);
            }
            s.drain(&mut ready);
        }
        s.drain(&mut ready);
        s.settle(now);
        if exhausted && s.behind_since.is_some() {
            // Still behind although the read found nothing more: the missing seqs are committed
            // but were not visible to that read yet (seqs have no gaps within a channel). Read
            // again after another hold; never skip them. A deleted channel is forgotten instead.
            s.behind_since = Some(now);
        }
        s.refill = s.behind_since.is_some() && !exhausted;
        ready
    }

    /// The read failed (database down): try again after another hold.
    pub fn fill_failed(&mut self, channel_id: &str, now: Instant) {
        if let Some(s) = self.channels.get_mut(channel_id) {
            s.filling = false;
            s.refill = false;
            if s.behind_since.is_some() {
                s.behind_since = Some(now);
            }
        }
    }

    /// The channel has no subscriber on this node: nothing to fill, jump to what is known and
    /// release what is held (their senders may still be waiting for an echo).
    pub fn skip(&mut self, channel_id: &str) -> Vec<T> {
        let Some(s) = self.channels.get_mut(channel_id) else {
            return Vec::new();
        };
        s.filling = false;
        let mut ready = Vec::new();
        while let Some((seq, item)) = s.held.pop_first() {
            ready.push(item);
            s.delivered = s.delivered.max(seq);
        }
        s.delivered = s.delivered.max(s.head);
        s.head = s.delivered;
        s.behind_since = None;
        ready
    }

    /// The channel was deleted.
    pub fn forget(&mut self, channel_id: &str) {
        self.channels.remove(channel_id);
    }

    pub fn channel_ids(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(100);

    fn ready(o: Offered<&'static str>) -> Vec<&'static str> {
        assert!(o.duplicate.is_none());
        o.ready
    }

    #[test]
    fn in_order_messages_pass_and_duplicates_drop() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 3)]);
        assert_eq!(ready(s.offer("c", 4, "a", t)), vec!["a"]);
        assert_eq!(ready(s.offer("c", 5, "b", t)), vec!["b"]);
        assert_eq!(s.offer("c", 5, "b", t).duplicate, Some("b"));
        assert!(s.offer("c", 2, "old", t).duplicate.is_some());
        assert_eq!(s.delivered("c"), 5);
        assert!(s.due(t + HOLD, HOLD).is_empty());
    }

    #[test]
    fn a_gap_holds_later_messages_until_the_missing_one_arrives() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 0)]);
        assert!(ready(s.offer("c", 2, "two", t)).is_empty());
        assert!(ready(s.offer("c", 3, "three", t)).is_empty());
        assert!(
            s.offer("c", 3, "three", t).duplicate.is_some(),
            "held counts as seen"
        );
        assert_eq!(s.held(), 2);
        assert!(s.due(t, HOLD).is_empty(), "not due before the hold time");
        assert_eq!(
            ready(s.offer("c", 1, "one", t)),
            vec!["one", "two", "three"]
        );
        assert_eq!(s.held(), 0);
        assert!(
            s.due(t + HOLD, HOLD).is_empty(),
            "caught up: nothing to fill"
        );
    }

    #[test]
    fn a_full_hold_lets_the_highest_seq_go_and_the_fill_reads_it_in_order() {
        let t = Instant::now();
        let mut s: Sequencer<i64> = Sequencer::new([("c".to_owned(), 0)]);
        let last = MAX_HELD_PER_CHANNEL as i64 + 2;
        // Seq 1 is missing; 2..=last arrive: one more than the hold keeps.
        let mut evicted = Vec::new();
        for seq in 2..=last {
            let o = s.offer("c", seq, seq, t);
            assert!(o.ready.is_empty() && o.duplicate.is_none());
            evicted.extend(o.evicted);
        }
        assert_eq!(evicted, vec![last], "the newest is let go");
        assert_eq!(s.held(), MAX_HELD_PER_CHANNEL);
        // It is still known to exist: the fill reads from the gap on and delivers everything,
        // the evicted seq included, once and in order.
        let due = s.due(t + HOLD, HOLD);
        assert_eq!(due[0].after_seq, 0);
        let out = s.filled("c", (1..=last).map(|q| (q, -q)).collect(), true, t + HOLD);
        let expected: Vec<i64> = std::iter::once(-1)
            .chain(2..last)
            .chain(std::iter::once(-last))
            .collect();
        assert_eq!(out, expected);
        assert_eq!(s.delivered("c"), last);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_gap_that_outlives_the_hold_is_filled_from_the_database() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 0)]);
        s.offer("c", 3, "three", t);
        let due = s.due(t + HOLD, HOLD);
        assert_eq!(
            due,
            vec![Due {
                channel_id: "c".into(),
                after_seq: 0
            }]
        );
        assert!(s.due(t + HOLD * 2, HOLD).is_empty(), "one fill at a time");
        let out = s.filled(
            "c",
            vec![(1, "one"), (2, "two"), (3, "three-db")],
            true,
            t + HOLD,
        );
        assert_eq!(out, vec!["one", "two", "three"], "the held copy wins, once");
        assert_eq!(s.delivered("c"), 3);
    }

    #[test]
    fn the_repair_finds_messages_no_bus_message_announced() {
        let t = Instant::now();
        let mut s: Sequencer<&str> = Sequencer::new([("c".to_owned(), 5)]);
        s.note_head("c", 5, t);
        assert!(s.due(t + HOLD, HOLD).is_empty());
        s.note_head("c", 7, t);
        assert_eq!(s.due(t + HOLD, HOLD).len(), 1);
        assert_eq!(
            s.filled("c", vec![(6, "6"), (7, "7")], true, t),
            vec!["6", "7"]
        );
    }

    #[test]
    fn a_partial_fill_is_due_again_at_once() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 0)]);
        s.offer("c", 4, "4", t);
        s.due(t + HOLD, HOLD);
        assert_eq!(
            s.filled("c", vec![(1, "1"), (2, "2")], false, t + HOLD),
            vec!["1", "2"]
        );
        let again = s.due(t + HOLD, HOLD);
        assert_eq!(again[0].after_seq, 2);
    }

    #[test]
    fn a_read_that_misses_committed_seqs_is_retried_not_skipped() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 0)]);
        s.offer("c", 3, "3", t);
        s.due(t + HOLD, HOLD);
        // The read's snapshot had only seq 1; seq 2 committed just after it.
        assert_eq!(s.filled("c", vec![(1, "1")], true, t + HOLD), vec!["1"]);
        assert!(s.due(t + HOLD, HOLD).is_empty(), "not at once");
        assert_eq!(
            s.due(t + HOLD * 2, HOLD)[0].after_seq,
            1,
            "again after a hold"
        );
        assert_eq!(
            s.filled("c", vec![(2, "2")], true, t + HOLD * 2),
            vec!["2", "3"]
        );
    }

    #[test]
    fn a_channel_without_subscribers_skips_ahead() {
        let t = Instant::now();
        let mut s = Sequencer::new([("c".to_owned(), 0)]);
        s.offer("c", 3, "3", t);
        s.note_head("c", 9, t);
        assert_eq!(s.skip("c"), vec!["3"]);
        assert_eq!(s.delivered("c"), 9);
        assert!(s.offer("c", 8, "8", t).duplicate.is_some());
        assert_eq!(ready(s.offer("c", 10, "10", t)), vec!["10"]);
    }

    #[test]
    fn a_new_channel_starts_at_one() {
        let t = Instant::now();
        let mut s = Sequencer::new(Vec::<(String, i64)>::new());
        assert_eq!(ready(s.offer("new", 1, "1", t)), vec!["1"]);
        s.forget("new");
        assert!(s.channel_ids().is_empty());
    }
}
