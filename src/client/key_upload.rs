//! Uploading one key's envelopes under the server's key authority (README "Key authority").
//!
//! The server stores an upload all or nothing, so a batch that fails for some devices is retried
//! without them: devices removed between listing and uploading (404), and devices that already
//! hold a different envelope of the key (409 `envelope_conflict`), which are left as they are and
//! reported. A `not_key_holder` refusal is returned as it is: retrying cannot help.

use std::collections::HashSet;

use super::rest::RestClient;
use super::sealing::Wrapped;
use super::{ClientError, ClientResult, EnvelopeRefusal};
use crate::crypto::e2e::DeviceKeypair;
use crate::protocol::rest::{ChannelKeysUpload, DirectoryKeysUpload};

/// Which key the envelopes wrap.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Channel(&'a str),
    Directory,
}

/// What an upload stored.
#[derive(Debug, Default)]
pub struct Uploaded {
    /// Envelopes stored (or already stored byte for byte).
    pub stored: usize,
    /// Devices that already hold a different envelope of this key: left as they are.
    pub held: Vec<String>,
}

/// Retries after the first attempt: one for each kind of correction, at most.
const RETRIES: usize = 2;

fn is_device_missing(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: 404, message, .. } if message.contains("device"))
}

/// Upload `wrapped` from this device (`me`, `my_device_id`).
pub async fn upload(
    rest: &RestClient,
    target: Target<'_>,
    me: &DeviceKeypair,
    my_device_id: &str,
    wrapped: &Wrapped,
) -> ClientResult<Uploaded> {
    let mut envelopes = wrapped.envelopes.clone();
    let mut held = Vec::new();
    let mut retries = 0;
    loop {
        if envelopes.is_empty() {
            return Ok(Uploaded { stored: 0, held });
        }
        let batch = Wrapped {
            envelopes: envelopes.clone(),
            skipped: Vec::new(),
        };
        let uploads = batch.uploads(me, my_device_id);
        let sent = match target {
            Target::Channel(channel_id) => {
                rest.upload_channel_keys(&ChannelKeysUpload {
                    generation: None,
                    channel_id: channel_id.to_owned(),
                    envelopes: uploads,
                })
                .await
            }
            Target::Directory => {
                rest.upload_directory_keys(&DirectoryKeysUpload { envelopes: uploads })
                    .await
            }
        };
        match sent {
            Ok(()) => {
                return Ok(Uploaded {
                    stored: envelopes.len(),
                    held,
                });
            }
            Err(e) if retries < RETRIES && is_device_missing(&e) => {
                let live: HashSet<String> = rest
                    .all_device_keys()
                    .await?
                    .into_iter()
                    .map(|d| d.device_id)
                    .collect();
                envelopes.retain(|(d, _)| live.contains(d));
            }
            Err(ClientError::EnvelopeRefused {
                refusal: EnvelopeRefusal::Conflict,
                device_ids,
                ..
            }) if retries < RETRIES => {
                envelopes.retain(|(d, _)| !device_ids.contains(d));
                held.extend(device_ids);
            }
            Err(e) => return Err(e),
        }
        retries += 1;
    }
}
