//! The device's key store, sign-in (register, login) and the secrets asked for on the terminal; advice for errors a command can fix.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use dialtone::client::{Chat, ChatError, ClientError, KeyStore, KeyStoreError, ServerSpec, Trust};
use zeroize::Zeroizing;

use crate::*;

/// `--home`, else `$DIALTONE_CLI_HOME`, else `$XDG_CONFIG_HOME/dialtone`, else
/// `~/.config/dialtone`.
pub(crate) fn resolve_home(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(h) = flag.or_else(|| non_empty("DIALTONE_CLI_HOME")) {
        return Ok(h);
    }
    if let Some(x) = non_empty("XDG_CONFIG_HOME") {
        return Ok(x.join("dialtone"));
    }
    non_empty("HOME")
        .map(|h| h.join(".config").join("dialtone"))
        .ok_or_else(|| {
            anyhow!("cannot find a home for the key store: set --home or DIALTONE_CLI_HOME")
        })
}

pub(crate) fn secret_from_env_or_prompt(
    var: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(v) = std::env::var_os(var) {
        return v
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| anyhow!("{var} is not valid UTF-8"));
    }
    let no_tty = || format!("cannot prompt (no terminal): set {var}");
    let first = Zeroizing::new(rpassword::prompt_password(prompt).with_context(no_tty)?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat it: ").with_context(no_tty)?);
        if *again != *first {
            bail!("the two entries differ");
        }
    }
    Ok(first)
}

pub(crate) fn passphrase(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    secret_from_env_or_prompt("DIALTONE_PASSPHRASE", "Key store passphrase: ", confirm)
}

pub(crate) fn password(username: &str, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    secret_from_env_or_prompt(
        "DIALTONE_PASSWORD",
        &format!("Password for {username}: "),
        confirm,
    )
}

/// Trust from the flags, if any was given.
pub(crate) fn trust_flag(cli: &Cli) -> anyhow::Result<Option<Trust>> {
    if let Some(fp) = &cli.fingerprint {
        return Ok(Some(Trust::Fingerprint(fp.trim().to_owned())));
    }
    if let Some(ca) = &cli.ca_file {
        let abs = std::fs::canonicalize(ca).with_context(|| format!("CA file {}", ca.display()))?;
        return Ok(Some(Trust::CaFile(abs)));
    }
    Ok(None)
}

pub(crate) fn server_flag(cli: &Cli) -> Option<String> {
    cli.server
        .as_ref()
        .map(|s| s.trim().trim_end_matches('/').to_owned())
}

/// Turn library errors into advice where the fix is a command away.
pub(crate) fn explain(e: ChatError, cli: &Cli) -> anyhow::Error {
    let profile = if cli.profile == "default" {
        String::new()
    } else {
        format!(" --profile {}", cli.profile)
    };
    match e {
        ChatError::Client(ClientError::Api { status: 401, .. }) | ChatError::NotLoggedIn => {
            anyhow!(
                "this profile's session is no longer valid (expired, revoked or logged out): run `dialtone-cli{profile} login --username <you>`"
            )
        }
        ChatError::Client(ClientError::Api {
            status: 403,
            message,
            ..
        }) => {
            anyhow!("not allowed: {message}")
        }
        ChatError::KeyStore(KeyStoreError::NotFound(p)) => anyhow!(
            "no key store at {} : register or log in with this profile first (`dialtone-cli{profile} register …` or `login …`)",
            p.display()
        ),
        other => anyhow::Error::new(other),
    }
}

pub(crate) fn open_store(cli: &Cli, path: &Path) -> anyhow::Result<KeyStore> {
    if !KeyStore::exists(path) {
        return Err(explain(
            ChatError::KeyStore(KeyStoreError::NotFound(path.to_owned())),
            cli,
        ));
    }
    let pass = passphrase(false)?;
    let mut store = KeyStore::open(path, &pass)?;
    let server = server_flag(cli);
    let trust = trust_flag(cli)?;
    if let Some(p) = store.profile() {
        if let Some(s) = &server
            && *s != p.server_url
        {
            bail!(
                "profile {} belongs to {}, not {s}: use another --profile",
                cli.profile,
                p.server_url
            );
        }
        // A new fingerprint or CA file replaces the stored one (a renewed certificate).
        if let Some(t) = trust
            && t != p.trust
            && let Some(p) = store.profile_mut()
        {
            p.trust = t;
            store.save()?;
        }
    }
    Ok(store)
}

pub(crate) async fn register(
    cli: &Cli,
    path: &Path,
    username: &str,
    invite: &str,
) -> anyhow::Result<()> {
    let url =
        server_flag(cli).context("register needs --server URL (e.g. https://localhost:8080)")?;
    let trust = trust_flag(cli)?.unwrap_or(Trust::SystemRoots);
    if KeyStore::exists(path) {
        return Err(KeyStoreError::Exists(path.to_owned()).into());
    }
    let pass = passphrase(true)?;
    let store = KeyStore::create(path, &pass)?;
    let pw = password(username, true)?;
    let spec = ServerSpec { url, trust };
    let mut chat = Chat::register(store, &spec, username, &pw, invite).await?;
    println!(
        "registered {} (user {}); this device is {}",
        chat.username(),
        chat.user_id(),
        chat.device_id()
    );
    crate::identity::after_sign_in(&mut chat).await;
    if chat.store().profile().is_some_and(|p| p.is_admin) {
        println!(
            "you are this server's admin: create channels with `channels create NAME`, invite people with `invite`"
        );
    }
    eprintln!("key store: {}", chat.store().path().display());
    for w in chat.take_warnings() {
        eprintln!("warning: {w}");
    }
    Ok(())
}

pub(crate) async fn login(cli: &Cli, path: &Path, username: &str) -> anyhow::Result<()> {
    let (store, spec) = if KeyStore::exists(path) {
        let store = open_store(cli, path)?;
        let p = store
            .profile()
            .with_context(|| format!("key store {} has no account", path.display()))?;
        let spec = ServerSpec {
            url: p.server_url.clone(),
            trust: p.trust.clone(),
        };
        (store, spec)
    } else {
        let url = server_flag(cli).context("a first login with this profile needs --server URL")?;
        let trust = trust_flag(cli)?.unwrap_or(Trust::SystemRoots);
        let pass = passphrase(true)?;
        (KeyStore::create(path, &pass)?, ServerSpec { url, trust })
    };
    let pw = password(username, false)?;
    let (mut chat, outcome) =
        Chat::login(store, &spec, username, &pw)
            .await
            .map_err(|e| match e {
                ChatError::Client(ClientError::Api { status: 401, .. }) => {
                    anyhow!("wrong username or password")
                }
                other => other.into(),
            })?;
    println!(
        "logged in as {} on device {}",
        chat.username(),
        chat.device_id()
    );
    crate::identity::after_sign_in(&mut chat).await;
    if outcome.new_device {
        eprintln!(
            "this is a new device: a member's running `tail` shares the channel keys with it; otherwise run `share` on a device that has them"
        );
    }
    for w in chat.take_warnings() {
        eprintln!("warning: {w}");
    }
    Ok(())
}
