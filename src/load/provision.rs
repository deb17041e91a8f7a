//! Provisioning through the dialtone v1 REST API: users from one invite (admin token), channels
//! with real E2E-encrypted names. Or, for servers provisioned another way, tokens from a file and
//! channel ids from the command line.

use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};

use super::LoadError;
use crate::client::rest::Credentials;
use crate::client::{ClientError, RestClient};
use crate::crypto::e2e::{DeviceKeypair, SymmetricKey, generate_key, seal};
use crate::crypto::random_bytes;
use crate::protocol::rest::{CreateInviteRequest, RegisterRequest};

/// One account the load uses (a token backs any number of sockets).
#[derive(Clone, Serialize, Deserialize)]
pub struct LoadUser {
    pub user_id: String,
    pub token: String,
}

impl std::fmt::Debug for LoadUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadUser")
            .field("user_id", &self.user_id)
            .field("token", &crate::protocol::REDACTED)
            .finish()
    }
}

// Here rather than next to `Target` (load/mod.rs is long): the secrets the load holds, redacted.
impl std::fmt::Debug for super::Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base_url", &self.base_url)
            .field("nodes", &self.nodes)
            .field("trust", &self.trust)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| crate::protocol::REDACTED),
            )
            .field("tokens_file", &self.tokens_file)
            .field("channel_ids", &self.channel_ids)
            .finish()
    }
}

/// One channel and the key its payloads are sealed with.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoadChannel {
    pub id: String,
    #[serde(with = "key_b64")]
    pub key: SymmetricKey,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Provisioned {
    pub users: Vec<LoadUser>,
    pub channels: Vec<LoadChannel>,
}

/// Tries per registration when the server answers 503 (its password queue full).
const REGISTER_ATTEMPTS: u32 = 10;

/// Register `users` accounts through one invite and create `channels` channels.
pub async fn through_api(
    rest: &RestClient,
    admin_token: &str,
    users: usize,
    channels: usize,
) -> Result<Provisioned, LoadError> {
    let admin = rest.with_credentials(Credentials::AdminToken(admin_token.to_owned()));
    let invite = admin
        .mint_invite(&CreateInviteRequest {
            expires_in_seconds: Some(3600),
            max_uses: Some(users.max(1) as u32),
        })
        .await
        .map_err(|e| LoadError::Provision(format!("minting an invite: {e}")))?;
    let run = hex::encode(random_bytes(3));
    let password = format!("Ld1-{}", hex::encode(random_bytes(12)));
    // Registration hashes a password (argon2id) on the server: a few at a time.
    let registered: Vec<Result<LoadUser, LoadError>> = stream::iter(0..users)
        .map(|i| {
            let rest = rest.clone();
            let token = invite.token.clone();
            let password = password.clone();
            let run = run.clone();
            async move {
                let keys = DeviceKeypair::generate();
                let req = RegisterRequest {
                    username: format!("load{run}u{i}"),
                    password,
                    public_key: keys.public_key_b64(),
                    invite_token: token,
                };
                let mut attempt = 1;
                let auth = loop {
                    match rest.register(&req).await {
                        // The server's password queue is full (a small machine, or other
                        // clients signing in): it asks for a retry, and nothing was registered.
                        Err(ClientError::Api { status: 503, .. })
                            if attempt < REGISTER_ATTEMPTS =>
                        {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        other => {
                            break other.map_err(|e| {
                                LoadError::Provision(format!("registering user {i}: {e}"))
                            })?;
                        }
                    }
                };
                Ok(LoadUser {
                    user_id: auth.user_id,
                    token: auth.token,
                })
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let users: Vec<LoadUser> = registered.into_iter().collect::<Result<_, _>>()?;
    let channels = if channels == 0 {
        Vec::new()
    } else {
        let creator = users
            .first()
            .ok_or_else(|| LoadError::Provision("channels need at least one user".into()))?;
        // dialtone: promote the creator (channel writes are admin-only); a server without this
        // endpoint may have made it admin already (first user).
        let _ = admin.admin_user_action(&creator.user_id, "promote").await;
        let as_creator = rest.with_token(&creator.token);
        let mut out = Vec::with_capacity(channels);
        for i in 0..channels {
            let key = generate_key();
            let name = seal(&key, format!("load {run} #{i}").as_bytes());
            let channel = as_creator
                .create_channel(&name)
                .await
                .map_err(|e| LoadError::Provision(format!("creating channel {i}: {e}")))?;
            out.push(LoadChannel {
                id: channel.id,
                key,
            });
        }
        out
    };
    Ok(Provisioned { users, channels })
}

/// Tokens (one per line, `#` comments allowed) and existing channel ids.
pub fn from_file(path: &Path, channel_ids: &[String]) -> Result<Provisioned, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Provision(format!("{}: {e}", path.display())))?;
    let users: Vec<LoadUser> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|token| LoadUser {
            user_id: String::new(),
            token: token.to_owned(),
        })
        .collect();
    if users.is_empty() {
        return Err(LoadError::Provision(format!(
            "{}: no tokens in the file",
            path.display()
        )));
    }
    Ok(Provisioned {
        users,
        channels: channel_ids
            .iter()
            .map(|id| LoadChannel {
                id: id.clone(),
                key: generate_key(),
            })
            .collect(),
    })
}

/// Channel keys travel to worker processes as base64.
mod key_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    use crate::crypto::e2e::SymmetricKey;

    pub fn serialize<S: Serializer>(key: &SymmetricKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key.as_slice()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SymmetricKey, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a channel key is 32 bytes"))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::LoadUser;
    use crate::client::tls::Trust;
    use crate::load::Target;

    #[test]
    fn load_debug_hides_tokens() {
        let user = LoadUser {
            user_id: "u1".into(),
            token: "tok_session_secret".into(),
        };
        let target = Target {
            base_url: "https://localhost:1".into(),
            nodes: vec![],
            trust: Trust::SystemRoots,
            admin_token: Some("adm_secret_token".into()),
            tokens_file: None,
            channel_ids: vec![],
        };
        let out = format!("{user:?} {target:?}");
        assert!(!out.contains("tok_session_secret"), "{out}");
        assert!(!out.contains("adm_secret_token"), "{out}");
        assert!(out.contains("<redacted>"), "{out}");
    }
}
