//! Who is asking: the identity every authenticated service call carries. Its own module so that
//! `auth` (which makes it) and the modules that take it (`devices`, `keys`, …) do not import
//! each other.

use crate::db::types::Time;

/// An authenticated request's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub session_id: String,
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
    pub is_trusted: bool,
    pub expires_at: Time,
}
