//! Registration, login, sessions.

use std::collections::HashSet;

use chrono::Utc;
use futures_util::FutureExt;

use super::devices::Claimed;
use super::validate::{check_password, new_username, normalize_username, public_key};
use super::{Caps, ServiceError, ServiceResult, Store, new_id};
use crate::crypto::field::Column;
use crate::crypto::token::{generate_token, token_hash};
use crate::db::models::{DeviceRow, SessionRow, UserRow};
use crate::db::types::Time;
use crate::db::{self, locks};
use crate::limits::label;
use crate::protocol::REDACTED;
use crate::protocol::rest::{AuthResponse, LoginRequest, RegisterRequest};

pub use super::context::AuthContext;

/// Result of a login or registration.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub response: AuthResponse,
    /// Set when this created a device (announced as `device.joined`).
    pub new_device: bool,
}

/// The cheap half of `POST /auth/register`, run before the password is hashed: the fields are
/// valid, the invite can be used and the username is free. [`register`] checks all of it again
/// in its transaction; this only spares the hashing work for a request that would be refused.
pub async fn check_registration(store: &Store, req: &RegisterRequest) -> ServiceResult<()> {
    let (username, _) = check_register_fields(req)?;
    let mut conn = store.pool.get().await?;
    let invite = db::invites::find_by_hash(&mut conn.db(), &token_hash(req.invite_token.trim()))
        .await?
        .ok_or(Refusal::InviteUnknown)?;
    invite_usable(&invite, Time::now())?;
    let hash = store.hasher().username_hash(&username);
    if db::users::find_by_hash(&mut conn.db(), &hash)
        .await?
        .is_some()
    {
        return Err(Refusal::UsernameTaken.into());
    }
    Ok(())
}

/// Normalized username and public key of a registration, or what is wrong with it.
fn check_register_fields(req: &RegisterRequest) -> ServiceResult<(String, String)> {
    let username = new_username(&req.username)?;
    check_password(&req.password)?;
    let public_key = public_key(&req.public_key)?;
    if req.invite_token.trim().is_empty() {
        return Err(ServiceError::invalid("invite_token is required"));
    }
    Ok((username, public_key))
}

fn invite_usable(invite: &db::models::InviteRow, now: Time) -> Result<(), Refusal> {
    if invite.revoked_at.is_some() {
        return Err(Refusal::InviteRevoked);
    }
    if invite.uses >= invite.max_uses {
        return Err(Refusal::InviteUsed);
    }
    if invite.expires_at <= now {
        return Err(Refusal::InviteExpired);
    }
    Ok(())
}

/// `POST /auth/register`, given the password's hash (computed off the database, see
/// `actors::hashing`): one transaction; a duplicate username leaves the invite unconsumed.
pub async fn register(
    store: &Store,
    req: RegisterRequest,
    password_hash: String,
) -> ServiceResult<SignedIn> {
    let (username, public_key) = check_register_fields(&req)?;

    let now = Time::now();
    let user_id = new_id();
    let device_id = new_id();
    let token = generate_token();
    let expires_at = expiry(now, store.settings.session_ttl);
    let user = UserRow {
        id: user_id.clone(),
        username_hash: store.hasher().username_hash(&username),
        password_hash: Some(password_hash),
        is_admin: false,
        is_trusted: true,
        created_at: now,
        username: Some(
            store
                .cipher()
                .encrypt(Column::UsersUsername, &user_id, &username),
        ),
        disabled_at: None,
    };
    let device = DeviceRow {
        id: device_id.clone(),
        user_id: user_id.clone(),
        public_key: store
            .cipher()
            .encrypt(Column::DevicesPublicKey, &device_id, &public_key),
        created_at: now,
        last_seen_at: Some(now),
        public_key_hash: Some(store.hasher().device_key_hash(&public_key)),
    };
    let session = SessionRow {
        id: new_id(),
        token_hash: token_hash(&token),
        user_id: user_id.clone(),
        device_id: device_id.clone(),
        created_at: now,
        expires_at,
    };
    let invite_hash = token_hash(req.invite_token.trim());

    let mut conn = store.pool.get().await?;
    let outcome: Result<bool, Refusal> = conn
        .transaction(move |mut db| {
            async move {
                // Serializes registrations: invite uses are counted exactly and only the very first
                // user becomes admin, however many register at once.
                db.lock_exclusive(locks::REGISTRATION).await?;
                let Some(invite) = db::invites::find_by_hash(&mut db, &invite_hash).await? else {
                    return Ok(Err(Refusal::InviteUnknown));
                };
                if let Err(refusal) = invite_usable(&invite, now) {
                    return Ok(Err(refusal));
                }
                if db::users::find_by_hash(&mut db, &user.username_hash)
                    .await?
                    .is_some()
                {
                    return Ok(Err(Refusal::UsernameTaken));
                }
                let is_admin = !db::users::any_exist(&mut db).await?;
                let user = UserRow { is_admin, ..user };
                db::users::insert(&mut db, &user).await?;
                db::devices::insert(&mut db, &device).await?;
                db::invites::record_use(&mut db, &invite, &user.id, now).await?;
                db::sessions::insert(&mut db, &session).await?;
                Ok(Ok(is_admin))
            }
            .boxed()
        })
        .await?;
    let is_admin = outcome.map_err(ServiceError::from)?;
    tracing::info!(user_id = %user_id, device_id = %device_id, is_admin, "user registered");
    Ok(SignedIn {
        response: AuthResponse {
            token,
            user_id,
            device_id,
            expires_at: expires_at.wire(),
            username,
            device_public_key: public_key,
            is_admin,
            is_trusted: true,
        },
        new_device: true,
    })
}

/// Why a registration transaction declined (it commits nothing).
enum Refusal {
    InviteUnknown,
    InviteRevoked,
    InviteUsed,
    InviteExpired,
    UsernameTaken,
}

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::InviteUnknown => ServiceError::NotFound("invite"),
            Refusal::InviteRevoked => ServiceError::InviteRevoked,
            Refusal::InviteUsed => ServiceError::InviteUsed,
            Refusal::InviteExpired => ServiceError::InviteExpired,
            Refusal::UsernameTaken => ServiceError::Conflict("username already taken"),
        }
    }
}

/// What a login needs from the database before its password check (see `actors::auth`).
#[derive(Clone)]
pub struct LoginCandidate {
    /// `(normalized username, user id)`, when such a user exists.
    pub user: Option<(String, String)>,
    /// Its stored password hash (none for a user created by an admin who never registered).
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for LoginCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password hash is offline-crackable, and the username is personal data.
        f.debug_struct("LoginCandidate")
            .field("user_id", &self.user.as_ref().map(|(_, id)| id))
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

/// The first half of `POST /auth/login`: find the user. An unknown or malformed username is not an
/// error here: it gets a candidate without a hash, and the password check runs on the dummy hash.
pub async fn login_candidate(store: &Store, req: &LoginRequest) -> ServiceResult<LoginCandidate> {
    public_key(&req.public_key)?;
    let Ok(username) = normalize_username(&req.username) else {
        return Ok(LoginCandidate {
            user: None,
            password_hash: None,
        });
    };
    let mut conn = store.pool.get().await?;
    let hash = store.hasher().username_hash(&username);
    let user = db::users::find_by_hash(&mut conn.db(), &hash).await?;
    Ok(LoginCandidate {
        password_hash: user.as_ref().and_then(|u| u.password_hash.clone()),
        user: user.map(|u| (username, u.id)),
    })
}

/// A login whose password checked out.
#[derive(Debug, Clone)]
pub struct LoginGrant {
    pub user_id: String,
    pub username: String,
    pub public_key: String,
    /// A fresh argon2id hash replacing a dialtone v1 bcrypt one.
    pub new_hash: Option<String>,
}

/// The second half of `POST /auth/login`, after the password check: the device and the session.
/// A user disabled (or deleted) meanwhile gets the same 401 as a wrong password.
pub async fn complete_login(store: &Store, grant: LoginGrant) -> ServiceResult<SignedIn> {
    let public_key = public_key(&grant.public_key)?;
    let username = grant.username;
    let mut conn = store.pool.get().await?;
    let user = db::users::find(&mut conn.db(), &grant.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or(ServiceError::Unauthorized)?;
    if let Some(new_hash) = grant.new_hash {
        db::users::set_password_hash(&mut conn.db(), &user.id, &new_hash).await?;
        tracing::info!(user_id = %user.id, "password hash upgraded to argon2id");
    }
    // dialtone v1 kept no username column: fill it (encrypted) now, or move it to the current key.
    let username_current = match &user.username {
        Some(stored) => {
            !store
                .open(Column::UsersUsername, &user.id, stored)?
                .needs_rewrite
        }
        None => false,
    };
    if !username_current {
        let enc = store
            .cipher()
            .encrypt(Column::UsersUsername, &user.id, &username);
        db::users::set_username(&mut conn.db(), &user.id, &enc).await?;
    }

    let now = Time::now();
    // The lookup that counts is the one under the lock below, by the current key's hash.
    super::devices::move_to_current_hash(store, &mut conn.db(), &user.id, &public_key).await?;
    let candidate = super::devices::new_device_row(store, &user.id, &public_key, now);
    let token = generate_token();
    let expires_at = expiry(now, store.settings.session_ttl);
    let session_token_hash = token_hash(&token);
    let caps = store.settings.caps;
    let user_id = user.id.clone();
    // One transaction under the user's row lock, which device additions and deletions take too:
    // the caps cannot be overrun by concurrent logins, two logins with one new key make one
    // device, a device deleted meanwhile is not signed into, and a disable committed since the
    // lookup above refuses this login.
    let (user, device_id, new_device) = conn
        .transaction(move |mut db| {
            async move {
                let Some(user) = db::users::lock(&mut db, &user_id)
                    .await?
                    .filter(|u| u.disabled_at.is_none())
                else {
                    return Ok(Err(ServiceError::Unauthorized));
                };
                let live = db::sessions::count_live_for_user(&mut db, &user.id, now).await?;
                if let Err(refused) =
                    Caps::check(caps.sessions_per_user, live, label::SESSIONS_PER_USER)
                {
                    return Ok(Err(refused));
                }
                let claimed = match super::devices::claim(
                    &mut db,
                    &candidate,
                    caps.devices_per_user,
                )
                .await?
                {
                    Ok(claimed) => claimed,
                    Err(refused) => return Ok(Err(refused)),
                };
                let (device_id, new_device) = match claimed {
                    Claimed::Existing(device) => {
                        db::devices::touch(&mut db, &device.id, now).await?;
                        (device.id, false)
                    }
                    Claimed::Added => (candidate.id, true),
                };
                let session = SessionRow {
                    id: new_id(),
                    token_hash: session_token_hash,
                    user_id: user.id.clone(),
                    device_id: device_id.clone(),
                    created_at: now,
                    expires_at,
                };
                db::sessions::insert(&mut db, &session).await?;
                Ok(Ok((user, device_id, new_device)))
            }
            .boxed()
        })
        .await??;
    tracing::info!(user_id = %user.id, device_id = %device_id, new_device, "user logged in");
    Ok(SignedIn {
        response: AuthResponse {
            token,
            user_id: user.id,
            device_id,
            expires_at: expires_at.wire(),
            username,
            device_public_key: public_key,
            is_admin: user.is_admin,
            is_trusted: user.is_trusted,
        },
        new_device,
    })
}

/// Resolve a bearer token to its session.
pub async fn authenticate(store: &Store, token: &str) -> ServiceResult<AuthContext> {
    let mut conn = store.pool.get().await?;
    let Some((session, user)) =
        db::sessions::find_with_user(&mut conn.db(), &token_hash(token)).await?
    else {
        return Err(ServiceError::Unauthorized);
    };
    if session.expires_at <= Time::now() {
        return Err(ServiceError::TokenExpired);
    }
    if user.disabled_at.is_some() {
        return Err(ServiceError::Unauthorized);
    }
    Ok(AuthContext {
        session_id: session.id,
        user_id: user.id,
        device_id: session.device_id,
        is_admin: user.is_admin,
        is_trusted: user.is_trusted,
        expires_at: session.expires_at,
    })
}

/// What the cluster's session re-check found (see [`check_sessions`]).
#[derive(Debug, Default)]
pub struct SessionCheck {
    /// Those of the asked session ids still valid (not revoked, user not disabled).
    pub live: HashSet<String>,
    /// Those of the asked user ids whose account is disabled: their sockets close with
    /// "account disabled" rather than "session revoked" (disabling deletes the sessions too).
    pub disabled_users: HashSet<String>,
}

/// Re-check open sockets against the database, in chunks the database takes as one parameter
/// list.
pub async fn check_sessions(
    store: &Store,
    session_ids: Vec<String>,
    user_ids: Vec<String>,
) -> ServiceResult<SessionCheck> {
    let mut conn = store.pool.get().await?;
    let mut check = SessionCheck::default();
    for chunk in session_ids.chunks(500) {
        check
            .live
            .extend(db::sessions::live_among(&mut conn.db(), chunk).await?);
    }
    for chunk in user_ids.chunks(500) {
        check
            .disabled_users
            .extend(db::users::disabled_among(&mut conn.db(), chunk).await?);
    }
    Ok(check)
}

/// `POST /auth/logout`: revoke one session.
pub async fn logout(store: &Store, session_id: &str) -> ServiceResult<()> {
    let mut conn = store.pool.get().await?;
    db::sessions::delete(&mut conn.db(), session_id).await?;
    Ok(())
}

/// Delete expired sessions; returns how many.
pub async fn purge_expired_sessions(store: &Store) -> ServiceResult<usize> {
    let mut conn = store.pool.get().await?;
    Ok(db::sessions::delete_expired(&mut conn.db(), Time::now()).await?)
}

fn expiry(now: Time, ttl: std::time::Duration) -> Time {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    Time(now.0.checked_add_signed(ttl).unwrap_or(Utc::now()))
}

#[cfg(test)]
mod redaction_tests {
    use super::LoginCandidate;

    #[test]
    fn login_candidate_debug_hides_hash_and_name() {
        let c = LoginCandidate {
            user: Some(("alice-name".into(), "u1".into())),
            password_hash: Some("$argon2id$v=19$secret-hash".into()),
        };
        let out = format!("{c:?}");
        assert!(
            !out.contains("secret-hash") && !out.contains("alice-name"),
            "{out}"
        );
        assert!(out.contains("<redacted>"), "{out}");
    }
}
