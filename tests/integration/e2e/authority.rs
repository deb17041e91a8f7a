//! The client library under key authority: a share that meets devices already holding another
//! user's envelope stores the rest and reports those devices; a non-holder's upload is a typed
//! refusal, not a crash.

use dialtone::client::{ClientError, EnvelopeRefusal, KeyRef};
use dialtone::crypto::e2e;
use dialtone::protocol::rest::ChannelKeysUpload;

use crate::support::*;

use super::*;

#[tokio::test]
async fn e2e_share_skips_devices_that_hold_another_users_envelope() {
    let server = TestServer::start().await;
    let mut admin = register(&server, ADMIN).await;
    let mut ann = register(&server, ANN).await;
    let (channel, _) = admin.create_channel("lounge").await.unwrap();
    // bob arrives after the channel's key was shared: nobody has wrapped it for him yet.
    let mut bob = register(&server, BOB).await;

    // ann holds the key (admin wrapped it for her) and shares it with everyone: admin's own
    // envelope was written by admin, so it is left as it is and reported; bob gets one.
    let report = ann.share_keys(Some(&channel.id), None).await.unwrap();
    assert_eq!(report.failed, Vec::<(KeyRef, String)>::new());
    assert_eq!(report.shared, [(KeyRef::Channel(channel.id.clone()), 1)]);
    assert_eq!(
        report.held,
        [(
            KeyRef::Channel(channel.id.clone()),
            vec![admin.device_id().to_owned()]
        )]
    );
    bob.channel_key(&channel.id).await.unwrap();
    let sent = admin.send(&channel.id, "for everyone").await.unwrap();
    let page = bob
        .history(&channel.id, &dialtone::client::rest::Page::default())
        .await
        .unwrap();
    assert!(
        page.messages.iter().any(|m| m
            .as_ref()
            .is_ok_and(|m| m.id == sent.id && m.text == "for everyone")),
        "bob reads with the key ann gave him"
    );

    // A device that never held the key gets a typed refusal naming the targets.
    let carol = server.user("carol-numbat").await;
    let planted = e2e::generate_key();
    let upload = ChannelKeysUpload {
        generation: None,
        channel_id: channel.id.clone(),
        envelopes: vec![dialtone::protocol::rest::EnvelopeUpload {
            device_id: carol.device().to_owned(),
            sender_device_id: carol.device().to_owned(),
            sender_public_key: carol.keys.public_key_b64(),
            envelope: carol
                .keys
                .wrap_for(&carol.keys.public_key_b64(), &planted)
                .unwrap(),
            channel_id: None,
        }],
    };
    let err = carol.rest.upload_channel_keys(&upload).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::EnvelopeRefused {
                refusal: EnvelopeRefusal::NotKeyHolder,
                device_ids,
                ..
            } if device_ids == &[carol.device().to_owned()]
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.code(), Some("not_key_holder"));
    assert!(err.to_string().contains(carol.device()), "{err}");
}
