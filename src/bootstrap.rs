//! The zero-config welcome: until someone registers, each start of a server with generated secrets
//! shows one invite — the same one on every start, kept (mode 0600) in the data directory and
//! minted anew only once it can no longer be used — and shows the admin token on the first start
//! only (after that it is in `secrets.env`, not on every terminal and log that sees a restart).

use std::path::{Path, PathBuf};

use crate::actors::db::{AnyUsers, InviteUsableUntil};
use crate::config::write_private_file;
use crate::protocol::rest::CreateInviteRequest;
use crate::server::Storage;
use crate::service::ServiceError;

/// Where the first invite's token is kept until the first registration.
pub const FIRST_INVITE_FILE: &str = "first-invite";

/// What a start prints for the operator.
pub struct Welcome {
    pub invite_token: String,
    pub expires_at: String,
    /// Whether this is the invite shown on an earlier start.
    pub reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The invite to show, or `None` once a user exists (then the kept token is deleted: it is a
/// credential nobody needs any more).
pub async fn welcome(
    storage: &Storage,
    data_dir: &Path,
) -> Result<Option<Welcome>, BootstrapError> {
    let path = data_dir.join(FIRST_INVITE_FILE);
    if storage.db.call(AnyUsers {}).await? {
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!("first invite file removed: a user has registered"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BootstrapError::File { path, source }),
        }
        return Ok(None);
    }
    if let Ok(kept) = std::fs::read_to_string(&path) {
        let token = kept.trim().to_owned();
        let usable = storage
            .db
            .call(InviteUsableUntil {
                token: token.clone(),
            })
            .await?;
        if let Some(expires_at) = usable {
            return Ok(Some(Welcome {
                invite_token: token,
                expires_at,
                reused: true,
            }));
        }
    }
    let invite = storage.mint_invite(CreateInviteRequest::default()).await?;
    let file = |source| BootstrapError::File {
        path: path.clone(),
        source,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file(e)),
    }
    write_private_file(&path, invite.token.as_bytes()).map_err(file)?;
    Ok(Some(Welcome {
        invite_token: invite.token,
        expires_at: invite.expires_at,
        reused: false,
    }))
}
