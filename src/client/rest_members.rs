//! [`RestClient`] calls for trust v2 private channels, key generations and direct messages.

use reqwest::Method;

use super::ClientResult;
use super::rest::{RestClient, urlencode};
use crate::client::ClientError;
use crate::protocol::members::{
    AddMemberRequest, KeyRotated, MembersResponse, OpenDirectRequest, RotateKeyRequest,
};
use crate::protocol::rest::{Channel, ChannelKeyEnvelope, ChannelResponse, StatusOk};

impl RestClient {
    /// A private channel's members, generation and the devices a rotation must reach.
    pub async fn members(&self, channel_id: &str) -> ClientResult<MembersResponse> {
        self.get(&format!(
            "/channels/members?channel_id={}",
            urlencode(channel_id)
        ))
        .await
    }

    /// Add a member (`role`: `admin` or `member`, default member).
    pub async fn add_member(
        &self,
        channel_id: &str,
        user_id: &str,
        role: Option<&str>,
    ) -> ClientResult<()> {
        let _: StatusOk = self
            .call(
                Method::POST,
                "/channels/members",
                &AddMemberRequest {
                    channel_id: channel_id.to_owned(),
                    user_id: user_id.to_owned(),
                    role: role.map(str::to_owned),
                },
            )
            .await?;
        Ok(())
    }

    /// Remove a member (the caller's own id: leave).
    pub async fn remove_member(&self, channel_id: &str, user_id: &str) -> ClientResult<()> {
        self.no_content(
            Method::DELETE,
            &format!(
                "/channels/members?channel_id={}&user_id={}",
                urlencode(channel_id),
                urlencode(user_id)
            ),
        )
        .await
    }

    /// Post generation `req.generation`. A refusal is [`ClientError::Coverage`] (the devices
    /// are not exactly the members') or a 409 `generation_conflict` (another rotation won).
    pub async fn rotate(&self, req: &RotateKeyRequest) -> ClientResult<KeyRotated> {
        self.call(Method::POST, "/channels/rotate", req).await
    }

    /// Open (create or find) the direct channel with `user_id`.
    pub async fn open_direct(&self, user_id: &str, name_enc: &str) -> ClientResult<Channel> {
        let res: ChannelResponse = self
            .call(
                Method::POST,
                "/channels/direct",
                &OpenDirectRequest {
                    user_id: user_id.to_owned(),
                    name_enc: name_enc.to_owned(),
                },
            )
            .await?;
        Ok(res.channel)
    }

    /// This device's envelope of one generation of a private channel; `None` if there is none.
    pub async fn generation_key(
        &self,
        channel_id: &str,
        generation: i64,
    ) -> ClientResult<Option<ChannelKeyEnvelope>> {
        match self
            .get(&format!(
                "/channels/keys?channel_id={}&generation={generation}",
                urlencode(channel_id)
            ))
            .await
        {
            Ok(e) => Ok(Some(e)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
