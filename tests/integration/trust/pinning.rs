//! The client's side (`client::trust`): pin on first use, follow the chain, and refuse what a
//! hostile server might serve instead (a rollback, a fork), with an identity reset a blocking
//! verdict.

use dialtone::client::trust::{TrustError, Verdict, verified_devices};
use dialtone::crypto::sign::SigningKeyPair;

use super::*;

#[tokio::test]
async fn a_contact_is_pinned_on_first_use_and_followed_along_its_chain() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let alice2 = server.new_device(&alice).await;
    let bob = server.user("bob").await;
    let err = verified_devices(&bob.rest, alice.id(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::NoList(_)), "{err}");

    let ik = SigningKeyPair::generate();
    let (d1, d2) = (Signer::new(&alice), Signer::new(&alice2));
    let v1 = publish(&alice, signed_list(&ik, None, &[&d1]), None).await;
    let (newest, verdict) = verified_devices(&bob.rest, alice.id(), None).await.unwrap();
    assert_eq!(newest, v1);
    let Verdict::FirstUse(pin) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(
        (pin.version, pin.identity_key.as_str()),
        (1, ik.public_b64().as_str())
    );

    // Two more versions: checked link by link from the pin.
    let v2 = publish(&alice, signed_list(&ik, Some(&v1), &[&d1, &d2]), Some(&v1)).await;
    let v3 = publish(&alice, signed_list(&ik, Some(&v2), &[&d2]), Some(&v2)).await;
    let (newest, verdict) = verified_devices(&bob.rest, alice.id(), Some(&pin))
        .await
        .unwrap();
    assert_eq!(newest, v3);
    let ids: Vec<&str> = newest
        .statement
        .devices
        .iter()
        .map(|d| d.device_id.as_str())
        .collect();
    assert_eq!(ids, [alice2.device()]);
    let Verdict::Same(pin3) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!((pin3.version, pin3.hash.as_str()), (3, v3.hash.as_str()));
}

#[tokio::test]
async fn a_rollback_or_a_forked_chain_is_refused_and_a_reset_is_a_blocking_change() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let ik = SigningKeyPair::generate();
    let d1 = Signer::new(&alice);
    let v1 = publish(&alice, signed_list(&ik, None, &[&d1]), None).await;
    let v2 = publish(&alice, signed_list(&ik, Some(&v1), &[&d1]), Some(&v1)).await;
    let (_, verdict) = verified_devices(&bob.rest, alice.id(), None).await.unwrap();
    let Verdict::FirstUse(pin_v2) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(pin_v2.version, 2);

    // A server that forgets version 2 (serves the older list again): a rollback.
    server
        .db
        .execute("DELETE FROM device_lists WHERE version = 2")
        .await;
    let err = verified_devices(&bob.rest, alice.id(), Some(&pin_v2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::Rollback {
                pinned: 2,
                served: 1
            }
        ),
        "{err}"
    );

    // alice resets her identity (a new key) at version 2: a different list where bob pinned
    // one, so for bob's pin at 2 that is a fork; from a pin at 1 it is an identity change.
    let new_ik = SigningKeyPair::generate();
    let d1_again = Signer::new(&alice);
    let reset = publish(
        &alice,
        signed_list(&new_ik, Some(&v1), &[&d1_again]),
        Some(&v1),
    )
    .await;
    assert!(reset.statement.reset);
    assert_ne!(reset.hash, v2.hash);
    let err = verified_devices(&bob.rest, alice.id(), Some(&pin_v2))
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::Forked(2)), "{err}");
    let pin_v1 = dialtone::client::trust::Pin {
        verified: true,
        ..dialtone::client::trust::Pin::of(&v1)
    };
    let (newest, verdict) = verified_devices(&bob.rest, alice.id(), Some(&pin_v1))
        .await
        .unwrap();
    assert_eq!(newest, reset);
    match verdict {
        Verdict::IdentityChanged { pinned, new } => {
            assert!(pinned.verified);
            assert_eq!(new.identity_key, new_ik.public_b64());
            assert!(!new.verified, "a new identity starts unverified");
        }
        other => panic!("{other:?}"),
    }
}
