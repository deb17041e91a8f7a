//! Unit tests of the E2E client's pure parts: futures are Send, share reports, name checks.

use super::channels::check_name;
use super::*;
use crate::client::rest::Page;

fn assert_send<T: Send>(_: &T) {}

/// Every future of the client must run on a plain multi-threaded tokio runtime.
#[test]
fn futures_are_send() {
    let dir = tempfile::tempdir().unwrap();
    let mut store =
        KeyStore::create(&dir.path().join("s.keystore"), "correct horse battery").unwrap();
    store.set_profile(Profile {
        server_url: "https://localhost:1".into(),
        trust: Trust::SystemRoots,
        user_id: "u".into(),
        device_id: "d".into(),
        username: "alice".into(),
        token: Some("t".into()),
        is_admin: false,
        profile_published: false,
    });
    let mut chat = Chat::resume(store).unwrap();
    assert_send(&chat.channels());
    assert_send(&chat.send("c", "x"));
    assert_send(&chat.share_keys(None, None));
    assert_send(&chat.history("c", &Page::default()));
    assert_send(&chat.broadcast("x"));
    assert_send(&chat.refresh());
    let spec = ServerSpec {
        url: "https://localhost:1".into(),
        trust: Trust::SystemRoots,
    };
    let store = KeyStore::create(&dir.path().join("t.keystore"), "correct horse battery").unwrap();
    assert_send(&Chat::login(store, &spec, "a", "b"));
    assert_send(&chat.follow(
        super::super::tail::FollowOptions::default(),
        |_| {},
        std::future::pending::<()>(),
    ));
}

#[test]
fn share_report_lists_each_skipped_device_once() {
    let s = SkippedDevice {
        device_id: "d".into(),
        user_id: None,
        reason: "bad".into(),
    };
    let mut r = ShareReport::default();
    r.skip(std::slice::from_ref(&s));
    r.skip(std::slice::from_ref(&s));
    r.shared.push((KeyRef::Directory, 2));
    r.shared.push((KeyRef::Channel("c".into()), 3));
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.envelopes(), 5);
    assert_eq!(KeyRef::Channel("c".into()).to_string(), "channel c");
}

#[test]
fn channel_names_are_checked() {
    assert_eq!(check_name("  general ").unwrap(), "general");
    assert!(check_name("").is_err());
    assert!(check_name("a\nb").is_err());
}
