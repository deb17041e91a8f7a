//! One WebSocket text frame's JSON, as the session decodes it: `ClientFrame` from arbitrary
//! bytes, then the field checks a `channel.message.send` or `subscribe`/`sync` goes through.
#![no_main]

use dialtone::protocol::ws::ClientFrame;
use dialtone::service::messages::check_channel_message;
use dialtone::service::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) else {
        return;
    };
    if let Some(channel_id) = &frame.channel_id {
        let _ = validate::id("channel_id", channel_id);
    }
    if let (Some(body), Some(name)) = (&frame.body, &frame.sender_name_enc) {
        let _ = check_channel_message(body, name, frame.client_message_id.as_deref());
    }
    if let Some(key) = &frame.public_key {
        let _ = validate::public_key(key);
    }
    // What the server echoes back must serialize again.
    let _ = serde_json::to_vec(&frame).expect("a decoded frame serializes");
});
