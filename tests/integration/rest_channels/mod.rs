//! `GET|POST|PATCH|DELETE /channels` (admin writes, any-user reads, cascading delete) and
//! `GET /channels/messages` (default and maximum page, `before`/`after` cursors, `has_more`).

mod crud;
mod history;

use std::collections::HashSet;

use dialtone::client::rest::Page;
use dialtone::crypto::e2e::generate_key;
use dialtone::protocol::rest::{ChannelKeysUpload, EnvelopeUpload, MessagesResponse};
use reqwest::Method;
use serde_json::json;

use crate::support::*;
