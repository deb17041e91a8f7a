//! Authenticity of cluster bus messages: HMAC-SHA256 under a subkey of the at-rest key, which
//! every node of a cluster holds and NATS never sees. A NATS client without it (a compromised
//! account, a misrouted subject) cannot make a node deliver a forged message, notice or presence
//! change. The tag also covers the subject the message was published on, so a signed message
//! cannot be moved to another subject. A message is `tag (32 bytes) ‖ body`; a tag under one of the previous at-rest keys is
//! accepted too, so a rolling key rotation keeps the nodes that already rotated hearing the others.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::derive_key;

type HmacSha256 = Hmac<Sha256>;

pub const TAG_LEN: usize = 32;

pub struct BusMac {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

fn subkey(key: &[u8]) -> [u8; 32] {
    derive_key(key, b"dialtone/cluster/bus-mac/v1")
}

fn mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Length-prefixed context, then the body: no (context, body) pair collides with another.
fn bind(m: &mut HmacSha256, context: &[u8], body: &[u8]) {
    m.update(&(context.len() as u64).to_be_bytes());
    m.update(context);
    m.update(body);
}

impl BusMac {
    pub fn new(channel_key: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: subkey(channel_key),
            previous: previous.iter().map(|k| subkey(k)).collect(),
        }
    }

    /// `tag ‖ body` under the current key, the tag covering `context` (the subject) too.
    pub fn seal(&self, context: &[u8], body: &[u8]) -> Vec<u8> {
        let mut m = mac(&self.current);
        bind(&mut m, context, body);
        let tag = m.finalize().into_bytes();
        let mut out = Vec::with_capacity(TAG_LEN + body.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(body);
        out
    }

    /// The body, if the tag verifies for `context` under the current or a previous key (constant
    /// time).
    pub fn open<'a>(&self, context: &[u8], sealed: &'a [u8]) -> Option<&'a [u8]> {
        if sealed.len() < TAG_LEN {
            return None;
        }
        let (tag, body) = sealed.split_at(TAG_LEN);
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .any(|k| {
                let mut m = mac(k);
                bind(&mut m, context, body);
                m.verify_slice(tag).is_ok()
            })
            .then_some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cluster_key_opens_and_any_change_is_refused() {
        let nodes = BusMac::new(&[7u8; 32], &[]);
        let sealed = nodes.seal(b"d.presence", b"{\"kind\":\"leaving\"}");
        assert_eq!(
            nodes.open(b"d.presence", &sealed),
            Some(&b"{\"kind\":\"leaving\"}"[..])
        );
        assert_eq!(
            nodes.open(b"d.ev", &sealed),
            None,
            "moved to another subject"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(nodes.open(b"d.presence", &flipped), None);
        assert_eq!(
            BusMac::new(&[8u8; 32], &[]).open(b"d.presence", &sealed),
            None
        );
        assert_eq!(nodes.open(b"d.presence", &sealed[..10]), None);
        assert_eq!(
            nodes.open(b"d.presence", b"{\"kind\":\"leaving\"}"),
            None,
            "unsigned"
        );
    }

    #[test]
    fn a_rotated_node_still_hears_nodes_on_the_previous_key() {
        let old = BusMac::new(&[1u8; 32], &[]);
        let rotated = BusMac::new(&[2u8; 32], &[&[1u8; 32]]);
        assert!(rotated.open(b"s", &old.seal(b"s", b"x")).is_some());
        assert!(old.open(b"s", &rotated.seal(b"s", b"x")).is_none());
    }
}
