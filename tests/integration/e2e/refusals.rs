//! What the client library tells its caller when the server refuses a send: the `error` event's
//! code and, for a limit, how long to wait (`retry_after`).

use dialtone::client::ChatError;

use crate::support::*;

use super::*;

#[tokio::test]
async fn a_throttled_send_surfaces_the_servers_retry_after() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_USER_MESSAGES", "1/hour");
    })
    .await;
    let mut admin = register(&server, ADMIN).await;
    let (channel, _) = admin.create_channel("one-per-hour").await.unwrap();
    admin.send(&channel.id, "the only one").await.unwrap();
    let err = admin.send(&channel.id, "one too many").await.unwrap_err();
    let ChatError::Refused {
        code, retry_after, ..
    } = &err
    else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(code, "rate_limited");
    // 1/hour: the token comes back within the hour.
    let wait = retry_after.unwrap_or(0);
    assert!((1..=3600).contains(&wait), "retry_after {retry_after:?}");
    assert!(err.to_string().contains("retry in"), "{err}");
}
