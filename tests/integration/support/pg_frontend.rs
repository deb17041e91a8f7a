//! Enough of PostgreSQL's frontend protocol (what a client sends) to tell, on one proxied
//! connection, when a transaction that inserted channel messages (a group commit) sends its
//! `COMMIT`. Matching bytes in a chunk is not enough: the insert is a prepared statement whose text
//! goes over a connection once, and every later batch only binds it by name.

use std::collections::HashSet;

/// The text of the group commit's insert (`db::messages`).
const INSERT: &[u8] = b"INSERT INTO channel_messages";
/// `SSLRequest` and `GSSENCRequest`: untyped, before the (also untyped) startup message.
const PRE_STARTUP: [u32; 2] = [80_877_103, 80_877_104];

/// The state of one connection's client-to-server stream.
#[derive(Default)]
pub(super) struct GroupCommits {
    /// Bytes of a message not complete yet.
    pending: Vec<u8>,
    started: bool,
    /// Prepared statements whose text inserts channel messages (the unnamed one as `""`).
    inserting: HashSet<Vec<u8>>,
    /// The open transaction ran such an insert.
    inserted: bool,
    /// The stream stopped making sense (TLS was negotiated, or a length is impossible): no
    /// commit is reported any more and nothing is buffered.
    lost: bool,
}

/// Larger than any message the server's client sends (PostgreSQL's own limit is 1 GiB).
const MAX_MESSAGE: usize = 1 << 30;
/// PostgreSQL's bound on the startup message (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP: usize = 10_000;

impl GroupCommits {
    /// Take the next bytes the client sent; true when they hold a group commit's `COMMIT`.
    pub(super) fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.lost {
            return false;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let mut committed = false;
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if !self.started {
                let (Some(len), Some(code)) = (be32(rest, 0), be32(rest, 4)) else {
                    break;
                };
                if !(8..=MAX_STARTUP).contains(&len) {
                    self.lost = true;
                    return false;
                }
                if rest.len() < len {
                    break;
                }
                self.started = !PRE_STARTUP.contains(&(code as u32));
                at += len;
                continue;
            }
            let Some(len) = be32(rest, 1) else {
                break;
            };
            if !(4..=MAX_MESSAGE).contains(&len) {
                self.lost = true;
                return false;
            }
            let total = len + 1;
            if rest.len() < total {
                break;
            }
            committed |= self.message(rest[0], &rest[5..total]);
            at += total;
        }
        buf.drain(..at);
        self.pending = buf;
        committed
    }

    fn message(&mut self, kind: u8, body: &[u8]) -> bool {
        match kind {
            // Parse: statement name, query text.
            b'P' => {
                let (name, rest) = cstr(body);
                let (query, _) = cstr(rest);
                if contains(query, INSERT) {
                    self.inserting.insert(name.to_vec());
                } else {
                    self.inserting.remove(name);
                }
            }
            // Bind: portal name, statement name.
            b'B' => {
                let (_, rest) = cstr(body);
                let (statement, _) = cstr(rest);
                self.inserted |= self.inserting.contains(statement);
            }
            // Simple query: how diesel begins, commits and rolls back.
            b'Q' => {
                let (query, _) = cstr(body);
                self.inserted |= contains(query, INSERT);
                if contains(query, b"COMMIT") {
                    return std::mem::take(&mut self.inserted);
                }
                if contains(query, b"ROLLBACK") {
                    self.inserted = false;
                }
            }
            _ => {}
        }
        false
    }
}

/// The big-endian `u32` at `at`, as a length.
fn be32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// A NUL-terminated string and what follows it.
fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == 0) {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[]),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::GroupCommits;

    fn msg(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut out = vec![kind];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn a_commit_after_binding_a_prepared_insert_is_a_group_commit() {
        let mut w = GroupCommits::default();
        let mut startup = 16u32.to_be_bytes().to_vec();
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(b"user\0\0\0\0");
        assert!(!w.feed(&startup));
        let parse = msg(
            b'P',
            &[
                b"s7\0",
                b"INSERT INTO channel_messages (id) SELECT 1\0",
                b"\0\0",
            ],
        );
        assert!(!w.feed(&parse));
        assert!(!w.feed(&msg(b'Q', &[b"COMMIT\0"])), "nothing bound yet");
        let bind = msg(b'B', &[b"\0", b"s7\0", b"\0\0"]);
        // Split mid-message: the parser waits for the rest.
        let (a, b) = bind.split_at(3);
        assert!(!w.feed(a));
        assert!(!w.feed(b));
        assert!(w.feed(&msg(b'Q', &[b"COMMIT\0"])));
        assert!(!w.feed(&msg(b'Q', &[b"COMMIT\0"])), "once per transaction");
        w.feed(&bind);
        assert!(!w.feed(&msg(b'Q', &[b"ROLLBACK\0"])));
        assert!(!w.feed(&msg(b'Q', &[b"COMMIT\0"])), "rolled back");
    }

    #[test]
    fn a_stream_that_turned_to_tls_is_given_up_without_buffering() {
        let mut w = GroupCommits::default();
        let mut ssl_request = 8u32.to_be_bytes().to_vec();
        ssl_request.extend_from_slice(&80_877_103u32.to_be_bytes());
        assert!(!w.feed(&ssl_request));
        // A TLS ClientHello read as a startup message's length: impossible.
        assert!(!w.feed(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
        assert!(!w.feed(b"INSERT INTO channel_messages COMMIT"));
        assert!(w.pending.is_empty());
    }
}
