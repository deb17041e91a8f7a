//! The client key-store file: arbitrary bytes written as the file, then `KeyStore::open`.
//!
//! Inputs that parse as JSON and declare argon2 costs get those costs lowered before the write,
//! so the campaign explores the format instead of spending its time in argon2 (the cost ceilings
//! themselves are checked by the key store's unit tests).
#![no_main]

use std::sync::OnceLock;

use dialtone::client::keystore::KeyStore;
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir")).path()
}

fn cheapen(data: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return data.to_vec();
    };
    if let Some(kdf) = v.get_mut("kdf").and_then(|k| k.as_object_mut()) {
        for (field, cap) in [("m_cost", 64u64), ("t_cost", 1), ("p_cost", 1)] {
            if let Some(n) = kdf.get(field).and_then(|n| n.as_u64()) {
                kdf.insert(field.into(), n.min(cap).into());
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| data.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("keys.json");
    std::fs::write(&path, cheapen(data)).expect("write the file");
    let _ = KeyStore::open(&path, "passphrase");
});
