//! Users (placeholders, admin operations), profiles and the admin flags of presence.

use std::collections::BTreeMap;

use futures_util::FutureExt;

use super::auth::AuthContext;
use super::validate::{self, MAX_NAME_ENC};
use super::{ServiceError, ServiceResult, Store, new_id};
use crate::crypto::field::Column;
use crate::db::models::{ProfileRow, UserRow};
use crate::db::types::Time;
use crate::db::{self, locks};
use crate::protocol::rest::{Profile, ProfileRequest, ProfileSignature, User};

/// `POST /users` (admin): a password-less placeholder user.
pub async fn create_placeholder(store: &Store, username: &str) -> ServiceResult<User> {
    let username = validate::new_username(username)?;
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

/// Disable or enable a user. Disabling revokes every session; returns their ids. The last
/// enabled admin cannot be disabled (409).
pub async fn set_disabled(
    store: &Store,
    user_id: &str,
    disabled: bool,
) -> ServiceResult<Vec<String>> {
    let change = if disabled {
        AdminChange::Disable
    } else {
        AdminChange::Enable
    };
    let revoked = change_user(store, user_id, change).await?;
    tracing::info!(
        user_id,
        disabled,
        sessions_revoked = revoked.len(),
        "user status changed"
    );
    Ok(revoked)
}

/// Promote or demote an admin. The last enabled admin cannot be demoted (409).
pub async fn set_admin(store: &Store, user_id: &str, is_admin: bool) -> ServiceResult<()> {
    let change = if is_admin {
        AdminChange::Promote
    } else {
        AdminChange::Demote
    };
    change_user(store, user_id, change).await?;
    tracing::info!(user_id, is_admin, "admin flag changed");
    Ok(())
}

/// What an admin does to a user's flags.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AdminChange {
    Disable,
    Enable,
    Promote,
    Demote,
}

const LAST_ADMIN: &str =
    "that would leave the server without an enabled admin; promote another admin first";

/// Apply `change` in one transaction under the admins lock (SQLite: `BEGIN IMMEDIATE` serializes
/// writers already), so the check that another enabled admin remains cannot race a concurrent
/// demotion. Returns the revoked session ids (disabling only).
async fn change_user(
    store: &Store,
    user_id: &str,
    change: AdminChange,
) -> ServiceResult<Vec<String>> {
    let id = user_id.to_owned();
    let mut conn = store.pool.get().await?;
    let outcome: Result<Vec<String>, ServiceError> = conn
        .transaction(move |mut db| {
            async move {
                db.lock_exclusive(locks::ADMINS).await?;
                let Some(user) = db::users::find(&mut db, &id).await? else {
                    return Ok(Err(ServiceError::NotFound("user")));
                };
                let removes_an_admin = user.is_admin
                    && user.disabled_at.is_none()
                    && matches!(change, AdminChange::Disable | AdminChange::Demote);
                if removes_an_admin && db::users::other_active_admins(&mut db, &id).await? == 0 {
                    return Ok(Err(ServiceError::Conflict(LAST_ADMIN)));
                }
                match change {
                    AdminChange::Disable => {
                        db::users::set_disabled(&mut db, &id, Some(Time::now())).await?;
                        // In the same transaction: a disabled user keeps no session.
                        Ok(Ok(db::sessions::delete_for_user(&mut db, &id).await?))
                    }
                    AdminChange::Enable => {
                        db::users::set_disabled(&mut db, &id, None).await?;
                        Ok(Ok(Vec::new()))
                    }
                    AdminChange::Promote | AdminChange::Demote => {
                        db::users::set_admin(&mut db, &id, change == AdminChange::Promote).await?;
                        Ok(Ok(Vec::new()))
                    }
                }
            }
            .boxed()
        })
        .await?;
    outcome
}

/// `POST /users/profiles`.
pub async fn upsert_profile(
    store: &Store,
    ctx: &AuthContext,
    req: ProfileRequest,
) -> ServiceResult<()> {
    require_trusted(ctx)?;
    validate::ciphertext("name_enc", &req.name_enc, MAX_NAME_ENC)?;
    if let Some(sig) = &req.signature {
        // Only the caller's device may sign what the caller posts; the signature itself is the
        // readers' to check, against the user's signed device list (the server cannot vouch).
        if sig.device_id != ctx.device_id {
            return Err(ServiceError::invalid(
                "signature.device_id must be the calling device",
            ));
        }
        validate::signature("signature.signature", &sig.signature)?;
    }
    let mut conn = store.pool.get().await?;
    let (signer_device_id, signature) = req.signature.map(|s| (s.device_id, s.signature)).unzip();
    db::profiles::upsert(
        &mut conn.db(),
        &ProfileRow {
            user_id: ctx.user_id.clone(),
            name_enc: req.name_enc,
            updated_at: Time::now(),
            signer_device_id,
            signature,
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
            signature: p
                .signer_device_id
                .zip(p.signature)
                .map(|(device_id, signature)| ProfileSignature {
                    device_id,
                    signature,
                }),
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
