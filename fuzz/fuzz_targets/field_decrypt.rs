//! The at-rest ciphertext format (`enc:<key id>:<base64>`): arbitrary stored strings through
//! `FieldCipher::decrypt` with a current and a previous key, and `key_id_of`. A value this
//! cipher encrypted must always open again.
#![no_main]

use dialtone::crypto::field::{Column, FieldCipher, key_id_of};
use libfuzzer_sys::fuzz_target;

const COLUMNS: [Column; 4] = [
    Column::UsersUsername,
    Column::DevicesPublicKey,
    Column::BroadcastSenderName,
    Column::BroadcastSenderPublicKey,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let column = COLUMNS[usize::from(which) % COLUMNS.len()];
    let cipher = FieldCipher::new(&[7u8; 32], &[&[9u8; 32]]);
    let stored = String::from_utf8_lossy(rest);
    let _ = key_id_of(&stored);
    let _ = cipher.decrypt(column, "row-1", &stored);
    // Round trip: whatever the input, as plaintext it seals and opens unchanged.
    let sealed = cipher.encrypt(column, "row-1", &stored);
    let opened = cipher
        .decrypt(column, "row-1", &sealed)
        .expect("own ciphertext opens");
    assert_eq!(opened.plaintext, stored);
    assert!(cipher.decrypt(column, "row-2", &sealed).is_err(), "row id is bound");
});
