//! Invites: random tokens, stored only as hashes, with an expiry and a use count.

use super::{ServiceError, ServiceResult, Store, new_id};
use crate::crypto::token::{generate_token, token_hash};
use crate::db;
use crate::db::models::InviteRow;
use crate::db::types::Time;
use crate::protocol::rest::{CreateInviteRequest, InviteResponse};

/// Bounds on what an admin may ask for.
pub const MAX_EXPIRES_IN: u64 = 365 * 86_400;
pub const MAX_USES: u32 = 100_000;

/// An invite as listed for admins (never the token).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct InviteInfo {
    pub id: String,
    pub created_at: String,
    pub expires_at: String,
    pub max_uses: i32,
    pub uses: i32,
    pub revoked: bool,
    pub created_by: Option<String>,
}

/// Mint an invite. `created_by` is the admin user, or `None` for the admin token / CLI.
pub async fn mint(
    store: &Store,
    req: CreateInviteRequest,
    created_by: Option<String>,
) -> ServiceResult<InviteResponse> {
    let ttl = match req.expires_in_seconds {
        None => store.settings.invite_ttl.as_secs(),
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => s,
        Some(_) => {
            return Err(ServiceError::invalid(format!(
                "expires_in_seconds must be between 1 and {MAX_EXPIRES_IN}"
            )));
        }
    };
    let max_uses = match req.max_uses {
        None => 1,
        Some(n) if (1..=MAX_USES).contains(&n) => n,
        Some(_) => {
            return Err(ServiceError::invalid(format!(
                "max_uses must be between 1 and {MAX_USES}"
            )));
        }
    };
    let now = Time::now();
    let expires_at = Time(now.0 + chrono::Duration::seconds(ttl as i64));
    let token = generate_token();
    let row = InviteRow {
        id: new_id(),
        created_at: now,
        expires_at,
        consumed_at: None,
        consumed_by: None,
        token_hash: Some(token_hash(&token)),
        max_uses: max_uses as i32,
        uses: 0,
        revoked_at: None,
        created_by,
    };
    let mut conn = store.pool.get().await?;
    db::invites::insert(&mut conn.db(), &row).await?;
    tracing::info!(invite_id = %row.id, max_uses, ttl_secs = ttl, "invite minted");
    Ok(InviteResponse {
        token,
        expires_at: expires_at.wire(),
        id: row.id,
        max_uses,
    })
}

pub async fn list(store: &Store) -> ServiceResult<Vec<InviteInfo>> {
    let mut conn = store.pool.get().await?;
    Ok(db::invites::list(&mut conn.db())
        .await?
        .into_iter()
        .map(|r| InviteInfo {
            id: r.id,
            created_at: r.created_at.wire(),
            expires_at: r.expires_at.wire(),
            max_uses: r.max_uses,
            uses: r.uses,
            revoked: r.revoked_at.is_some(),
            created_by: r.created_by,
        })
        .collect())
}

/// When the invite with this token can still be used: its expiry. `None` when it is unknown,
/// used up, revoked or expired.
pub async fn usable_until(store: &Store, token: &str) -> ServiceResult<Option<String>> {
    let mut conn = store.pool.get().await?;
    let invite = db::invites::find_by_hash(&mut conn.db(), &token_hash(token.trim())).await?;
    Ok(invite
        .filter(|i| i.revoked_at.is_none() && i.uses < i.max_uses && i.expires_at > Time::now())
        .map(|i| i.expires_at.wire()))
}

pub async fn revoke(store: &Store, id: &str) -> ServiceResult<()> {
    let mut conn = store.pool.get().await?;
    if db::invites::revoke(&mut conn.db(), id.trim(), Time::now()).await? {
        tracing::info!(invite_id = id, "invite revoked");
        Ok(())
    } else {
        Err(ServiceError::NotFound("invite"))
    }
}
