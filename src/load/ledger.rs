//! Per-socket delivery accounting: whether a received `channel.message.new` is a duplicate (its
//! message id already came on this socket) or out of order (its channel `seq` is not above the
//! highest one this socket has seen for that channel; for servers without `seq`, its publisher's
//! send time is not after the last one received from that publisher).
//!
//! A ledger belongs to one socket's reader task, so it needs no lock. It reads the few fields it
//! needs straight from the frame text rather than deserializing every frame: the reader sits on
//! the hot path of every delivery.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// What one delivery was, as far as order and uniqueness go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First receipt, in order.
    InOrder(Basis),
    /// First receipt, but behind (or level with) one already received.
    OutOfOrder(Basis),
    /// The same message id again on this socket (not also counted as out of order: one anomaly,
    /// one count).
    Duplicate,
}

/// What order was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The channel's `seq`.
    Seq,
    /// No `seq` on the event (an older server): the publisher's send order.
    SendOrder,
}

/// The fields of a `channel.message.new` the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub message_id: Option<&'a str>,
    pub channel_id: Option<&'a str>,
    pub seq: Option<i64>,
    /// The publishing socket and its scheduled send time, from the generator's own mark.
    pub from: usize,
    pub sent: u64,
}

impl<'a> Received<'a> {
    /// Read the fields from a frame's text (`from` and `sent` come from its mark).
    pub fn from_text(text: &'a str, from: usize, sent: u64) -> Self {
        Self {
            message_id: str_field(text, "message_id"),
            channel_id: str_field(text, "channel_id"),
            seq: int_field(text, "seq"),
            from,
            sent,
        }
    }
}

/// One socket's memory of what it has received.
#[derive(Debug, Default)]
pub struct Ledger {
    /// 64-bit hashes of the message ids seen: a few bytes per delivery instead of the id itself
    /// (a run keeps millions). A false "duplicate" needs a hash collision among one socket's
    /// thousands of ids: about n²/2⁶⁵, never in practice.
    seen: HashSet<u64>,
    /// Channel → highest `seq` received on this socket.
    last_seq: HashMap<String, i64>,
    /// Publisher (its socket index) → latest send time received from it, for events without seq.
    last_sent: HashMap<usize, u64>,
}

impl Ledger {
    pub fn observe(&mut self, m: &Received<'_>) -> Verdict {
        let mut h = DefaultHasher::new();
        match m.message_id {
            Some(id) => id.hash(&mut h),
            // No id in the frame (a server we do not know): the generator's mark is unique per
            // message of this run (a publisher's send times strictly increase).
            None => (m.from, m.sent).hash(&mut h),
        }
        if !self.seen.insert(h.finish()) {
            return Verdict::Duplicate;
        }
        match m.seq {
            Some(seq) => {
                let channel = m.channel_id.unwrap_or("");
                let in_order = match self.last_seq.get_mut(channel) {
                    Some(last) if seq <= *last => false,
                    Some(last) => {
                        *last = seq;
                        true
                    }
                    None => {
                        self.last_seq.insert(channel.to_owned(), seq);
                        true
                    }
                };
                if in_order {
                    Verdict::InOrder(Basis::Seq)
                } else {
                    Verdict::OutOfOrder(Basis::Seq)
                }
            }
            None => match self.last_sent.get_mut(&m.from) {
                Some(last) if m.sent <= *last => Verdict::OutOfOrder(Basis::SendOrder),
                Some(last) => {
                    *last = m.sent;
                    Verdict::InOrder(Basis::SendOrder)
                }
                None => {
                    self.last_sent.insert(m.from, m.sent);
                    Verdict::InOrder(Basis::SendOrder)
                }
            },
        }
    }
}

/// The position just after `"key":` (and any blanks), if the frame has that key.
fn value_at<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = text[from..].find(key) {
        let start = from + pos;
        let end = start + key.len();
        // A key, not a substring of another (`"client_message_id"` contains `message_id`): it is
        // quoted on both sides and followed by a colon.
        let quoted = start > 0 && text[..start].ends_with('"') && text[end..].starts_with("\":");
        if quoted {
            return Some(text[end + 2..].trim_start());
        }
        from = end;
    }
    None
}

/// A string field's value (ids and cursors: no escapes to undo).
fn str_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = value_at(text, key)?.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// An integer field's value.
fn int_field(text: &str, key: &str) -> Option<i64> {
    let rest = value_at(text, key)?;
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(
        id: &'static str,
        channel: &'static str,
        seq: Option<i64>,
        from: usize,
        sent: u64,
    ) -> Received<'static> {
        Received {
            message_id: Some(id),
            channel_id: Some(channel),
            seq,
            from,
            sent,
        }
    }

    #[test]
    fn fields_are_read_from_the_frame_text() {
        let text = r#"{"type":"channel.message.new","message_id":"m-1","sender":"u","body":"QUJD","channel_id":"c-9","client_message_id":"lt:5:7","seq":42}"#;
        let r = Received::from_text(text, 7, 5);
        assert_eq!(r.message_id, Some("m-1"));
        assert_eq!(r.channel_id, Some("c-9"));
        assert_eq!(r.seq, Some(42));
        // `client_message_id` is not mistaken for `message_id`, whichever comes first.
        let swapped = r#"{"client_message_id":"lt:5:7","message_id":"m-2", "seq": 7}"#;
        let r = Received::from_text(swapped, 7, 5);
        assert_eq!((r.message_id, r.seq), (Some("m-2"), Some(7)));
        let old = r#"{"type":"channel.message.new","client_message_id":"lt:5:7"}"#;
        let r = Received::from_text(old, 7, 5);
        assert_eq!((r.message_id, r.seq), (None, None));
        assert_eq!(int_field(r#"{"seq":-3}"#, "seq"), Some(-3));
        assert_eq!(int_field(r#"{"seq":"x"}"#, "seq"), None);
    }

    #[test]
    fn the_same_message_id_twice_is_one_duplicate_not_an_order_violation() {
        let mut l = Ledger::default();
        assert_eq!(
            l.observe(&msg("a", "c", Some(1), 0, 10)),
            Verdict::InOrder(Basis::Seq)
        );
        assert_eq!(
            l.observe(&msg("a", "c", Some(1), 0, 10)),
            Verdict::Duplicate
        );
        assert_eq!(
            l.observe(&msg("b", "c", Some(2), 0, 20)),
            Verdict::InOrder(Basis::Seq)
        );
        // A duplicate arriving late is still a duplicate.
        assert_eq!(
            l.observe(&msg("a", "c", Some(1), 0, 10)),
            Verdict::Duplicate
        );
        // Another socket has its own ledger: the same message there is a first receipt.
        let mut other = Ledger::default();
        assert_eq!(
            other.observe(&msg("a", "c", Some(1), 0, 10)),
            Verdict::InOrder(Basis::Seq)
        );
    }

    #[test]
    fn a_seq_at_or_below_the_highest_seen_on_its_channel_is_out_of_order() {
        let mut l = Ledger::default();
        let verdicts: Vec<Verdict> = [
            msg("m1", "c1", Some(1), 0, 10),
            msg("m3", "c1", Some(3), 0, 30),
            // Behind 3: out of order, and 3 stays the high-water mark.
            msg("m2", "c1", Some(2), 0, 20),
            // Level with 3 under another id: the server gave two messages one seq.
            msg("m3b", "c1", Some(3), 0, 31),
            msg("m4", "c1", Some(4), 0, 40),
            // Channels are independent: seq 1 on c2 is in order.
            msg("n1", "c2", Some(1), 1, 15),
        ]
        .iter()
        .map(|m| l.observe(m))
        .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            vec![
                InOrder(Basis::Seq),
                InOrder(Basis::Seq),
                OutOfOrder(Basis::Seq),
                OutOfOrder(Basis::Seq),
                InOrder(Basis::Seq),
                InOrder(Basis::Seq),
            ]
        );
    }

    #[test]
    fn without_seq_order_is_each_publishers_send_order() {
        let mut l = Ledger::default();
        use Verdict::*;
        assert_eq!(
            l.observe(&msg("a", "c", None, 3, 100)),
            InOrder(Basis::SendOrder)
        );
        // Another publisher's earlier message is not an inversion.
        assert_eq!(
            l.observe(&msg("b", "c", None, 4, 50)),
            InOrder(Basis::SendOrder)
        );
        assert_eq!(
            l.observe(&msg("c", "c", None, 3, 200)),
            InOrder(Basis::SendOrder)
        );
        assert_eq!(
            l.observe(&msg("d", "c", None, 3, 150)),
            OutOfOrder(Basis::SendOrder)
        );
        assert_eq!(l.observe(&msg("d", "c", None, 3, 150)), Duplicate);
        // Without a message id, the mark tells messages apart.
        let anonymous = Received {
            message_id: None,
            channel_id: None,
            seq: None,
            from: 4,
            sent: 60,
        };
        assert_eq!(l.observe(&anonymous), InOrder(Basis::SendOrder));
        assert_eq!(l.observe(&anonymous), Duplicate);
    }
}
