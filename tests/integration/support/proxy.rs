//! A loopback TCP proxy that tests put between the server and a dependency (PostgreSQL) to make
//! that dependency go away and come back while the server runs.
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards every connection to a target address.
//! [`Proxy::set`] switches it at run time:
//! - [`ProxyMode::Forward`]: new connections are forwarded;
//! - [`ProxyMode::Refuse`]: new connections are closed at once and open ones are cut — the
//!   dependency is down and says so;
//! - [`ProxyMode::Blackhole`]: new connections are accepted and held, open ones stop being
//!   forwarded (both ends stay open): the dependency stopped answering without a reset, so the
//!   peer hangs until its own timeouts fire.
//!
//! [`Proxy::lose_commit_reply`] arms a one-shot trap: the `n`-th group commit afterwards (a
//! transaction that inserted channel messages, told apart by [`GroupCommits`]) has its `COMMIT`
//! forwarded, and then its connection gets nothing back (the transaction commits, but the client
//! never hears so), as when a network fails between a commit and its answer.
//!
//! Leaving `Blackhole` cuts the connections it held (their streams lost bytes mid-way and cannot
//! be resumed); leaving `Refuse` affects only new connections. The proxy runs on its own thread
//! and runtime, so it keeps working while the test's runtime is blocked (e.g. joining a server
//! thread in a `Drop`), and it is bounded: dropping the [`Proxy`] stops that runtime, which closes
//! every socket it holds.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::pg_frontend::GroupCommits;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Forward,
    Refuse,
    Blackhole,
}

/// The switch shared with the connections. `epoch` moves whenever open connections must end
/// (entering `Refuse`, leaving `Blackhole`), so a quick switch back cannot hide a cut.
#[derive(Debug, Clone, Copy)]
struct State {
    mode: ProxyMode,
    epoch: u64,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicUsize>,
    /// Group commits to go before the one whose reply is lost, plus one; 0 when not armed.
    commit_trap: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a loopback port and forward to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let (state, state_rx) = watch::channel(State {
            mode: ProxyMode::Forward,
            epoch: 0,
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let commit_trap = Arc::new(AtomicUsize::new(0));
        let trap = commit_trap.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    tokio::select! {
                        () = accept_loop(listener, target, state_rx, counter, trap) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task, closing their sockets.
            })
            .expect("spawn the proxy thread");
        Proxy {
            addr,
            state,
            accepted,
            commit_trap,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Forward to `host:port` (resolved now).
    pub fn to(target: &str) -> Self {
        let addr = target
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("resolve {target}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("{target} resolves to nothing"));
        Self::start(addr)
    }

    /// The loopback address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switch mode; open connections follow at once (see the module doc).
    pub fn set(&self, mode: ProxyMode) {
        self.state.send_modify(|s| {
            if mode == ProxyMode::Refuse
                || (s.mode == ProxyMode::Blackhole && mode != ProxyMode::Blackhole)
            {
                s.epoch += 1;
            }
            s.mode = mode;
        });
    }

    /// Arm the one-shot trap (see the module doc) for the next group commit: its `COMMIT` goes
    /// through, its reply and everything after it on that connection do not.
    pub fn lose_next_commit_reply(&self) {
        self.lose_commit_reply(1);
    }

    /// Arm the trap for the `nth` group commit from now (1 = the next).
    pub fn lose_commit_reply(&self, nth: usize) {
        self.commit_trap.store(nth, Ordering::SeqCst);
    }

    /// Whether the trap has fired since it was armed (also true if it never was).
    pub fn commit_reply_lost(&self) -> bool {
        self.commit_trap.load(Ordering::SeqCst) == 0
    }

    pub fn mode(&self) -> ProxyMode {
        self.state.borrow().mode
    }

    /// Connections accepted so far, in any mode.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<State>,
    accepted: Arc<AtomicUsize>,
    trap: Arc<AtomicUsize>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors or the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        // Dropped right away in `Refuse`: the peer sees its connection closed.
        if state.borrow().mode != ProxyMode::Refuse {
            tokio::spawn(connection(client, target, state.clone(), trap.clone()));
        }
    }
}

/// One proxied connection, for as long as the mode lets it live.
async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<State>,
    trap: Arc<AtomicUsize>,
) {
    let State { mode, epoch } = *state.borrow_and_update();
    if mode == ProxyMode::Blackhole {
        return hold(&mut state, epoch).await;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let blackholed = {
        let copy = pump(&mut client, &mut upstream, &trap);
        tokio::pin!(copy);
        loop {
            tokio::select! {
                _ = &mut copy => break false,
                changed = state.changed() => {
                    if changed.is_err() {
                        break false;
                    }
                    let now = *state.borrow_and_update();
                    if now.epoch != epoch {
                        break false;
                    }
                    if now.mode == ProxyMode::Blackhole {
                        break true;
                    }
                }
            }
        }
    };
    if blackholed {
        // Both sockets stay open and nothing moves: the peers wait on each other.
        hold(&mut state, epoch).await;
    }
}

/// Copy both ways until both ends are done, as `copy_bidirectional`, except that once this
/// connection has sent the `COMMIT` an armed trap was waiting for, nothing comes back.
async fn pump(client: &mut TcpStream, upstream: &mut TcpStream, trap: &AtomicUsize) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_upstream, mut to_upstream) = upstream.split();
    let swallow = AtomicBool::new(false);
    // Only a group commit's COMMIT springs the trap.
    let mut group_commits = GroupCommits::default();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_upstream.shutdown().await;
            }
            let chunk = &buf[..n];
            if group_commits.feed(chunk)
                && trap.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                }) == Ok(1)
            {
                swallow.store(true, Ordering::SeqCst);
            }
            to_upstream.write_all(chunk).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_upstream.read(&mut buf).await?;
            if n == 0 {
                return to_client.shutdown().await;
            }
            if !swallow.load(Ordering::SeqCst) {
                to_client.write_all(&buf[..n]).await?;
            }
        }
    };
    let _: std::io::Result<((), ())> = tokio::try_join!(up, down);
}

/// Wait until open connections must end (or the proxy stops).
async fn hold(state: &mut watch::Receiver<State>, epoch: u64) {
    while state.changed().await.is_ok() {
        if state.borrow_and_update().epoch != epoch {
            return;
        }
    }
}

/// `url` with its `host:port` replaced by `addr` (user, database and query kept):
/// `postgres://u@db:5432/x?sslmode=disable` → `postgres://u@127.0.0.1:PORT/x?sslmode=disable`.
pub fn url_via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!("{scheme}://{userinfo}{addr}{tail}")
}

/// The `host:port` of `url` (port 5432 when absent).
pub fn url_host_port(url: &str) -> String {
    let (_, rest) = url.split_once("://").expect("URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}
