//! Typed REST client for every endpoint of SPEC §4.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::tls::{Trust, client_config};
use super::{ClientError, ClientResult};
use crate::protocol::REDACTED;
use crate::protocol::rest::*;

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// A session token (`Authorization: Bearer`).
    Bearer(String),
    /// The server's admin token (`X-Admin-Token`).
    AdminToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Bearer and admin tokens are secrets: only which kind is held is printed.
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Credentials::AdminToken(_) => f.debug_tuple("AdminToken").field(&REDACTED).finish(),
        }
    }
}

/// A REST client bound to one server and one set of credentials. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
}

/// Paging of `GET /channels/messages`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: Option<u32>,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl RestClient {
    /// `base_url` is `https://host:port` (or `http://` for a loopback plain-HTTP server).
    pub fn new(base_url: &str, trust: &Trust) -> ClientResult<Self> {
        Self::from_address(base_url, trust, None)
    }

    /// Like [`RestClient::new`], with connections opened from `local` (a load generator spreading
    /// its clients over source addresses).
    pub fn from_address(
        base_url: &str,
        trust: &Trust,
        local: Option<std::net::IpAddr>,
    ) -> ClientResult<Self> {
        let http = reqwest::Client::builder()
            .local_address(local)
            .use_preconfigured_tls(client_config(trust)?)
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            credentials: Credentials::None,
        })
    }

    /// The same client with other credentials (shares the connection pool).
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        Self {
            credentials,
            ..self.clone()
        }
    }

    /// The same client authenticated by a session token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        self.with_credentials(Credentials::Bearer(token.into()))
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Bearer(t) => Some(t),
            _ => None,
        }
    }

    /// A request to `path` with this client's credentials (for endpoints or shapes not wrapped).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.credentials {
            Credentials::None => req,
            Credentials::Bearer(t) => req.bearer_auth(t),
            Credentials::AdminToken(t) => req.header("X-Admin-Token", t),
        }
    }

    async fn send(req: RequestBuilder) -> ClientResult<Response> {
        let res = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => super::api_error(status, body),
            Err(_) => ClientError::Api {
                status,
                code: String::new(),
                message: text,
            },
        })
    }

    async fn json<T: DeserializeOwned>(req: RequestBuilder) -> ClientResult<T> {
        let res = Self::send(req).await?;
        res.json::<T>()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub(super) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> ClientResult<T> {
        Self::json(self.request(method, path).json(body)).await
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        Self::json(self.request(Method::GET, path)).await
    }

    pub(super) async fn no_content(&self, method: Method, path: &str) -> ClientResult<()> {
        Self::send(self.request(method, path)).await.map(drop)
    }

    // ---- health ----

    pub async fn health(&self) -> ClientResult<()> {
        self.no_content(Method::GET, "/health").await
    }

    pub async fn ready(&self) -> ClientResult<()> {
        self.no_content(Method::GET, "/ready").await
    }

    // ---- registration and sessions ----

    pub async fn register(&self, req: &RegisterRequest) -> ClientResult<AuthResponse> {
        self.call(Method::POST, "/auth/register", req).await
    }

    pub async fn login(&self, req: &LoginRequest) -> ClientResult<AuthResponse> {
        self.call(Method::POST, "/auth/login", req).await
    }

    pub async fn logout(&self) -> ClientResult<()> {
        self.no_content(Method::POST, "/auth/logout").await
    }

    // ---- users and profiles ----

    pub async fn create_user(&self, username: &str) -> ClientResult<User> {
        self.call(
            Method::POST,
            "/users",
            &CreateUserRequest {
                username: username.to_owned(),
            },
        )
        .await
    }

    pub async fn profiles(&self) -> ClientResult<Vec<Profile>> {
        Ok(self
            .get::<ProfilesResponse>("/users/profiles")
            .await?
            .profiles)
    }

    pub async fn set_profile(
        &self,
        name_enc: &str,
        signature: Option<ProfileSignature>,
    ) -> ClientResult<()> {
        let _: StatusOk = self
            .call(
                Method::POST,
                "/users/profiles",
                &ProfileRequest {
                    name_enc: name_enc.to_owned(),
                    signature,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn presence(&self, user_ids: &[String]) -> ClientResult<PresenceResponse> {
        self.call(
            Method::POST,
            "/presence",
            &PresenceRequest {
                user_ids: user_ids.to_vec(),
            },
        )
        .await
    }

    // ---- devices ----

    pub async fn add_device(&self, user_id: &str, public_key: &str) -> ClientResult<Device> {
        self.call(
            Method::POST,
            "/devices",
            &CreateDeviceRequest {
                user_id: user_id.to_owned(),
                public_key: public_key.to_owned(),
            },
        )
        .await
    }

    pub async fn devices(&self) -> ClientResult<Vec<Device>> {
        Ok(self.get::<DevicesResponse>("/devices").await?.devices)
    }

    /// The keys of `user_id`'s devices (only your own are allowed).
    pub async fn device_keys(&self, user_id: &str) -> ClientResult<DeviceKeysResponse> {
        self.get(&format!("/devices/keys?user_id={}", urlencode(user_id)))
            .await
    }

    /// Publish the next version of this user's signed device list (trust v2).
    pub async fn publish_device_list(
        &self,
        list: &crate::protocol::trust::SignedDeviceList,
    ) -> ClientResult<crate::protocol::trust::DeviceListAccepted> {
        self.call(Method::POST, "/devices/list", list).await
    }

    /// A user's newest signed device list, or every list after `after_version` (trust v2).
    pub async fn device_lists(
        &self,
        user_id: &str,
        after_version: Option<u64>,
    ) -> ClientResult<crate::protocol::trust::DeviceListsResponse> {
        let mut path = format!("/devices/list?user_id={}", urlencode(user_id));
        if let Some(v) = after_version {
            path.push_str(&format!("&after_version={v}"));
        }
        self.get(&path).await
    }

    /// Every device's key (`?all=1`).
    pub async fn all_device_keys(&self) -> ClientResult<Vec<DeviceKey>> {
        Ok(self
            .get::<DeviceKeysResponse>("/devices/keys?all=1")
            .await?
            .keys)
    }

    pub async fn delete_device(&self, device_id: &str) -> ClientResult<()> {
        self.no_content(
            Method::DELETE,
            &format!("/devices/{}", urlencode(device_id)),
        )
        .await
    }

    // ---- channels ----

    pub async fn channels(&self) -> ClientResult<Vec<Channel>> {
        Ok(self.get::<ChannelsResponse>("/channels").await?.channels)
    }

    pub async fn create_channel(&self, name_enc: &str) -> ClientResult<Channel> {
        self.create_channel_of(name_enc, false).await
    }

    /// `private`: a members-only channel (trust v2), the caller its first admin.
    pub async fn create_channel_of(&self, name_enc: &str, private: bool) -> ClientResult<Channel> {
        let res: ChannelResponse = self
            .call(
                Method::POST,
                "/channels",
                &CreateChannelRequest {
                    name_enc: name_enc.to_owned(),
                    private,
                },
            )
            .await?;
        Ok(res.channel)
    }

    pub async fn rename_channel(&self, channel_id: &str, name_enc: &str) -> ClientResult<Channel> {
        let res: ChannelResponse = self
            .call(
                Method::PATCH,
                "/channels",
                &UpdateChannelRequest {
                    channel_id: channel_id.to_owned(),
                    name_enc: name_enc.to_owned(),
                },
            )
            .await?;
        Ok(res.channel)
    }

    pub async fn delete_channel(&self, channel_id: &str) -> ClientResult<()> {
        self.no_content(
            Method::DELETE,
            &format!("/channels?channel_id={}", urlencode(channel_id)),
        )
        .await
    }

    pub async fn messages(&self, channel_id: &str, page: &Page) -> ClientResult<MessagesResponse> {
        let mut path = format!("/channels/messages?channel_id={}", urlencode(channel_id));
        if let Some(l) = page.limit {
            path.push_str(&format!("&limit={l}"));
        }
        if let Some(b) = &page.before {
            path.push_str(&format!("&before={}", urlencode(b)));
        }
        if let Some(a) = &page.after {
            path.push_str(&format!("&after={}", urlencode(a)));
        }
        self.get(&path).await
    }

    // ---- key envelopes ----

    /// The channel key envelope for this session's device; `None` if there is none yet.
    pub async fn channel_key(&self, channel_id: &str) -> ClientResult<Option<ChannelKeyEnvelope>> {
        match self
            .get(&format!(
                "/channels/keys?channel_id={}",
                urlencode(channel_id)
            ))
            .await
        {
            Ok(e) => Ok(Some(e)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A refusal is [`ClientError::EnvelopeRefused`], naming the devices (nothing was stored).
    pub async fn upload_channel_keys(&self, upload: &ChannelKeysUpload) -> ClientResult<()> {
        let _: StatusOk = self.call(Method::POST, "/channels/keys", upload).await?;
        Ok(())
    }

    /// Delete the channel envelope addressed to this session's device.
    pub async fn delete_channel_key(&self, channel_id: &str) -> ClientResult<()> {
        self.no_content(
            Method::DELETE,
            &format!("/channels/keys?channel_id={}", urlencode(channel_id)),
        )
        .await
    }

    /// Delete the directory envelope addressed to this session's device.
    pub async fn delete_directory_key(&self) -> ClientResult<()> {
        self.no_content(Method::DELETE, "/directory/keys").await
    }

    /// The directory key envelope for this session's device; `None` if there is none yet.
    pub async fn directory_key(&self) -> ClientResult<Option<DirectoryKeyEnvelope>> {
        let res = Self::send(self.request(Method::GET, "/directory/keys")).await?;
        if res.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        res.json()
            .await
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A refusal is [`ClientError::EnvelopeRefused`], naming the devices (nothing was stored).
    pub async fn upload_directory_keys(&self, upload: &DirectoryKeysUpload) -> ClientResult<()> {
        let _: StatusOk = self.call(Method::POST, "/directory/keys", upload).await?;
        Ok(())
    }

    // ---- invites and admin ----

    pub async fn mint_invite(&self, req: &CreateInviteRequest) -> ClientResult<InviteResponse> {
        self.call(Method::POST, "/server/invites", req).await
    }

    pub async fn admin_users(&self) -> ClientResult<Vec<User>> {
        #[derive(serde::Deserialize)]
        struct Users {
            users: Vec<User>,
        }
        Ok(self.get::<Users>("/admin/users").await?.users)
    }

    /// `action`: `disable`, `enable`, `promote` or `demote`.
    pub async fn admin_user_action(&self, user_id: &str, action: &str) -> ClientResult<()> {
        self.no_content(
            Method::POST,
            &format!("/admin/users/{}/{}", urlencode(user_id), urlencode(action)),
        )
        .await
    }

    pub async fn admin_stats(&self) -> ClientResult<serde_json::Value> {
        self.get("/admin/stats").await
    }

    /// Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> ClientResult<String> {
        Self::send(self.request(Method::GET, "/metrics"))
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// An error with its causes: reqwest's own message ("error sending request for url …") hides the
/// useful part (connection refused, certificate mismatch) in its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Percent-encode a query or path component.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Credentials;

    #[test]
    fn credentials_debug_hides_tokens() {
        for c in [
            Credentials::Bearer("tok_bearer_secret".into()),
            Credentials::AdminToken("tok_bearer_secret".into()),
        ] {
            let out = format!("{c:?}");
            assert!(!out.contains("tok_bearer_secret"), "{out}");
            assert!(out.contains("<redacted>"), "{out}");
        }
    }
}
