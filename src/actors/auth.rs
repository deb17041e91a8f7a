//! Sign-in flows that span the database actor and the password queue: the database work and the
//! password work never overlap, so a flood of logins holds neither a database slot nor a pool
//! connection while argon2 runs (see [`super::hashing`]).

use super::db::{CheckRegistration, CompleteLogin, DbHandle, FindLoginCandidate, Register};
use super::hashing::PasswordQueue;
use crate::crypto::password::Verdict;
use crate::metrics::Metrics;
use crate::protocol::rest::{LoginRequest, RegisterRequest};
use crate::service::auth::{LoginGrant, SignedIn};
use crate::service::{ServiceError, ServiceResult};

/// `POST /auth/register`: the cheap checks (fields, invite, username) first, so a junk invite costs
/// no hashing; the transaction checks them again.
pub async fn register(
    db: &DbHandle,
    passwords: &PasswordQueue,
    req: RegisterRequest,
) -> ServiceResult<SignedIn> {
    db.call(CheckRegistration { req: req.clone() }).await?;
    let password_hash = passwords.hash(req.password.clone()).await?;
    db.call(Register { req, password_hash }).await
}

/// `POST /auth/login`: exactly one password verification whatever the username (the dummy hash
/// stands in for an unknown one), and one 401 for every refusal.
pub async fn login(
    db: &DbHandle,
    passwords: &PasswordQueue,
    metrics: &Metrics,
    req: LoginRequest,
) -> ServiceResult<SignedIn> {
    let candidate = db.call(FindLoginCandidate { req: req.clone() }).await?;
    let verdict = passwords
        .check(req.password.clone(), candidate.password_hash)
        .await?;
    let (Some((username, user_id)), Verdict::Valid { needs_rehash }) = (candidate.user, verdict)
    else {
        return Err(refused(metrics));
    };
    let new_hash = match needs_rehash {
        true => Some(passwords.hash(req.password).await?),
        false => None,
    };
    let grant = LoginGrant {
        user_id,
        username,
        public_key: req.public_key,
        new_hash,
    };
    match db.call(CompleteLogin { grant }).await {
        Err(ServiceError::Unauthorized) => Err(refused(metrics)),
        other => other,
    }
}

/// Count and log a refused login; the log names no user (not even by id: a wrong username has none).
fn refused(metrics: &Metrics) -> ServiceError {
    metrics.login_failures.inc();
    tracing::info!("login refused");
    ServiceError::Unauthorized
}
