//! `dialtone-load`: the load generator (thin; the logic is `dialtone::load`).
//!
//! Provisions users through invites (admin token) and channels, opens TLS WebSocket connections
//! spread over 127.0.0.x source addresses and over one or more server URLs, drives a scenario,
//! shows live progress, and prints a report table (and JSON with `--json FILE`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dialtone::client::Trust;
use dialtone::load::{
    self, AbuseLoad, ChurnLoad, ConnectionsLoad, FanoutLoad, Live, Options, PersistLoad, Scenario,
    Target,
};

#[derive(Parser)]
#[command(
    name = "dialtone-load",
    version,
    about = "Load generator for dialtone (and any dialtone v1 server)"
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    scenario: ScenarioCmd,
}

#[derive(Args)]
struct TargetArgs {
    /// Server URL; repeat it or give a comma-separated list to spread sockets round-robin over
    /// several nodes (provisioning and /metrics use the first).
    #[arg(
        long,
        env = "DIALTONE_LOAD_SERVER",
        default_value = "https://localhost:8080",
        value_delimiter = ',',
        global = true
    )]
    server: Vec<String>,
    /// Pin the server certificate by SHA-256 fingerprint (self-signed development servers).
    #[arg(long, env = "DIALTONE_LOAD_FINGERPRINT", global = true)]
    fingerprint: Option<String>,
    /// Trust certificates signed by this CA (PEM).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Admin token: provisions users through an invite, promotes a channel creator, reads /metrics.
    #[arg(
        long,
        env = "DIALTONE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true,
        // Tokens are base64url and may start with `-`.
        allow_hyphen_values = true
    )]
    admin_token: Option<String>,
    /// Session tokens, one per line, instead of provisioning (other servers).
    #[arg(long, global = true)]
    tokens_file: Option<PathBuf>,
    /// Existing channel ids (comma-separated) to use with --tokens-file.
    #[arg(long, value_delimiter = ',', global = true)]
    channel_ids: Vec<String>,
    /// Accounts to provision; sockets share them round-robin.
    #[arg(long, default_value_t = 50, global = true)]
    users: usize,
    /// Server process id, for RSS and CPU (servers on this machine); several nodes: repeat it or
    /// give a comma-separated list, and RSS and CPU are their sums.
    #[arg(long, value_delimiter = ',', global = true)]
    server_pid: Vec<u32>,
    /// Source addresses to spread connections over (default 127.0.0.1-8 when every server URL is a
    /// loopback one).
    #[arg(long, value_delimiter = ',', global = true)]
    source_ips: Vec<IpAddr>,
    /// Connections opened at once.
    #[arg(long, default_value_t = 128, global = true)]
    connect_concurrency: usize,
    /// Use the server's default subscriptions (servers without `subscribe`).
    #[arg(long, global = true)]
    default_subscriptions: bool,
    /// Write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// Worker processes to split the sockets over (0: as many as the open-file limit requires).
    #[arg(long, default_value_t = 0, global = true)]
    processes: usize,
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// Channels × members; publishers at a fixed open-loop rate; send→receive latency.
    Fanout(FanoutArgs),
    /// A fan-out and logged-in REST users, measured while anonymous clients flood login,
    /// register and WebSocket upgrades from other source addresses.
    Abuse {
        #[command(flatten)]
        fanout: FanoutArgs,
        /// Logged-in users making REST calls (GET /channels and a history page, in turn).
        #[arg(long, default_value_t = 50)]
        rest_users: usize,
        /// Their REST calls per second, all together.
        #[arg(long, default_value_t = 100.0)]
        rest_rate: f64,
        /// Anonymous clients looping on POST /auth/login with wrong passwords.
        #[arg(long, default_value_t = 100)]
        flood_login: usize,
        /// Anonymous clients looping on POST /auth/register with a junk invite.
        #[arg(long, default_value_t = 50)]
        flood_register: usize,
        /// Anonymous clients looping on WebSocket upgrades with a junk token.
        #[arg(long, default_value_t = 50)]
        flood_upgrade: usize,
        /// Source addresses the flood comes from (127.0.2.1 upwards for a loopback server).
        #[arg(long, default_value_t = 16)]
        flood_sources: u16,
    },
    /// Ramp to N idle sessions, hold them, report server RSS per connection.
    Connections {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold.
        #[arg(long, default_value_t = 60.0)]
        hold: f64,
    },
    /// Committed (echoed) messages per second with a window of messages in flight per sender.
    Persist {
        #[arg(long, default_value_t = 50)]
        senders: usize,
        #[arg(long, default_value_t = 64)]
        window: usize,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// Channels the senders share (sender i on channel i mod N); 0 = one per sender.
        #[arg(long, default_value_t = 0)]
        channels: usize,
    },
    /// (internal) One worker process of a split run.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        of: usize,
    },
    /// Connect/disconnect loop.
    Churn {
        #[arg(long, default_value_t = 32)]
        workers: usize,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
    },
}

#[derive(Args)]
struct FanoutArgs {
    #[arg(long, default_value_t = 20)]
    channels: usize,
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Messages per second, all publishers together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Publishing members per channel.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Plaintext bytes per message.
    #[arg(long, default_value_t = 128)]
    size: usize,
}

impl FanoutArgs {
    fn load(&self) -> FanoutLoad {
        FanoutLoad {
            channels: self.channels,
            members: self.members,
            rate: self.rate,
            publishers: self.publishers,
            duration: secs(self.duration),
            warmup: secs(self.warmup),
            size: self.size,
        }
    }
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let t = cli.target;
    let trust = match (&t.fingerprint, &t.ca_file) {
        (Some(fp), _) => Trust::Fingerprint(fp.clone()),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => Trust::SystemRoots,
    };
    // Blanks around commas and empty items (`a, b,`) are typing, not URLs.
    let servers: Vec<String> = t
        .server
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let Some(first) = servers.first().cloned() else {
        eprintln!("dialtone-load: --server needs at least one URL");
        return ExitCode::from(2);
    };
    let target = Target {
        base_url: first,
        nodes: servers.clone(),
        trust,
        admin_token: t.admin_token.clone(),
        tokens_file: t.tokens_file.clone(),
        channel_ids: t.channel_ids.clone(),
    };
    let scenario = match cli.scenario {
        ScenarioCmd::Fanout(f) => Scenario::Fanout(f.load()),
        ScenarioCmd::Abuse {
            fanout,
            rest_users,
            rest_rate,
            flood_login,
            flood_register,
            flood_upgrade,
            flood_sources,
        } => Scenario::Abuse(AbuseLoad {
            fanout: fanout.load(),
            rest_users,
            rest_rate,
            flood_login,
            flood_register,
            flood_upgrade,
            flood_sources,
        }),
        ScenarioCmd::Connections { connections, hold } => Scenario::Connections(ConnectionsLoad {
            connections,
            hold: secs(hold),
        }),
        ScenarioCmd::Persist {
            senders,
            window,
            duration,
            warmup,
            size,
            channels,
        } => Scenario::Persist(PersistLoad {
            senders,
            window,
            duration: secs(duration),
            warmup: secs(warmup),
            size,
            channels,
        }),
        ScenarioCmd::Churn { workers, duration } => Scenario::Churn(ChurnLoad {
            workers,
            duration: secs(duration),
        }),
        ScenarioCmd::Worker { plan, index, of } => return worker(&plan, index, of),
    };
    let options = Options {
        source_ips: if t.source_ips.is_empty() {
            load::loopback_sources_for(&servers, 8)
        } else {
            t.source_ips.clone()
        },
        users: t.users,
        server_pids: t.server_pid,
        connect_concurrency: t.connect_concurrency,
        default_subscriptions: t.default_subscriptions,
        ..Options::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dialtone-load: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let live = Arc::new(Live::default());
    let progress = (!t.quiet).then(|| spawn_progress(&runtime, live.clone()));
    let processes = if t.processes == 0 {
        load::processes_needed(&scenario)
    } else {
        t.processes
    };
    let result = runtime.block_on(async {
        if processes <= 1 {
            return load::run(&target, &scenario, &options, live).await;
        }
        let exe = std::env::current_exe()
            .map_err(|e| load::LoadError::Config(format!("cannot find this program: {e}")))?;
        let plan = load::provision(&target, &scenario, &options, &live).await?;
        load::workers::run_split(&plan, processes, &exe, live).await
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    match result {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(path) = &t.json {
                let written = serde_json::to_string_pretty(&report)
                    .map_err(|e| e.to_string())
                    .and_then(|j| std::fs::write(path, j + "\n").map_err(|e| e.to_string()));
                if let Err(e) = written {
                    eprintln!("dialtone-load: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dialtone-load: {e}");
            ExitCode::from(1)
        }
    }
}

/// A worker process: run its share, report on stdout.
fn worker(plan: &std::path::Path, index: usize, of: usize) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dialtone-load worker {index}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(load::workers::run_worker(plan, index, of)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dialtone-load worker {index}: {e}");
            ExitCode::from(1)
        }
    }
}

fn spawn_progress(runtime: &tokio::runtime::Runtime, live: Arc<Live>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let b = bar.clone();
    runtime.spawn(async move {
        let mut last = live.counters.snapshot();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = live.counters.snapshot();
            let p99 = live.latencies.merged().value_at_quantile(0.99);
            b.set_message(format!(
                "{:<12} conns {} (+{} failed)  sent {}/s  delivered {}/s  echoed {}/s  p99 {:.1} ms  errors {}  slow {}",
                live.phase(),
                now.connected,
                now.connect_failures,
                now.sent - last.sent,
                now.delivered - last.delivered,
                now.echoes - last.echoes,
                p99 as f64 / 1000.0,
                now.error_events + now.send_failures + now.unexpected_closes,
                now.slow_consumer_closes,
            ));
            last = now;
        }
    });
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn server_urls_repeat_or_come_comma_separated() {
        let cli = Cli::try_parse_from([
            "dialtone-load",
            "--server",
            "https://a:1,https://b:2",
            "--server",
            "https://c:3",
            "fanout",
        ])
        .unwrap();
        assert_eq!(
            cli.target.server,
            ["https://a:1", "https://b:2", "https://c:3"]
        );
        let cli =
            Cli::try_parse_from(["dialtone-load", "fanout", "--server", "https://x:9"]).unwrap();
        assert_eq!(cli.target.server, ["https://x:9"]);
    }
}
