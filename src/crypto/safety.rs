//! Safety numbers (docs/TRUST.md §3): Signal's numeric fingerprint over two users' identity
//! keys, so two people can compare 60 digits (or scan a QR code) and know no server swapped a
//! key. Pure functions, shared by every client.
//!
//! Per user: `h1 = SHA-512(0x00 0x00 ‖ key ‖ stable_id ‖ key)`, `h_k = SHA-512(h_(k−1) ‖ key)`
//! up to `h_N` (N = [`ITERATIONS`]); its first 30 bytes, as six 5-byte big-endian numbers mod
//! 100000, give 30 digits. The two users' 30 digits, the smaller first, are the safety number.
//! dialtone's `key` is the raw 32-byte Ed25519 identity key and `stable_id` the user id's UTF-8.

use sha2::{Digest, Sha512};

/// Signal's iteration count (libsignal, Signal-Desktop): above 112 bits of work for a collision.
pub const ITERATIONS: u32 = 5200;
/// Version byte of the QR payload (changes the QR only, never the digits).
pub const QR_VERSION: u8 = 1;

/// One user's iterated hash.
fn user_hash(key: &[u8], stable_id: &[u8], iterations: u32) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update([0u8, 0u8]);
    h.update(key);
    h.update(stable_id);
    h.update(key);
    let mut out: [u8; 64] = h.finalize().into();
    for _ in 1..iterations {
        let mut h = Sha512::new();
        h.update(out);
        h.update(key);
        out = h.finalize().into();
    }
    out
}

fn digits30(hash: &[u8; 64]) -> String {
    let mut s = String::with_capacity(30);
    for chunk in hash[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        s.push_str(&format!("{:05}", n % 100_000));
    }
    s
}

/// One side's contribution: its 30 digits and the 32 bytes the QR code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub digits: String,
    pub qr_content: [u8; 32],
}

pub fn fingerprint(key: &[u8], stable_id: &[u8], iterations: u32) -> Fingerprint {
    let h = user_hash(key, stable_id, iterations);
    let mut qr_content = [0u8; 32];
    qr_content.copy_from_slice(&h[..32]);
    Fingerprint {
        digits: digits30(&h),
        qr_content,
    }
}

/// The 60-digit safety number of two users, identical on both sides.
pub fn safety_number(a: &Fingerprint, b: &Fingerprint) -> String {
    if a.digits <= b.digits {
        format!("{}{}", a.digits, b.digits)
    } else {
        format!("{}{}", b.digits, a.digits)
    }
}

/// dialtone's safety number between two users' identity keys (raw 32 bytes) and ids.
pub fn dialtone_safety_number(
    my_key: &[u8],
    my_id: &str,
    their_key: &[u8],
    their_id: &str,
) -> String {
    safety_number(
        &fingerprint(my_key, my_id.as_bytes(), ITERATIONS),
        &fingerprint(their_key, their_id.as_bytes(), ITERATIONS),
    )
}

/// The 60 digits as 12 groups of 5, as people read them aloud.
pub fn grouped(number: &str) -> String {
    number
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The QR payload (libsignal's `CombinedFingerprints`): `08 ver 12 22 0a 20 <local 32 B> 1a 22
/// 0a 20 <remote 32 B>`. The scanner checks that the scanned local is its remote and the
/// scanned remote its local.
pub fn qr_payload(local: &Fingerprint, remote: &Fingerprint) -> Vec<u8> {
    let mut out = vec![0x08, QR_VERSION, 0x12, 0x22, 0x0a, 0x20];
    out.extend_from_slice(&local.qr_content);
    out.extend_from_slice(&[0x1a, 0x22, 0x0a, 0x20]);
    out.extend_from_slice(&remote.qr_content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// libsignal `rust/protocol/src/fingerprint.rs` test vector (33-byte serialized keys,
    /// E.164 ids, 5200 iterations): the algorithm is Signal's, byte for byte.
    #[test]
    fn reproduces_the_libsignal_vector() {
        let alice = hex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
        let bob = hex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
        let a = fingerprint(&alice, b"+14152222222", 5200);
        let b = fingerprint(&bob, b"+14153333333", 5200);
        let expected = "300354477692869396892869876765458257569162576843440918079131";
        assert_eq!(safety_number(&a, &b), expected);
        assert_eq!(safety_number(&b, &a), expected, "the same on both sides");
    }

    /// dialtone's own vectors (raw 32-byte Ed25519 keys, UUID user ids), committed so every
    /// client (the CLI, a web client) can check itself against them.
    #[test]
    fn dialtone_vectors() {
        let k1 = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let k2 = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let u1 = "6f1c4a52-2f0e-4d7b-9a51-0c6f3b0d2e11";
        let u2 = "b0e2d8a4-5c3f-4e1a-8d27-93f4c6a1e5b2";
        let n = dialtone_safety_number(&k1, u1, &k2, u2);
        assert_eq!(n.len(), 60);
        assert!(n.bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(n, dialtone_safety_number(&k2, u2, &k1, u1));
        assert_eq!(n, DIALTONE_VECTOR, "grouped: {}", grouped(&n));
        // Any change of key or id changes the number.
        assert_ne!(n, dialtone_safety_number(&k1, u1, &k2, u1));
        assert_ne!(n, dialtone_safety_number(&k1, u1, &k1, u2));
    }

    /// Computed by this implementation once it reproduced the libsignal vector above.
    const DIALTONE_VECTOR: &str = "050643738426195661083456630711365571675764034036031564469618";

    #[test]
    fn qr_payload_layout() {
        let a = fingerprint(b"a", b"1", 2);
        let b = fingerprint(b"b", b"2", 2);
        let p = qr_payload(&a, &b);
        assert_eq!(p.len(), 6 + 32 + 4 + 32);
        assert_eq!(&p[..6], &[0x08, 1, 0x12, 0x22, 0x0a, 0x20]);
        assert_eq!(&p[6..38], &a.qr_content);
        assert_eq!(&p[38..42], &[0x1a, 0x22, 0x0a, 0x20]);
        assert_eq!(&p[42..], &b.qr_content);
        assert_eq!(grouped("123456789012345"), "12345 67890 12345");
    }
}
