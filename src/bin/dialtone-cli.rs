//! `dialtone-cli`: chat from the terminal. A thin front end over [`dialtone::client::Chat`]: it
//! parses arguments, asks for the passphrase and password, and prints; every E2E rule lives in
//! the library.
//!
//! Each `--profile` is one device with its own key store (`<home>/<profile>.keystore`, mode 0600,
//! sealed under a passphrase). Output: chat content on stdout (`[time] name: text`), status and
//! warnings on stderr, and any error as one line on stderr with a non-zero exit code.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use dialtone::client::rest::Page;
use dialtone::client::{
    Chat, ChatError, ChatEvent, ChatMessage, ClientError, FollowOptions, KeyStore, KeyStoreError,
    ServerSpec, ShareReport, Trust,
};
use dialtone::protocol::rest::CreateInviteRequest;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "dialtone-cli",
    version,
    about = "End-to-end encrypted chat from the terminal (a dialtone client)",
    after_help = "Environment: DIALTONE_PASSPHRASE (key store passphrase), DIALTONE_PASSWORD (account \
                  password), DIALTONE_CLI_HOME (key store folder). Without them you are prompted."
)]
struct Cli {
    /// Server URL, e.g. https://localhost:8080 (register and login; later commands use the profile's).
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (as a development server prints it).
    #[arg(long, global = true, value_name = "SHA256", conflicts_with = "ca_file")]
    fingerprint: Option<String>,
    /// Trust server certificates signed by the CA(s) in this PEM file.
    #[arg(long, global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Which device/account to use: each profile has its own key store.
    #[arg(long, global = true, value_name = "NAME", default_value = "default")]
    profile: String,
    /// Key store folder [default: $DIALTONE_CLI_HOME, else $XDG_CONFIG_HOME/dialtone, else ~/.config/dialtone].
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account with an invite; this profile becomes its first device.
    Register {
        #[arg(long)]
        username: String,
        // Tokens are base64url and may start with `-`.
        #[arg(long, value_name = "TOKEN", allow_hyphen_values = true)]
        invite: String,
    },
    /// Log in: the same device again, or a new device when this profile has no key store yet.
    Login {
        #[arg(long)]
        username: String,
    },
    /// End the session on the server (the keys stay on this device).
    Logout,
    /// List channels with their decrypted names, or create, rename or delete one (admins).
    Channels {
        #[command(subcommand)]
        action: Option<ChannelAction>,
    },
    /// Send a message to a channel and wait until the server has saved it.
    Send {
        /// Channel id or name.
        channel: String,
        /// The message ("-" reads it from standard input).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        text: Vec<String>,
    },
    /// Send a message to every device on the server.
    Broadcast {
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        text: Vec<String>,
    },
    /// Show a channel's history, decrypted.
    History {
        /// Channel id or name.
        channel: String,
        /// Only messages older than this message id (paging back).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
    },
    /// Follow channels live until Ctrl-C; shares keys with devices that join.
    Tail {
        /// Only this channel (id or name); default every channel.
        channel: Option<String>,
        /// Messages of history shown first, per channel.
        #[arg(long, value_name = "N", default_value_t = 10)]
        last: u32,
    },
    /// Mint an invite (admins) and print its token.
    Invite {
        #[arg(long, value_name = "N")]
        max_uses: Option<u32>,
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// List this account's devices.
    Devices,
    /// Give every device the keys this device holds (or only one channel's).
    Share {
        /// Channel id or name.
        channel: Option<String>,
    },
    /// List people (published profiles) and who is online.
    Users,
}

#[derive(Subcommand)]
enum ChannelAction {
    /// Create a channel (admins).
    Create {
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Rename a channel (admins).
    Rename {
        channel: String,
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Delete a channel with its history (admins).
    Delete { channel: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow!("cannot start the async runtime: {e}")),
    };
    let result = resolve_home(cli.home.clone()).and_then(|home| runtime.block_on(run(cli, home)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// clap's usage errors, as one line (help and version still print in full).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("dialtone-cli: error: a command is missing (see `dialtone-cli --help`)");
            ExitCode::from(2)
        }
        _ => {
            // clap's first paragraph, e.g. "the following required arguments were not
            // provided:" plus the indented names, joined into one line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            eprintln!("dialtone-cli: error: {first} (see `dialtone-cli --help`)");
            ExitCode::from(2)
        }
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let text = format!("{e:#}");
    eprintln!(
        "dialtone-cli: error: {}",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    ExitCode::from(1)
}

/// `--home`, else `$DIALTONE_CLI_HOME`, else `$XDG_CONFIG_HOME/dialtone`, else
/// `~/.config/dialtone`.
fn resolve_home(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
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

fn secret_from_env_or_prompt(
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

fn passphrase(confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    secret_from_env_or_prompt("DIALTONE_PASSPHRASE", "Key store passphrase: ", confirm)
}

fn password(username: &str, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    secret_from_env_or_prompt(
        "DIALTONE_PASSWORD",
        &format!("Password for {username}: "),
        confirm,
    )
}

/// Trust from the flags, if any was given.
fn trust_flag(cli: &Cli) -> anyhow::Result<Option<Trust>> {
    if let Some(fp) = &cli.fingerprint {
        return Ok(Some(Trust::Fingerprint(fp.trim().to_owned())));
    }
    if let Some(ca) = &cli.ca_file {
        let abs = std::fs::canonicalize(ca).with_context(|| format!("CA file {}", ca.display()))?;
        return Ok(Some(Trust::CaFile(abs)));
    }
    Ok(None)
}

fn server_flag(cli: &Cli) -> Option<String> {
    cli.server
        .as_ref()
        .map(|s| s.trim().trim_end_matches('/').to_owned())
}

async fn run(cli: Cli, home: PathBuf) -> anyhow::Result<()> {
    let path = KeyStore::path_for(&home, &cli.profile)?;
    match &cli.command {
        Command::Register { username, invite } => register(&cli, &path, username, invite).await,
        Command::Login { username } => login(&cli, &path, username).await,
        _ => {
            let store = open_store(&cli, &path)?;
            let mut chat = Chat::resume(store).map_err(|e| explain(e, &cli))?;
            if !matches!(cli.command, Command::Logout) {
                // Pick up a directory key shared since the last run (and publish our name).
                if let Err(e) = chat.refresh().await {
                    match e {
                        ChatError::Client(ClientError::Api { status: 401, .. }) => {
                            return Err(explain(e, &cli));
                        }
                        other => eprintln!("warning: could not fetch keys: {other}"),
                    }
                }
            }
            let result = command(&cli, &mut chat).await.map_err(|e| explain(e, &cli));
            for w in chat.take_warnings() {
                eprintln!("warning: {w}");
            }
            result
        }
    }
}

/// Turn library errors into advice where the fix is a command away.
fn explain(e: ChatError, cli: &Cli) -> anyhow::Error {
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

fn open_store(cli: &Cli, path: &Path) -> anyhow::Result<KeyStore> {
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

async fn register(cli: &Cli, path: &Path, username: &str, invite: &str) -> anyhow::Result<()> {
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

async fn login(cli: &Cli, path: &Path, username: &str) -> anyhow::Result<()> {
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

async fn command(cli: &Cli, chat: &mut Chat) -> Result<(), ChatError> {
    match &cli.command {
        Command::Register { .. } | Command::Login { .. } => Ok(()),
        Command::Logout => {
            chat.logout().await?;
            out(&format!(
                "logged out (the keys stay in {})",
                chat.store().path().display()
            ));
            Ok(())
        }
        Command::Channels { action } => channels(chat, action.as_ref()).await,
        Command::Send { channel, text } => {
            let text = message_text(text)?;
            let channel = chat.resolve_channel(channel).await?;
            let m = chat.send(&channel.id, &text).await?;
            out(&line(&m, None, true));
            Ok(())
        }
        Command::Broadcast { text } => {
            let text = message_text(text)?;
            let (m, skipped) = chat.broadcast(&text).await?;
            for s in skipped {
                eprintln!("warning: skipped {s}");
            }
            out(&line(&m, Some("(broadcast)"), true));
            Ok(())
        }
        Command::History {
            channel,
            before,
            limit,
        } => {
            let channel = chat.resolve_channel(channel).await?;
            let page = Page {
                limit: Some(*limit),
                before: before.clone(),
                after: None,
            };
            let history = chat.history(&channel.id, &page).await?;
            for m in &history.messages {
                match m {
                    Ok(m) => out(&line(m, None, true)),
                    Err(e) => out(&format!("! {e}")),
                }
            }
            if history.has_more
                && let Some(first) = &history.first_id
            {
                eprintln!("(older messages: --before {first})");
            }
            Ok(())
        }
        Command::Tail { channel, last } => tail(chat, channel.as_deref(), *last).await,
        Command::Invite {
            max_uses,
            expires_in,
        } => {
            let invite = chat
                .invite(&CreateInviteRequest {
                    expires_in_seconds: *expires_in,
                    max_uses: *max_uses,
                })
                .await?;
            out(&invite.token);
            eprintln!("expires {}", invite.expires_at);
            Ok(())
        }
        Command::Devices => {
            for d in chat.devices().await? {
                let me = if d.id == chat.device_id() {
                    "  (this device)"
                } else {
                    ""
                };
                let seen = d
                    .last_seen_at
                    .as_deref()
                    .map(|t| local_time(t, true))
                    .unwrap_or_else(|| "-".into());
                out(&format!(
                    "{}  added {}  last seen {seen}{me}",
                    d.id,
                    local_time(&d.created_at, true)
                ));
            }
            Ok(())
        }
        Command::Share { channel } => {
            let channel_id = match channel {
                Some(c) => Some(chat.resolve_channel(c).await?.id),
                None => None,
            };
            let report = chat.share_keys(channel_id.as_deref(), None).await?;
            if report.shared.is_empty() && report.failed.is_empty() && report.held.is_empty() {
                out("nothing to share: this device holds no keys, or there is no other device");
            } else {
                out(&format!(
                    "shared {} key(s) in {} envelope(s)",
                    report.shared.len(),
                    report.envelopes()
                ));
            }
            print_report(&report);
            Ok(())
        }
        Command::Users => {
            let profiles = chat.profiles().await?;
            let ids: Vec<String> = profiles.iter().map(|(id, _)| id.clone()).collect();
            let presence = if ids.is_empty() {
                None
            } else {
                Some(chat.rest().presence(&ids).await?)
            };
            for (id, name) in profiles {
                let name = name.unwrap_or_else(|e| format!("({e})"));
                let online = presence
                    .as_ref()
                    .and_then(|p| p.statuses.get(&id).copied())
                    .unwrap_or(false);
                let admin = presence
                    .as_ref()
                    .and_then(|p| p.admins.get(&id).copied())
                    .unwrap_or(false);
                out(&format!(
                    "{:<24} {id}{}{}",
                    clean(&name),
                    if online { "  online" } else { "" },
                    if admin { "  admin" } else { "" }
                ));
            }
            Ok(())
        }
    }
}

async fn channels(chat: &mut Chat, action: Option<&ChannelAction>) -> Result<(), ChatError> {
    match action {
        None => {
            let list = chat.channels().await?;
            if list.is_empty() {
                eprintln!("no channels yet (an admin creates one with `channels create NAME`)");
            }
            for c in list {
                out(&format!("#{:<24} {}", clean(&c.display_name()), c.id));
            }
        }
        Some(ChannelAction::Create { name }) => {
            let name = name.join(" ");
            let (channel, report) = chat.create_channel(&name).await?;
            out(&format!(
                "created #{} ({}); its key went to {} device(s)",
                clean(name.trim()),
                channel.id,
                report.envelopes()
            ));
            print_report(&report);
        }
        Some(ChannelAction::Rename { channel, name }) => {
            let name = name.join(" ");
            let c = chat.resolve_channel(channel).await?;
            chat.rename_channel(&c.id, &name).await?;
            out(&format!("renamed {} to #{}", c.id, clean(name.trim())));
        }
        Some(ChannelAction::Delete { channel }) => {
            let c = chat.resolve_channel(channel).await?;
            chat.delete_channel(&c.id).await?;
            out(&format!("deleted #{} ({})", clean(&c.display_name()), c.id));
        }
    }
    Ok(())
}

async fn tail(chat: &mut Chat, channel: Option<&str>, last: u32) -> Result<(), ChatError> {
    let only = match channel {
        Some(c) => Some(chat.resolve_channel(c).await?),
        None => None,
    };
    let mut names: HashMap<String, String> = HashMap::new();
    for c in chat.channels().await? {
        names.insert(c.id.clone(), c.display_name());
    }
    let mut people: HashMap<String, String> = HashMap::new();
    if let Ok(profiles) = chat.profiles().await {
        for (id, name) in profiles {
            if let Ok(n) = name {
                people.insert(id, n);
            }
        }
    }
    let single = only.is_some();
    let opts = FollowOptions {
        channel: only.map(|c| c.id),
        backlog: last,
        ..FollowOptions::default()
    };
    eprintln!(
        "following {} (Ctrl-C to stop)",
        if single {
            "the channel"
        } else {
            "every channel"
        }
    );
    let on_event = move |event: ChatEvent| match event {
        ChatEvent::Message {
            channel_id,
            message,
            ..
        } => {
            let tag = (!single).then(|| {
                format!(
                    "#{}",
                    clean(names.get(&channel_id).map_or("?", String::as_str))
                )
            });
            match message {
                Ok(m) => out(&line(&m, tag.as_deref(), false)),
                Err(e) => out(&format!(
                    "{}! {e}",
                    tag.map(|t| t + " ").unwrap_or_default()
                )),
            }
        }
        ChatEvent::Broadcast(Ok(m)) => out(&line(&m, Some("(broadcast)"), false)),
        ChatEvent::Broadcast(Err(e)) => out(&format!("(broadcast) ! {e}")),
        ChatEvent::ChannelUpdated {
            channel_id,
            name,
            created,
        } => {
            let shown = match &name {
                Ok(n) => format!("#{}", clean(n)),
                Err(_) => format!("{channel_id} (no key on this device yet)"),
            };
            if let Ok(n) = name {
                names.insert(channel_id.clone(), n);
            }
            eprintln!(
                "* {} {shown}",
                if created {
                    "new channel"
                } else {
                    "channel renamed to"
                }
            );
        }
        ChatEvent::ChannelDeleted { channel_id } => {
            let name = names.remove(&channel_id).unwrap_or(channel_id);
            eprintln!("* channel #{} was deleted", clean(&name));
        }
        ChatEvent::DeviceJoined {
            user_id,
            user_name,
            device_id,
            shared,
        } => {
            if let Some(n) = user_name {
                people.insert(user_id.clone(), n);
            }
            let who = people
                .get(&user_id)
                .map_or_else(|| format!("a new user ({user_id})"), |n| clean(n));
            match shared {
                // `device.joined` comes on every connection (as in v1): say something only when
                // this device gave it keys or could not.
                Some(Ok(report)) if report.shared.is_empty() && report.failed.is_empty() => {}
                Some(Ok(report)) => {
                    eprintln!(
                        "* device {device_id} of {who}: shared {} key(s) with it",
                        report.shared.len()
                    );
                    for (key, why) in &report.failed {
                        eprintln!("warning: could not share the key of {key}: {why}");
                    }
                }
                Some(Err(e)) => {
                    eprintln!("warning: new device {device_id} of {who}: could not share keys: {e}")
                }
                None => {}
            }
        }
        ChatEvent::Connected { reconnect: true } => eprintln!("* reconnected; catching up"),
        ChatEvent::Connected { reconnect: false } => {}
        ChatEvent::Disconnected {
            reason, retry_in, ..
        } => eprintln!(
            "* disconnected ({reason}); retrying in {:.1}s",
            retry_in.as_secs_f64()
        ),
        ChatEvent::ServerError {
            code,
            message,
            retry_after,
        } => match retry_after {
            Some(secs) => eprintln!("warning: server: {message} ({code}); retry in {secs} s"),
            None => eprintln!("warning: server: {message} ({code})"),
        },
        ChatEvent::Notice(n) => eprintln!("* {n}"),
        ChatEvent::ProfileUpdated {
            user_id,
            name: Some(name),
        } => {
            people.insert(user_id, name);
        }
        ChatEvent::ProfileUpdated { .. } | ChatEvent::Presence { .. } => {}
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    chat.follow(opts, on_event, stop).await
}

fn print_report(report: &ShareReport) {
    for s in &report.skipped {
        eprintln!("warning: skipped {s}");
    }
    for (key, why) in &report.failed {
        eprintln!("warning: could not share the key of {key}: {why}");
    }
    for (key, devices) in &report.held {
        eprintln!(
            "note: {} device(s) already hold a key for {key} from someone else, left as it is \
             (the server lets only that sender, an admin or the device itself replace it): {}",
            devices.len(),
            devices.join(", ")
        );
    }
}

fn message_text(words: &[String]) -> Result<String, ChatError> {
    let text = if words.len() == 1 && words[0] == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            ChatError::Invalid(format!("reading the message from standard input: {e}"))
        })?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        words.join(" ")
    };
    if text.trim().is_empty() {
        return Err(ChatError::Invalid("the message is empty".into()));
    }
    Ok(text)
}

/// Print one line of chat content; a closed stdout (`| head`) ends the program quietly.
fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{s}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// `[time] name: text`, with a tag (`#channel`, `(broadcast)`) before the name when given.
fn line(m: &ChatMessage, tag: Option<&str>, with_date: bool) -> String {
    let time = local_time(&m.sent_at, with_date);
    let tag = tag.map(|t| format!("{t} ")).unwrap_or_default();
    let text = clean(&m.text).replace('\n', "\n    ");
    format!("[{time}] {tag}{}: {text}", clean(&m.sender_name))
}

fn local_time(rfc3339: &str, with_date: bool) -> String {
    let format = if with_date {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%H:%M:%S"
    };
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Local).format(format).to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Other people's text must not drive the terminal: control characters (escape sequences) are
/// shown escaped. Newlines are kept (indented by the caller).
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' || !c.is_control() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_peoples_text_cannot_drive_the_terminal() {
        assert_eq!(clean("hi\u{1b}[2Jthere"), "hi\\u{1b}[2Jthere");
        assert_eq!(clean("two\nlines\ttab"), "two\nlines\\ttab");
        let m = ChatMessage {
            id: "m".into(),
            channel_id: None,
            sender_id: "u".into(),
            sender_name: "bob\u{7}".into(),
            text: "a\nb".into(),
            sent_at: "not a time".into(),
            client_message_id: None,
        };
        assert_eq!(
            line(&m, Some("#general"), true),
            "[not a time] #general bob\\u{7}: a\n    b"
        );
    }

    #[test]
    fn invite_tokens_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "dialtone-cli",
            "register",
            "--username",
            "bob",
            "--invite",
            "-a3rjLN5i9tz6-d1fJvc48",
        ])
        .unwrap();
        match cli.command {
            Command::Register { invite, .. } => assert_eq!(invite, "-a3rjLN5i9tz6-d1fJvc48"),
            _ => panic!("not register"),
        }
    }

    #[test]
    fn home_prefers_the_flag() {
        let flag = PathBuf::from("/some/where");
        assert_eq!(resolve_home(Some(flag.clone())).unwrap(), flag);
    }

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "dialtone-cli",
            "--profile",
            "bob",
            "send",
            "general",
            "-1",
            "is",
            "odd",
        ])
        .unwrap();
        match cli.command {
            Command::Send { channel, text } => {
                assert_eq!(channel, "general");
                assert_eq!(text.join(" "), "-1 is odd");
            }
            _ => panic!("not send"),
        }
        assert!(
            Cli::try_parse_from([
                "dialtone-cli",
                "--fingerprint",
                "aa",
                "--ca-file",
                "x",
                "devices"
            ])
            .is_err()
        );
    }
}
