//! What the two edges share: the application state every HTTP handler and WebSocket upgrade can
//! reach, and how a request presents its bearer token. `http` routes to `ws`; both depend on this,
//! neither on the other's internals.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;

use crate::actors::admin::AdminHandle;
use crate::actors::db::{Authenticate, DbHandle};
use crate::actors::hashing::PasswordQueue;
use crate::actors::hub::{HubHandle, Notice};
use crate::config::{Secret, WsConfig};
use crate::error::AppError;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::service::ServiceError;
use crate::service::auth::AuthContext;

/// What every handler can reach.
pub struct AppState {
    pub db: DbHandle,
    pub passwords: PasswordQueue,
    pub hub: HubHandle,
    pub admin: AdminHandle,
    pub metrics: Arc<Metrics>,
    pub admin_token: Secret<String>,
    pub ws: Arc<WsConfig>,
    pub limits: Arc<Limits>,
    /// The cluster bus's connection state; `None` on a single node.
    pub cluster: Option<tokio::sync::watch::Receiver<crate::cluster::BusStatus>>,
}

impl AppState {
    /// Resolve a bearer token from client address `from`, under
    /// `DIALTONE_LIMIT_AUTH_FAILURES_IP`: an address that keeps presenting unknown tokens is
    /// refused (`429`) without a database lookup, and each refused token counts against it.
    pub async fn authenticate(
        &self,
        from: Option<IpAddr>,
        token: String,
    ) -> Result<AuthContext, AppError> {
        if let Some(ip) = from {
            self.limits.check_credentials(ip)?;
        }
        match self.db.call(Authenticate { token }).await {
            Ok(ctx) => Ok(ctx),
            Err(ServiceError::Unauthorized) => {
                if let Some(ip) = from {
                    self.limits.credentials_refused(ip);
                }
                Err(ServiceError::Unauthorized.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The notifier seam: REST changes that WebSocket clients must hear about.
    pub fn notify(&self, notice: Notice) {
        self.hub.tell(notice);
    }

    /// [`AppState::notify`] for a database operation to call once it committed
    /// ([`DbHandle::call_then`]): the notice then cannot be lost to a caller that gave up.
    pub fn notifier(&self) -> impl Fn(Notice) + Send + 'static {
        let hub = self.hub.clone();
        move |notice| hub.tell(notice)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
