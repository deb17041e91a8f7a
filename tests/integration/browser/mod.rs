//! The web client in a real headless Chromium (issue 12): people in browsers and people on the
//! Rust client library chat with each other end to end; the page's keys stay in the browser; the
//! server's headers hold the page to its own origin.

mod chat;
mod headers;
mod hostile;
mod ops;
mod private;
mod reconnect;
mod refusals;
