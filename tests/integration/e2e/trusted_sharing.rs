//! Trust v2 key sharing: keys go only to the devices of a user's verified signed device list (a
//! device the server added is left out), to every device of a user without a list (v1 rules),
//! and to nobody of a user whose identity changed until it is accepted.

use dialtone::client::trust::identity;

use super::*;

async fn envelopes_for(server: &TestServer, channel: &str, device: &str) -> i64 {
    server
        .db
        .count(&format!(
            "SELECT count(*) AS v FROM channel_key_envelopes WHERE channel_id = '{channel}' AND \
             device_id = '{device}'"
        ))
        .await
}

#[tokio::test]
async fn keys_go_only_to_devices_of_a_verified_list() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let mut ann = register(&server, ANN).await;
    let bob = register(&server, BOB).await;
    {
        let (rest, store) = ann.rest_and_store();
        identity::init(rest, store).await.unwrap();
    }
    // A second device of ann's that no listed device signed in (as a hostile server would add).
    let mut ann2 = new_device(&server, ANN).await;

    let (channel, report) = admin.create_channel("trusted").await.unwrap();
    let withheld: Vec<&str> = report
        .skipped
        .iter()
        .map(|s| s.device_id.as_str())
        .collect();
    assert_eq!(withheld, [ann2.device_id()], "{report:?}");
    assert!(
        report.skipped[0].reason.contains("signed device list"),
        "{report:?}"
    );
    assert_eq!(
        envelopes_for(&server, &channel.id, ann.device_id()).await,
        1
    );
    assert_eq!(
        envelopes_for(&server, &channel.id, ann2.device_id()).await,
        0
    );
    // bob publishes no list: v1 rules.
    assert_eq!(
        envelopes_for(&server, &channel.id, bob.device_id()).await,
        1
    );

    // ann signs her second device in: the next share reaches it.
    let offer = {
        let (rest, store) = ann2.rest_and_store();
        identity::pairing_offer(rest, store).await.unwrap()
    };
    {
        let (rest, store) = ann.rest_and_store();
        identity::approve(rest, store, &offer.offer, &offer.code)
            .await
            .unwrap();
    }
    let report = admin.share_keys(Some(&channel.id), None).await.unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(
        envelopes_for(&server, &channel.id, ann2.device_id()).await,
        1
    );

    // ann resets on her second device: until the admin accepts, nothing reaches her devices.
    {
        let (rest, store) = ann2.rest_and_store();
        identity::reset(rest, store).await.unwrap();
    }
    let ann3 = new_device(&server, ANN).await;
    let report = admin
        .share_keys(None, Some(ann3.device_id()))
        .await
        .unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(
        report.skipped[0].reason.contains("identity key changed"),
        "{report:?}"
    );
    assert_eq!(
        envelopes_for(&server, &channel.id, ann3.device_id()).await,
        0
    );
    {
        let (rest, store) = admin.rest_and_store();
        identity::accept(rest, store, ann.user_id()).await.unwrap();
    }
    // Accepted; ann3 is still not on the new list, ann2 is.
    let report = admin.share_keys(Some(&channel.id), None).await.unwrap();
    let withheld: Vec<&str> = report
        .skipped
        .iter()
        .map(|s| s.device_id.as_str())
        .collect();
    assert!(withheld.contains(&ann3.device_id()), "{report:?}");
    assert!(
        withheld.contains(&ann.device_id()),
        "the old device is off the reset list"
    );
    assert_eq!(
        envelopes_for(&server, &channel.id, ann3.device_id()).await,
        0
    );
}
