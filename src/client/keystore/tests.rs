//! Key store tests: round trips, merges between processes, and refusals.

use zeroize::Zeroizing;

use super::file::{FileFormat, write_atomically};
use super::*;
use crate::crypto::e2e;

fn profile() -> Profile {
    Profile {
        server_url: "https://localhost:8080".into(),
        trust: Trust::Fingerprint("ab".repeat(32)),
        user_id: "u1".into(),
        device_id: "d1".into(),
        username: "alice".into(),
        token: Some("secret-token".into()),
        is_admin: true,
        profile_published: false,
    }
}

#[test]
fn round_trip_keeps_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = KeyStore::path_for(&dir.path().join("home"), "default").unwrap();
    let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
    assert!(!path.exists(), "nothing is written before save");
    store.set_profile(profile());
    store.set_channel_key("c1", Zeroizing::new([7u8; 32]));
    store.set_directory_key(Zeroizing::new([9u8; 32]));
    store.save().unwrap();

    let opened = KeyStore::open(&path, "correct horse battery").unwrap();
    assert_eq!(opened.profile(), Some(&profile()));
    assert_eq!(
        opened.device().public_key_b64(),
        store.device().public_key_b64()
    );
    assert_eq!(opened.channel_key("c1").map(|k| **k), Some([7u8; 32]));
    assert_eq!(opened.directory_key().map(|k| **k), Some([9u8; 32]));
    assert_eq!(opened.channel_ids(), vec!["c1".to_owned()]);

    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [
        "secret-token",
        "alice",
        "localhost",
        &STANDARD.encode([7u8; 32]),
    ] {
        assert!(!text.contains(secret), "{secret} is stored in the clear");
    }
    assert!(
        KeyStore::create(&path, "correct horse battery").is_err(),
        "never overwrites a store"
    );
}

#[test]
fn wrong_passphrase_and_corruption_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.keystore");
    let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
    store.set_profile(profile());
    store.save().unwrap();

    let err = KeyStore::open(&path, "wrong horse battery").unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongPassphrase(_)));
    assert!(
        err.to_string()
            .starts_with("wrong passphrase or corrupted key store"),
        "{err}"
    );

    // Flip one byte of the sealed part: same message, never garbage.
    let mut file: FileFormat = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut raw = STANDARD.decode(&file.sealed).unwrap();
    raw[20] ^= 0x01;
    file.sealed = STANDARD.encode(raw);
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let err = KeyStore::open(&path, "correct horse battery").unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongPassphrase(_)), "{err}");

    std::fs::write(&path, b"{not json").unwrap();
    assert!(matches!(
        KeyStore::open(&path, "x"),
        Err(KeyStoreError::Format { .. })
    ));
    assert!(matches!(
        KeyStore::open(&dir.path().join("missing.keystore"), "x"),
        Err(KeyStoreError::NotFound(_))
    ));
    assert!(matches!(
        KeyStore::create(&dir.path().join("new.keystore"), "short"),
        Err(KeyStoreError::Invalid(_))
    ));
}

#[cfg(unix)]
#[test]
fn file_is_private_and_written_atomically() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("cfg").join("dialtone");
    let path = KeyStore::path_for(&home, "work").unwrap();
    let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
    store.set_profile(profile());
    store.save().unwrap();
    store.set_channel_key("c2", Zeroizing::new([1u8; 32]));
    store.save().unwrap();

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn concurrent_saves_merge_instead_of_losing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.keystore");
    let mut first = KeyStore::create(&path, "correct horse battery").unwrap();
    first.set_profile(profile());
    first.set_channel_key("gone", Zeroizing::new([3u8; 32]));
    first.save().unwrap();

    // Another process (say `tail`) opens the same store...
    let mut other = KeyStore::open(&path, "correct horse battery").unwrap();
    // ...while this one learns a key, forgets one and logs in again.
    first.set_channel_key("new", Zeroizing::new([4u8; 32]));
    first.remove_channel_key("gone");
    first.profile_mut().unwrap().token = Some("fresh-token".into());
    first.save().unwrap();

    other.set_channel_key("from-tail", Zeroizing::new([5u8; 32]));
    other.save().unwrap();

    let merged = KeyStore::open(&path, "correct horse battery").unwrap();
    assert!(merged.channel_key("new").is_some());
    assert!(merged.channel_key("from-tail").is_some());
    assert_eq!(
        merged.profile().unwrap().token.as_deref(),
        Some("fresh-token")
    );
    // `other` never saw the removal, so it still has "gone" in memory and writes it back:
    // removal only sticks for the process that did it. That is harmless (a deleted channel's
    // key decrypts nothing new) and keeps the merge simple.

    // A store re-created at the same path is not clobbered by a stale process.
    std::fs::remove_file(&path).unwrap();
    let mut recreated = KeyStore::create(&path, "another passphrase").unwrap();
    recreated.set_profile(profile());
    recreated.save().unwrap();
    assert!(matches!(other.save(), Err(KeyStoreError::ChangedOnDisk(_))));
}

#[test]
fn profile_names_are_plain_words_and_debug_hides_the_token() {
    let home = Path::new("/tmp/x");
    assert!(KeyStore::path_for(home, "alice-2").is_ok());
    for bad in ["", "../etc", "a/b", ".hidden", "sp ace"] {
        assert!(KeyStore::path_for(home, bad).is_err(), "{bad}");
    }
    assert!(!format!("{:?}", profile()).contains("secret-token"));
}

#[test]
fn trust_keys_and_pins_round_trip_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let path = KeyStore::path_for(dir.path(), "default").unwrap();
    let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
    store.set_profile(profile());
    let ik = SigningKeyPair::generate();
    let ik_public = ik.public_b64();
    store.set_identity_key(ik);
    let pin = Pin {
        user_id: "u2".into(),
        identity_key: "aWs=".into(),
        version: 3,
        hash: "aA==".into(),
        verified: true,
    };
    store.set_pin(pin.clone());
    store.save().unwrap();
    let signing = store.signing_key().public_b64();

    let mut other = KeyStore::open(&path, "correct horse battery").unwrap();
    assert_eq!(other.signing_key().public_b64(), signing);
    assert_eq!(
        other.identity_key().map(|k| k.public_b64()),
        Some(ik_public.clone())
    );
    assert_eq!(other.pin("u2"), Some(&pin));
    for secret in [ik_public.as_str(), signing.as_str(), "aWs="] {
        assert!(!std::fs::read_to_string(&path).unwrap().contains(secret));
    }
    // Two processes pin different contacts: a save keeps both.
    other.set_pin(Pin {
        user_id: "u3".into(),
        ..pin.clone()
    });
    store.set_pin(Pin {
        version: 4,
        ..pin.clone()
    });
    other.save().unwrap();
    store.save().unwrap();
    let merged = KeyStore::open(&path, "correct horse battery").unwrap();
    assert_eq!(merged.pin("u2").map(|p| p.version), Some(4));
    assert!(merged.pin("u3").is_some());
}

#[test]
fn a_store_from_before_trust_v2_gets_one_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = KeyStore::path_for(dir.path(), "default").unwrap();
    let mut store = KeyStore::create(&path, "correct horse battery").unwrap();
    store.save().unwrap();
    // Strip the v2 fields, as a v1-era store has none.
    let file = read_file(&path).unwrap();
    let mut contents = unseal(&path, &store.sealing.key, &file.sealed).unwrap();
    contents.signing_secret = None;
    contents.identity_secret = None;
    let plain = serde_json::to_vec(&contents).unwrap();
    let old = FileFormat {
        sealed: e2e::seal(&store.sealing.key, &plain),
        ..file
    };
    write_atomically(&path, &serde_json::to_vec(&old).unwrap()).unwrap();

    // Two processes open it: each makes a key, and the first saved is the device's key.
    let mut a = KeyStore::open(&path, "correct horse battery").unwrap();
    let mut b = KeyStore::open(&path, "correct horse battery").unwrap();
    assert_ne!(a.signing_key().public_b64(), b.signing_key().public_b64());
    a.save().unwrap();
    b.save().unwrap();
    assert_eq!(a.signing_key().public_b64(), b.signing_key().public_b64());
    let again = KeyStore::open(&path, "correct horse battery").unwrap();
    assert_eq!(
        again.signing_key().public_b64(),
        a.signing_key().public_b64()
    );
    assert!(again.identity_key().is_none());
}

#[test]
fn a_forgotten_generation_key_stays_forgotten_across_the_save_merge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.keystore");
    let mut store = KeyStore::create(&path, "long enough pw").unwrap();
    store.set_profile(profile());
    store.set_generation_key("c1", 1, Zeroizing::new([1u8; 32]));
    store.set_generation_key("c1", 2, Zeroizing::new([2u8; 32]));
    store.save().unwrap();
    // The rotation that made generation 2 lost: the file still holds its key when saving.
    store.forget_generation_key("c1", 2);
    store.save().unwrap();
    assert_eq!(store.generations("c1"), vec![1]);
    assert_eq!(
        KeyStore::open(&path, "long enough pw")
            .unwrap()
            .generations("c1"),
        vec![1]
    );
    // The winner's key for that generation is taken as any other.
    store.set_generation_key("c1", 2, Zeroizing::new([3u8; 32]));
    store.save().unwrap();
    let opened = KeyStore::open(&path, "long enough pw").unwrap();
    assert_eq!(opened.generation_key("c1", 2).map(|k| k[0]), Some(3));
}
