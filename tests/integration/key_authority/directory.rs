//! The directory key under key authority: the same rules, with no creator (its first envelopes
//! come from an admin).

use dialtone::crypto::e2e::generate_key;
use dialtone::protocol::rest::DirectoryKeysUpload;
use reqwest::Method;

use super::*;

fn upload(envelopes: Vec<EnvelopeUpload>) -> DirectoryKeysUpload {
    DirectoryKeysUpload { envelopes }
}

#[tokio::test]
async fn directory_key_follows_the_same_rules() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    let key = generate_key();
    let planted = generate_key();

    // Nobody holds it yet: a non-admin cannot create it (no squatting the empty directory).
    let (status, body) = post(
        &bob,
        "/directory/keys",
        &upload(vec![envelope(&bob, &carol, &planted)]),
    )
    .await;
    assert_refused(status, &body, "not_key_holder", &[&carol]);
    // The admin can.
    let (status, body) = post(
        &alice,
        "/directory/keys",
        &upload(vec![
            envelope(&alice, &alice, &key),
            envelope(&alice, &bob, &key),
            envelope(&alice, &carol, &key),
        ]),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    // A non-holder is refused.
    let (status, body) = post(
        &dave,
        "/directory/keys",
        &upload(vec![envelope(&dave, &dave, &planted)]),
    )
    .await;
    assert_refused(status, &body, "not_key_holder", &[&dave]);
    // A holder shares with a newcomer, but cannot overwrite another user's envelope: the mixed
    // upload is refused as a whole, naming carol.
    let (status, body) = post(
        &bob,
        "/directory/keys",
        &upload(vec![
            envelope(&bob, &dave, &key),
            envelope(&bob, &carol, &planted),
        ]),
    )
    .await;
    assert_refused(status, &body, "envelope_conflict", &[&carol]);
    assert_eq!(directory_key_of(&dave).await, None, "all or nothing");
    assert_eq!(directory_key_of(&carol).await, Some(*key));
    let retry = upload(vec![envelope(&bob, &dave, &key)]);
    let (status, body) = post(&bob, "/directory/keys", &retry).await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(directory_key_of(&dave).await, Some(*key));
    // A byte-identical retry is accepted and changes nothing.
    let before = dave.rest.directory_key().await.unwrap().unwrap();
    let (status, body) = post(&bob, "/directory/keys", &retry).await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(dave.rest.directory_key().await.unwrap().unwrap(), before);
    // The admin may replace any envelope.
    let (status, body) = post(
        &alice,
        "/directory/keys",
        &upload(vec![envelope(&alice, &dave, &key)]),
    )
    .await;
    assert_eq!(status, 201, "body: {body}");
    assert_eq!(
        dave.rest
            .directory_key()
            .await
            .unwrap()
            .unwrap()
            .sender_device_id,
        alice.device()
    );

    // Self-delete: only the caller's own envelope.
    let (status, _) = send_raw(carol.rest.request(Method::DELETE, "/directory/keys")).await;
    assert_eq!(status, 204);
    assert_eq!(directory_key_of(&carol).await, None);
    assert_eq!(directory_key_of(&bob).await, Some(*key), "bob's stays");
    let (status, body) = send_raw(carol.rest.request(Method::DELETE, "/directory/keys")).await;
    assert_eq!(status, 404, "body: {body}");
    assert_error_body(&body, "not_found");
    dave.rest.delete_directory_key().await.unwrap();
    assert_eq!(
        server
            .db
            .count("SELECT count(*) AS v FROM directory_key_envelopes")
            .await,
        2
    );
}
