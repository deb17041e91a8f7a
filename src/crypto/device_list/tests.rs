//! Signed device lists: what passes, and every way a list is refused.

use super::*;
use crate::crypto::e2e::DeviceKeypair;

struct Dev {
    id: String,
    x25519: String,
    signing: SigningKeyPair,
}

fn dev(id: &str) -> Dev {
    Dev {
        id: id.to_owned(),
        x25519: DeviceKeypair::generate().public_key_b64(),
        signing: SigningKeyPair::generate(),
    }
}

fn list(
    user: &str,
    ik: &SigningKeyPair,
    prev: Option<&CheckedList>,
    devs: &[&Dev],
) -> SignedDeviceList {
    let entries = devs
        .iter()
        .map(|d| listed_device(user, &ik.public_b64(), &d.id, &d.x25519, &d.signing))
        .collect();
    let st = next_statement(
        user,
        prev,
        &ik.public_b64(),
        entries,
        "2026-12-01T00:00:00Z".into(),
    );
    sign_statement(&st, ik)
}

/// Re-sign a statement after changing it (a forger with the identity key, or tests of checks
/// that come after the signature).
fn edited(
    signed: &SignedDeviceList,
    ik: &SigningKeyPair,
    edit: impl FnOnce(&mut DeviceListStatement),
) -> SignedDeviceList {
    let bytes = STANDARD.decode(&signed.statement).unwrap();
    let mut st: DeviceListStatement = serde_json::from_slice(&bytes).unwrap();
    edit(&mut st);
    sign_statement(&st, ik)
}

#[test]
fn a_chain_of_lists_verifies_link_by_link() {
    let ik = SigningKeyPair::generate();
    let (a, b) = (dev("a"), dev("b"));
    let v1 = check(&list("u", &ik, None, &[&a]), "u", None).unwrap();
    assert_eq!(v1.statement.version, 1);
    assert_eq!(v1.statement.prev_hash, genesis_hash());
    let v2 = check(&list("u", &ik, Some(&v1), &[&a, &b]), "u", Some(&v1)).unwrap();
    assert_eq!(v2.statement.version, 2);
    assert_eq!(v2.statement.prev_hash, v1.hash);
    assert_ne!(v1.hash, v2.hash);
    let chain = check_chain(&[v1.signed.clone(), v2.signed.clone()], "u", None)
        .unwrap()
        .unwrap();
    assert_eq!(chain, v2);
}

#[test]
fn versions_and_chains_that_do_not_follow_are_refused() {
    let ik = SigningKeyPair::generate();
    let a = dev("a");
    let v1 = check(&list("u", &ik, None, &[&a]), "u", None).unwrap();
    // Replaying version 1 where version 2 is due (a rollback).
    assert_eq!(
        check(&v1.signed, "u", Some(&v1)),
        Err(ListError::Version {
            current: 1,
            expected: 2,
            got: 1
        })
    );
    let v2 = list("u", &ik, Some(&v1), &[&a]);
    let skipped = edited(&v2, &ik, |s| s.version = 3);
    assert!(matches!(
        check(&skipped, "u", Some(&v1)),
        Err(ListError::Version { got: 3, .. })
    ));
    let forked = edited(&v2, &ik, |s| s.prev_hash = genesis_hash());
    assert_eq!(check(&forked, "u", Some(&v1)), Err(ListError::Chain));
    let first_with_a_parent = edited(&list("u", &ik, None, &[&a]), &ik, |s| {
        s.prev_hash = v1.hash.clone()
    });
    assert_eq!(
        check(&first_with_a_parent, "u", None),
        Err(ListError::Chain)
    );
}

#[test]
fn signatures_bind_the_exact_bytes_and_every_device() {
    let ik = SigningKeyPair::generate();
    let (a, b) = (dev("a"), dev("b"));
    let good = list("u", &ik, None, &[&a, &b]);
    // The statement changed after signing (the server adding a device of its own).
    let mut tampered = good.clone();
    let mut st: DeviceListStatement =
        serde_json::from_slice(&STANDARD.decode(&good.statement).unwrap()).unwrap();
    st.created_at = "2026-12-02T00:00:00Z".into();
    tampered.statement = STANDARD.encode(serde_json::to_vec(&st).unwrap());
    assert_eq!(
        check(&tampered, "u", None),
        Err(ListError::IdentitySignature)
    );
    // Signed by some other identity key than the one it names.
    let other = SigningKeyPair::generate();
    let mut wrong_key = good.clone();
    wrong_key.identity_signature = sign_statement(&st, &other).identity_signature;
    assert_eq!(
        check(&wrong_key, "u", None),
        Err(ListError::IdentitySignature)
    );
    // A device entry whose countersignature is not by its signing key (a planted device).
    let planted = edited(&good, &ik, |s| {
        s.devices[1].signing_key = SigningKeyPair::generate().public_b64();
    });
    assert_eq!(
        check(&planted, "u", None),
        Err(ListError::Countersignature("b".into()))
    );
    // A countersignature moved to another X25519 key.
    let moved = edited(&good, &ik, |s| {
        s.devices[0].public_key = DeviceKeypair::generate().public_key_b64();
    });
    assert_eq!(
        check(&moved, "u", None),
        Err(ListError::Countersignature("a".into()))
    );
}

#[test]
fn identity_changes_need_an_explicit_reset_under_a_new_key() {
    let ik = SigningKeyPair::generate();
    let a = dev("a");
    let v1 = check(&list("u", &ik, None, &[&a]), "u", None).unwrap();
    let new_ik = SigningKeyPair::generate();
    let reset = list("u", &new_ik, Some(&v1), &[&a]);
    let v2 = check(&reset, "u", Some(&v1)).unwrap();
    assert!(v2.statement.reset);
    let silent = edited(&reset, &new_ik, |s| s.reset = false);
    assert_eq!(
        check(&silent, "u", Some(&v1)),
        Err(ListError::IdentityChanged)
    );
    let same_key_reset = edited(&list("u", &ik, Some(&v1), &[&a]), &ik, |s| s.reset = true);
    assert_eq!(
        check(&same_key_reset, "u", Some(&v1)),
        Err(ListError::ResetWithoutNewKey)
    );
}

#[test]
fn malformed_lists_are_refused_with_a_reason() {
    let ik = SigningKeyPair::generate();
    let a = dev("a");
    let good = list("u", &ik, None, &[&a]);
    assert_eq!(
        check(&good, "someone-else", None),
        Err(ListError::WrongUser)
    );
    let twice = edited(&good, &ik, |s| {
        let d = s.devices[0].clone();
        s.devices.push(d);
    });
    assert!(
        matches!(check(&twice, "u", None), Err(ListError::Malformed(m)) if m.contains("twice"))
    );
    let empty = edited(&good, &ik, |s| s.devices.clear());
    assert!(matches!(
        check(&empty, "u", None),
        Err(ListError::Malformed(_))
    ));
    let kind = edited(&good, &ik, |s| s.kind = "dialtone.message.v2".into());
    assert!(matches!(
        check(&kind, "u", None),
        Err(ListError::Malformed(_))
    ));
    let mut not_b64 = good.clone();
    not_b64.statement = "%%%".into();
    assert!(matches!(
        check(&not_b64, "u", None),
        Err(ListError::Malformed(_))
    ));
    let mut not_json = good.clone();
    not_json.statement = STANDARD.encode(b"{\"kind\":1}");
    assert!(matches!(
        check(&not_json, "u", None),
        Err(ListError::Malformed(_))
    ));
}
