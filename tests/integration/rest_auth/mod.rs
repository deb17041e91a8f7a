//! Registration, login, logout and bearer authentication (SPEC §3 auth, §4 "Registration and sessions").
//!
//! Files: `register` (fields, usernames, passwords, keys, invites, the first admin), `login`
//! (login, devices, logout, bearer tokens, expiry).

use dialtone::crypto::e2e::DeviceKeypair;
use dialtone::protocol::rest::{CreateInviteRequest, LoginRequest, RegisterRequest};

use crate::support::*;

mod login;
mod register;

pub(super) const AUTH_FIELDS: [&str; 8] = [
    "device_id",
    "device_public_key",
    "expires_at",
    "is_admin",
    "is_trusted",
    "token",
    "user_id",
    "username",
];

pub(super) fn register_req(
    username: &str,
    password: &str,
    public_key: &str,
    invite: &str,
) -> RegisterRequest {
    RegisterRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        public_key: public_key.to_owned(),
        invite_token: invite.to_owned(),
    }
}

pub(super) fn login_req(username: &str, password: &str, keys: &DeviceKeypair) -> LoginRequest {
    LoginRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        public_key: keys.public_key_b64(),
        invite_token: None,
    }
}

/// Register `name` with a fresh key and the standard test password through `invite`.
pub(super) async fn register(
    server: &TestServer,
    name: &str,
    invite: &str,
) -> Result<dialtone::protocol::rest::AuthResponse, dialtone::client::ClientError> {
    let keys = DeviceKeypair::generate();
    server
        .rest()
        .register(&register_req(
            name,
            &password(name),
            &keys.public_key_b64(),
            invite,
        ))
        .await
}

pub(super) async fn invite_with(server: &TestServer, req: CreateInviteRequest) -> String {
    server
        .admin()
        .mint_invite(&req)
        .await
        .expect("mint invite")
        .token
}
