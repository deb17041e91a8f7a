//! `Debug` for the wire types that carry secrets (passwords, session and invite tokens): the secret
//! is printed as `<redacted>`, so a `{:?}` in a log line, an error or a panic message never leaks it.
//!
//! Kept apart from the type definitions so the redaction rules are in one place; the unit tests
//! below check every secret-bearing field.

use std::fmt;

use super::rest::{AuthResponse, InviteResponse, LoginRequest, RegisterRequest};

/// What a redacted field prints.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The username is personal data the server only stores keyed-hashed; logs get no more.
        f.debug_struct("RegisterRequest")
            .field("username", &REDACTED)
            .field("password", &REDACTED)
            .field("public_key", &self.public_key)
            .field("invite_token", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &REDACTED)
            .field("password", &REDACTED)
            .field("public_key", &self.public_key)
            .field(
                "invite_token",
                &self.invite_token.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthResponse")
            .field("token", &REDACTED)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("expires_at", &self.expires_at)
            .field("username", &REDACTED)
            .field("device_public_key", &self.device_public_key)
            .field("is_admin", &self.is_admin)
            .field("is_trusted", &self.is_trusted)
            .finish()
    }
}

impl fmt::Debug for InviteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteResponse")
            .field("token", &REDACTED)
            .field("expires_at", &self.expires_at)
            .field("id", &self.id)
            .field("max_uses", &self.max_uses)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "hunter2-correct-horse";
    const TOKEN: &str = "tok_s3cr3t_bearer_value";
    const INVITE: &str = "inv_s3cr3t_invite_value";
    const NAME: &str = "alice-the-user";

    fn assert_hidden(debug: String, secrets: &[&str]) {
        for s in secrets {
            assert!(!debug.contains(s), "{debug} leaks {s}");
        }
        assert!(debug.contains(REDACTED), "{debug}");
    }

    #[test]
    fn register_request_hides_password_and_invite() {
        let req = RegisterRequest {
            username: NAME.into(),
            password: PASSWORD.into(),
            public_key: "pk".into(),
            invite_token: INVITE.into(),
        };
        assert_hidden(format!("{req:?}"), &[PASSWORD, INVITE, NAME]);
        assert_hidden(format!("{req:#?}"), &[PASSWORD, INVITE, NAME]);
    }

    #[test]
    fn login_request_hides_password_and_invite() {
        let req = LoginRequest {
            username: NAME.into(),
            password: PASSWORD.into(),
            public_key: "pk".into(),
            invite_token: Some(INVITE.into()),
        };
        assert_hidden(format!("{req:?}"), &[PASSWORD, INVITE, NAME]);
    }

    #[test]
    fn auth_response_hides_token() {
        let resp = AuthResponse {
            token: TOKEN.into(),
            user_id: "u1".into(),
            device_id: "d1".into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            username: NAME.into(),
            device_public_key: "pk".into(),
            is_admin: false,
            is_trusted: false,
        };
        assert_hidden(format!("{resp:?}"), &[TOKEN, NAME]);
    }

    #[test]
    fn invite_response_hides_token() {
        let resp = InviteResponse {
            token: INVITE.into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            id: "i1".into(),
            max_uses: 1,
        };
        assert_hidden(format!("{resp:?}"), &[INVITE]);
    }
}
