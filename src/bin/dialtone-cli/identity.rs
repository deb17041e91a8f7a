//! `identity …` and `verify`: trust v2 from the terminal (docs/TRUST.md): the first list, pairing with a short
//! code, showing and accepting contacts' identities, reset. The rules live in
//! [`dialtone::client::trust`]; this file asks and prints.

use dialtone::client::trust::identity::SignedIn;
use dialtone::client::trust::{Verdict, identity};
use dialtone::client::{Chat, ChatError};
use dialtone::crypto::device_list::CheckedList;
use dialtone::crypto::safety;

use crate::IdentityAction;
use crate::output::{clean, out};

pub(crate) async fn identity(chat: &mut Chat, action: &IdentityAction) -> Result<(), ChatError> {
    match action {
        IdentityAction::Init => {
            let (rest, store) = chat.rest_and_store();
            let list = identity::init(rest, store).await?;
            out(&format!(
                "identity created; device list version {} names this device",
                list.statement.version
            ));
            Ok(())
        }
        IdentityAction::Show { user } => {
            let (user_id, name) = resolve_user(chat, user.as_deref()).await?;
            let this_device = chat.device_id().to_owned();
            let (rest, store) = chat.rest_and_store();
            let (list, verdict) = identity::check_contact(rest, store, &user_id).await?;
            match &verdict {
                Verdict::FirstUse(_) => {
                    eprintln!("note: first time this device checks {name}: identity pinned");
                }
                Verdict::Same(_) => {}
                Verdict::IdentityChanged { pinned, .. } => {
                    print_list(&name, &list, &this_device, false);
                    return Err(ChatError::Invalid(format!(
                        "{name}'s identity key changed since this device pinned it{}: they reset \
                         it, or the server is lying. Nothing is shared with their devices until \
                         you check with them and run `identity accept {name}`",
                        if pinned.verified {
                            " (you had verified it)"
                        } else {
                            ""
                        }
                    )));
                }
            }
            let verified = matches!(&verdict, Verdict::Same(p) if p.verified);
            print_list(&name, &list, &this_device, verified);
            Ok(())
        }
        IdentityAction::Pair => {
            let offer = identity::pairing_offer(chat.rest(), chat.store()).await?;
            out(&format!("code: {}", offer.code));
            out(&format!("offer: {}", offer.offer));
            eprintln!(
                "on a device already on your list, run `identity approve <offer> --code '<code>'` \
                 and check that it shows the same code"
            );
            Ok(())
        }
        IdentityAction::Approve { offer, code } => {
            let (rest, store) = chat.rest_and_store();
            let list = identity::approve(rest, store, offer, code).await?;
            out(&format!(
                "device signed in; device list version {} names {} devices",
                list.statement.version,
                list.statement.devices.len()
            ));
            Ok(())
        }
        IdentityAction::Accept { user } => {
            let (user_id, name) = resolve_user(chat, Some(user)).await?;
            let (rest, store) = chat.rest_and_store();
            let pin = identity::accept(rest, store, &user_id).await?;
            out(&format!(
                "accepted {name}'s identity (list version {}); verify it with them again",
                pin.version
            ));
            Ok(())
        }
        IdentityAction::Reset => {
            let (rest, store) = chat.rest_and_store();
            let list = identity::reset(rest, store).await?;
            out(&format!(
                "new identity; device list version {} names this device alone. Your contacts \
                 see an identity change; sign your other devices in again (`identity pair`)",
                list.statement.version
            ));
            Ok(())
        }
    }
}

/// After register or login: the first device makes the identity by itself; otherwise say what
/// this device's place on the signed list means. A failure here is a warning: the sign-in stands.
pub(crate) async fn after_sign_in(chat: &mut Chat) {
    let (rest, store) = chat.rest_and_store();
    match identity::after_sign_in(rest, store).await {
        Ok(SignedIn::Created(version)) => eprintln!(
            "identity created: device list version {version} names this device (it signs in your other \
             devices: `identity approve`)"
        ),
        Ok(SignedIn::Listed(_) | SignedIn::Unsupported) => {}
        Ok(SignedIn::NotListed(version)) => eprintln!(
            "warning: this device is not on your signed device list (version {version}): \
             contacts share no keys with it until you run `identity pair` here and `identity \
             approve` on a listed device"
        ),
        Ok(SignedIn::NoListOtherDevices(n)) => eprintln!(
            "note: you have {n} other device(s) and no signed device list yet: run `identity \
             init` on the device that should hold your identity key, then pair the others"
        ),
        Err(e) => eprintln!("warning: could not check this device's identity: {e}"),
    }
}

/// `verify USER [--mark SAFETY_NUMBER]`.
pub(crate) async fn verify(
    chat: &mut Chat,
    user: &str,
    mark: Option<&str>,
) -> Result<(), ChatError> {
    let (user_id, name) = resolve_user(chat, Some(user)).await?;
    if user_id == chat.user_id() {
        return Err(ChatError::Invalid(
            "a safety number is between you and someone else".into(),
        ));
    }
    if let Some(compared) = mark {
        let (rest, store) = chat.rest_and_store();
        let pin = identity::mark_verified(rest, store, &user_id, compared).await?;
        out(&format!(
            "{name} verified (identity list version {}); you will be warned if their identity changes",
            pin.version
        ));
        return Ok(());
    }
    let view = identity::safety(chat.rest(), chat.store(), &user_id).await?;
    match &view.verdict {
        Verdict::IdentityChanged { .. } => eprintln!(
            "warning: {name}'s identity key changed since this device pinned it: these are the \
             numbers of the new identity"
        ),
        Verdict::Same(p) if p.verified => eprintln!("note: {name} is verified"),
        _ => {}
    }
    let grouped = safety::grouped(&view.number);
    let groups: Vec<&str> = grouped.split(' ').collect();
    out(&format!("safety number with {name}:"));
    out(&format!("  {}", groups[..6].join(" ")));
    out(&format!("  {}", groups[6..].join(" ")));
    if let Ok(code) = qrcode::QrCode::new(&view.qr) {
        let image = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build();
        out(&image);
    }
    eprintln!(
        "compare these 60 digits with {name} in person or on a call; if they match, run \
         `verify {user} --mark {}`",
        view.number
    );
    Ok(())
}

fn print_list(name: &str, list: &CheckedList, this_device: &str, verified: bool) {
    out(&format!(
        "{name}: identity {} (list version {}{})",
        list.statement.identity_key,
        list.statement.version,
        if verified { ", verified" } else { "" }
    ));
    for d in &list.statement.devices {
        out(&format!(
            "  device {}{}",
            d.device_id,
            if d.device_id == this_device {
                "  (this device)"
            } else {
                ""
            }
        ));
    }
}

/// A user id, or a published name (decrypted with the directory key); default this user.
pub(crate) async fn resolve_user(
    chat: &mut Chat,
    arg: Option<&str>,
) -> Result<(String, String), ChatError> {
    let Some(arg) = arg else {
        return Ok((chat.user_id().to_owned(), "your account".to_owned()));
    };
    if uuid_like(arg) {
        return Ok((arg.to_owned(), arg.to_owned()));
    }
    let matches: Vec<String> = chat
        .profiles()
        .await?
        .into_iter()
        .filter(|(_, n)| n.as_deref().is_ok_and(|n| n == arg))
        .map(|(id, _)| id)
        .collect();
    match matches.as_slice() {
        [id] => Ok((id.clone(), clean(arg))),
        [] => Err(ChatError::Invalid(format!(
            "no user named {arg:?} (see `users`; or give their id)"
        ))),
        _ => Err(ChatError::Invalid(format!(
            "{arg:?} names several users; give one of their ids: {}",
            matches.join(", ")
        ))),
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
