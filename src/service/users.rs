//! Users (placeholders, admin operations), profiles and the admin flags of presence.

use std::collections::BTreeMap;

use super::auth::AuthContext;
use super::validate::{self, MAX_NAME_ENC, normalize_username};
use super::{ServiceError, ServiceResult, Store, new_id};
use crate::crypto::field::Column;
use crate::db;
use crate::db::models::{ProfileRow, UserRow};
use crate::db::types::Time;
use crate::protocol::rest::{Profile, User};

/// `POST /users` (admin): a password-less placeholder user.
pub async fn create_placeholder(store: &Store, username: &str) -> ServiceResult<User> {
    let username = normalize_username(username)?;
    let id = new_id();
    let row = UserRow {
        username_hash: store.hasher().username_hash(&username),
        password_hash: None,
        is_admin: false,
        is_trusted: false,
        created_at: Time::now(),
        username: Some(
            store
                .cipher()
                .encrypt(Column::UsersUsername, &id, &username),
        ),
        disabled_at: None,
        id,
    };
    let mut conn = store.pool.get().await?;
    match db::users::insert(&mut conn.db(), &row).await {
        Err(e) if e.is_unique_violation() => {
            return Err(ServiceError::Conflict("username already taken"));
        }
        other => other?,
    }
    tracing::info!(user_id = %row.id, "placeholder user created");
    Ok(wire(&row, username))
}

fn wire(row: &UserRow, username: String) -> User {
    User {
        id: row.id.clone(),
        username,
        is_admin: row.is_admin,
        is_trusted: row.is_trusted,
        created_at: row.created_at.wire(),
        disabled_at: row.disabled_at.map(|t| t.wire()),
        has_password: row.password_hash.is_some(),
    }
}

/// Whether anyone has registered yet (a zero-config server prints a first invite until then).
pub async fn any_exist(store: &Store) -> ServiceResult<bool> {
    let mut conn = store.pool.get().await?;
    Ok(db::users::any_exist(&mut conn.db()).await?)
}

/// Every user with the decrypted username (admin view). v1 users who have not logged in since the
/// upgrade have no stored username yet: they show as `""`.
pub async fn list(store: &Store) -> ServiceResult<Vec<User>> {
    let mut conn = store.pool.get().await?;
    let rows = db::users::list(&mut conn.db()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let username = match &row.username {
            Some(stored) => {
                store
                    .open(Column::UsersUsername, &row.id, stored)?
                    .plaintext
            }
            None => String::new(),
        };
        out.push(wire(&row, username));
    }
    Ok(out)
}

/// Disable or enable a user. Disabling revokes every session; returns their ids.
pub async fn set_disabled(
    store: &Store,
    user_id: &str,
    disabled: bool,
) -> ServiceResult<Vec<String>> {
    let mut conn = store.pool.get().await?;
    let at = disabled.then(Time::now);
    if !db::users::set_disabled(&mut conn.db(), user_id, at).await? {
        return Err(ServiceError::NotFound("user"));
    }
    let revoked = if disabled {
        db::sessions::delete_for_user(&mut conn.db(), user_id).await?
    } else {
        Vec::new()
    };
    tracing::info!(
        user_id,
        disabled,
        sessions_revoked = revoked.len(),
        "user status changed"
    );
    Ok(revoked)
}

/// Promote or demote an admin.
pub async fn set_admin(store: &Store, user_id: &str, is_admin: bool) -> ServiceResult<()> {
    let mut conn = store.pool.get().await?;
    if !db::users::set_admin(&mut conn.db(), user_id, is_admin).await? {
        return Err(ServiceError::NotFound("user"));
    }
    tracing::info!(user_id, is_admin, "admin flag changed");
    Ok(())
}

/// `POST /users/profiles`.
pub async fn upsert_profile(
    store: &Store,
    ctx: &AuthContext,
    name_enc: String,
) -> ServiceResult<()> {
    require_trusted(ctx)?;
    validate::ciphertext("name_enc", &name_enc, MAX_NAME_ENC)?;
    let mut conn = store.pool.get().await?;
    db::profiles::upsert(
        &mut conn.db(),
        &ProfileRow {
            user_id: ctx.user_id.clone(),
            name_enc,
            updated_at: Time::now(),
        },
    )
    .await?;
    Ok(())
}

/// `GET /users/profiles`.
pub async fn profiles(store: &Store, ctx: &AuthContext) -> ServiceResult<Vec<Profile>> {
    require_trusted(ctx)?;
    let mut conn = store.pool.get().await?;
    Ok(db::profiles::list(&mut conn.db())
        .await?
        .into_iter()
        .map(|p| Profile {
            user_id: p.user_id,
            name_enc: p.name_enc,
            updated_at: p.updated_at.wire(),
        })
        .collect())
}

fn require_trusted(ctx: &AuthContext) -> ServiceResult<()> {
    if ctx.is_trusted {
        Ok(())
    } else {
        Err(ServiceError::Forbidden("trusted users only"))
    }
}

/// Largest `user_ids` list of `POST /presence`.
pub const MAX_PRESENCE_IDS: usize = 1000;

/// The `admins` half of `POST /presence`: every asked id, true when it is an admin.
pub async fn admin_flags(
    store: &Store,
    user_ids: Vec<String>,
) -> ServiceResult<BTreeMap<String, bool>> {
    if user_ids.len() > MAX_PRESENCE_IDS {
        return Err(ServiceError::invalid(format!(
            "user_ids may hold at most {MAX_PRESENCE_IDS} ids"
        )));
    }
    for id in &user_ids {
        validate::storable("user_ids", id)?;
    }
    let mut conn = store.pool.get().await?;
    let found: BTreeMap<String, bool> = db::users::admin_flags(&mut conn.db(), &user_ids)
        .await?
        .into_iter()
        .collect();
    Ok(user_ids
        .into_iter()
        .map(|id| {
            let admin = found.get(&id).copied().unwrap_or(false);
            (id, admin)
        })
        .collect())
}
