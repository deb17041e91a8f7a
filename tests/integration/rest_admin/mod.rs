//! Invites (`POST /server/invites`) and the operators' `/admin/` endpoints: invite listing and
//! revocation, user listing, disable/enable, promote/demote, stats, and `/metrics`.
//!
//! Files: `invites` (minting, limits, listing, revocation), `users` (listing, disable/enable,
//! promote/demote, the last-admin rule), `stats` (stats and `/metrics`).

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{LoginRequest, RegisterRequest};

use crate::support::*;

mod invites;
mod stats;
mod users;

pub(super) async fn register_with(
    server: &TestServer,
    name: &str,
    invite: &str,
) -> Result<dialtone::protocol::rest::AuthResponse, dialtone::client::ClientError> {
    server
        .rest()
        .register(&RegisterRequest {
            username: name.to_owned(),
            password: password(name),
            public_key: DeviceKeypair::generate().public_key_b64(),
            invite_token: invite.to_owned(),
        })
        .await
}

pub(super) async fn login(
    server: &TestServer,
    user: &TestUser,
) -> Result<dialtone::protocol::rest::AuthResponse, dialtone::client::ClientError> {
    server
        .rest()
        .login(&LoginRequest {
            username: user.name.clone(),
            password: password(&user.name),
            public_key: user.keys.public_key_b64(),
            invite_token: None,
        })
        .await
}
