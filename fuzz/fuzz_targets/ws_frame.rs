//! The server's inbound WebSocket path below the JSON: arbitrary bytes, cut into arbitrary
//! chunks, through `ws::frames::Inbound` (actix-http's codec plus fragment reassembly and the
//! 64 KiB limit), then every whole text message through the `ClientFrame` decoder.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use dialtone::protocol::ws::ClientFrame;
use dialtone::ws::frames::{InMessage, Inbound};
use futures_util::Stream;
use libfuzzer_sys::fuzz_target;

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so frames straddle reads as on a real socket.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let chunks: Vec<Result<Bytes, actix_web::error::PayloadError>> = rest
        .chunks(step)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut inbound = Inbound::new(futures_util::stream::iter(chunks), MAX_FRAME);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    // An iterator stream is always ready, so this loop ends with the input.
    loop {
        match Pin::new(&mut inbound).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(InMessage::Text(text)))) => {
                assert!(text.len() <= MAX_FRAME, "a message past the limit got through");
                let _ = serde_json::from_slice::<ClientFrame>(&text);
            }
            Poll::Ready(Some(Ok(_))) => {}
            // The session closes the socket on a protocol error: nothing follows.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => break,
            Poll::Pending => unreachable!("an iterator stream is never pending"),
        }
    }
});
