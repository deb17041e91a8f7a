//! REST request bodies: arbitrary bytes decoded as each request type (the extractor's
//! `serde_json::from_slice`, `Option<T>` for the optional body), then the service checks each
//! field meets first.
#![no_main]

use dialtone::protocol::rest::*;
use dialtone::service::validate;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

fn envelopes(list: &[EnvelopeUpload]) {
    for e in list {
        let _ = validate::id("device_id", &e.device_id);
        let _ = validate::id("sender_device_id", &e.sender_device_id);
        let _ = validate::public_key(&e.sender_public_key);
        let _ = validate::ciphertext("envelope", &e.envelope, 65_536);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => {
            if let Some(r) = decode::<RegisterRequest>(body) {
                let _ = validate::normalize_username(&r.username);
                let _ = validate::check_password(&r.password);
                let _ = validate::public_key(&r.public_key);
            }
        }
        1 => {
            if let Some(r) = decode::<LoginRequest>(body) {
                let _ = validate::normalize_username(&r.username);
                let _ = validate::check_password(&r.password);
                let _ = validate::public_key(&r.public_key);
            }
        }
        2 => {
            if let Some(r) = decode::<CreateUserRequest>(body) {
                let _ = validate::normalize_username(&r.username);
            }
        }
        3 => {
            if let Some(r) = decode::<ProfileRequest>(body) {
                let _ = validate::ciphertext("name_enc", &r.name_enc, 4096);
            }
        }
        4 => {
            if let Some(r) = decode::<CreateDeviceRequest>(body) {
                let _ = validate::id("user_id", &r.user_id);
                let _ = validate::public_key(&r.public_key);
            }
        }
        5 => {
            let _ = decode::<CreateChannelRequest>(body);
        }
        6 => {
            if let Some(r) = decode::<UpdateChannelRequest>(body) {
                let _ = validate::id("channel_id", &r.channel_id);
            }
        }
        7 => {
            if let Some(r) = decode::<ChannelKeysUpload>(body) {
                let _ = validate::id("channel_id", &r.channel_id);
                envelopes(&r.envelopes);
            }
        }
        8 => {
            if let Some(r) = decode::<DirectoryKeysUpload>(body) {
                envelopes(&r.envelopes);
            }
        }
        9 => {
            if let Some(r) = decode::<PresenceRequest>(body) {
                for id in &r.user_ids {
                    let _ = validate::id("user_ids", id);
                }
            }
        }
        10 => {
            let _ = decode::<Option<CreateInviteRequest>>(body);
        }
        _ => {
            // A response body as the client library reads it.
            let _ = decode::<AuthResponse>(body);
            let _ = decode::<MessagesResponse>(body);
            let _ = decode::<ErrorBody>(body);
        }
    }
});
