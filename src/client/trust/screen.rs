//! Which devices may get a key (docs/TRUST.md §2.6): for a user who published a signed device
//! list, only the devices of that list as verified against this device's pin, with the X25519 key
//! the list names; for a user with no list (a dialtone v1 client), every registered device, as v1
//! does. An identity change, or a list that does not verify, withholds keys from all of that
//! user's devices until it is resolved.

use std::collections::BTreeMap;

use super::lists::{TrustError, verified_devices};
use super::pins::{Pin, Verdict};
use crate::client::ClientError;
use crate::client::keystore::KeyStore;
use crate::client::rest::RestClient;
use crate::client::sealing::SkippedDevice;
use crate::protocol::rest::DeviceKey;

/// The outcome: devices to wrap for, devices withheld (with the reason), and pins to store.
#[derive(Debug, Default)]
pub struct Screened {
    pub allowed: Vec<DeviceKey>,
    pub skipped: Vec<SkippedDevice>,
    pub pins: Vec<Pin>,
}

fn withhold(devices: Vec<DeviceKey>, reason: &str, into: &mut Vec<SkippedDevice>) {
    into.extend(devices.into_iter().map(|d| SkippedDevice {
        device_id: d.device_id,
        user_id: d.user_id,
        reason: reason.to_owned(),
    }));
}

/// Screen `devices` (as `GET /devices/keys?all=1` lists them) user by user; `own_user` is this
/// device's user (its listing may carry no user id).
pub async fn screen(
    rest: &RestClient,
    store: &KeyStore,
    own_user: &str,
    devices: Vec<DeviceKey>,
) -> Screened {
    let mut by_user: BTreeMap<String, Vec<DeviceKey>> = BTreeMap::new();
    for d in devices {
        let user = d.user_id.clone().unwrap_or_else(|| own_user.to_owned());
        by_user.entry(user).or_default().push(d);
    }
    let mut out = Screened::default();
    for (user, devices) in by_user {
        match verified_devices(rest, &user, store.pin(&user)).await {
            Ok((list, verdict)) => {
                let pin = match verdict {
                    Verdict::FirstUse(p) | Verdict::Same(p) => p,
                    Verdict::IdentityChanged { .. } => {
                        withhold(
                            devices,
                            "its user's identity key changed: not shared until you accept it \
                             (`identity show` / `identity accept`)",
                            &mut out.skipped,
                        );
                        continue;
                    }
                };
                out.pins.push(pin);
                for d in devices {
                    let listed = list
                        .statement
                        .devices
                        .iter()
                        .any(|l| l.device_id == d.device_id && l.public_key == d.public_key);
                    if listed {
                        out.allowed.push(d);
                    } else {
                        withhold(
                            vec![d],
                            "not on its user's signed device list (a listed device must sign it \
                             in)",
                            &mut out.skipped,
                        );
                    }
                }
            }
            // No list: a v1 client (or a server without trust v2). v1 rules: every device.
            Err(TrustError::NoList(_))
            | Err(TrustError::Client(ClientError::Api { status: 404, .. })) => {
                out.allowed.extend(devices);
            }
            Err(e) => withhold(
                devices,
                &format!("its user's device list could not be verified: {e}"),
                &mut out.skipped,
            ),
        }
    }
    out
}
