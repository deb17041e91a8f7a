//! A private PostgreSQL 15 that accepts TCP connections only over TLS (`hostssl` trust,
//! `hostnossl` reject), with a server certificate for `localhost` from a throwaway CA: one
//! instance per test process, shared by the database TLS tests (`db_tls.rs`).
//!
//! Lifetime: a static is never dropped, so a `Drop` guard would not run at exit. Instead the
//! instance is run by a small `sh` wrapper whose stdin is a pipe held by this process. The wrapper
//! ignores SIGINT/SIGTERM/SIGHUP and blocks on `read`; when this process exits — normally, by a
//! panic or by a kill — the kernel closes the pipe, `read` returns, and the wrapper stops
//! PostgreSQL (`pg_ctl stop -m immediate`) and removes the temporary directory.
//!
//! PostgreSQL refuses to run as root: as root, `initdb` and `pg_ctl` run as the `postgres` user
//! (`runuser`), which owns the directory and the 0600 key file.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::certs::{Ca, say_skipped};
use crate::support::{Backend, backend};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The running instance.
pub struct TlsPostgres {
    pub port: u16,
    dir: PathBuf,
    /// The CA that signed the server certificate (PEM file).
    pub ca: PathBuf,
    /// A CA that did not (PEM file).
    pub stranger_ca: PathBuf,
    /// The wrapper; its stdin is the lifeline described above.
    _wrapper: Mutex<Child>,
}

enum StartError {
    /// PostgreSQL 15 is not installed: skipped, unless on CI.
    Missing(String),
    Failed(String),
}

/// The shared instance, or `None` (after printing why) when the test is skipped: on SQLite, or
/// without the PostgreSQL 15 binaries when `CI` is unset. On CI missing binaries fail the test.
pub fn instance(test: &str) -> Option<&'static TlsPostgres> {
    if backend() == Backend::Sqlite {
        say_skipped(
            test,
            "database TLS is PostgreSQL-only (DIALTONE_TEST_BACKEND=sqlite)",
        );
        return None;
    }
    static PG: OnceLock<Result<TlsPostgres, StartError>> = OnceLock::new();
    match PG.get_or_init(start) {
        Ok(pg) => Some(pg),
        Err(StartError::Missing(why)) if !on_ci() => {
            say_skipped(test, why);
            None
        }
        Err(StartError::Missing(why)) => panic!("{why} (CI is set: refusing to skip)"),
        Err(StartError::Failed(why)) => panic!("private TLS PostgreSQL did not start: {why}"),
    }
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when we are root.
fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<(), StartError> {
    let out = cmd
        .output()
        .map_err(|e| StartError::Failed(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StartError::Failed(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn start() -> Result<TlsPostgres, StartError> {
    for bin in ["initdb", "pg_ctl", "postgres"] {
        if !Path::new(PG_BIN).join(bin).exists() {
            return Err(StartError::Missing(format!(
                "no PostgreSQL 15 binaries ({PG_BIN}/{bin} is missing)"
            )));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("dialtone-pgtls-")
        .tempdir()
        .map_err(|e| StartError::Failed(format!("tempdir: {e}")))?
        .keep();
    let result = prepare(&dir).and_then(|()| launch(&dir));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Certificates, `initdb`, configuration.
fn prepare(dir: &Path) -> Result<(), StartError> {
    let ca = Ca::new("dialtone PostgreSQL test CA");
    let leaf = ca.issue(&["localhost"]);
    leaf.write(dir, "server");
    ca.write(dir, "ca.pem");
    Ca::new("a CA PostgreSQL never heard of").write(dir, "stranger.pem");
    std::fs::create_dir(dir.join("sock")).map_err(|e| StartError::Failed(e.to_string()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| StartError::Failed(e.to_string()))?;
    }
    if is_root() {
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
            "chown",
        )?;
    }
    run_ok(
        as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
        "initdb",
    )?;
    let d = dir.display();
    let conf = format!(
        "\n# dialtone TLS tests\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{d}/sock'\n\
         ssl = on\n\
         ssl_cert_file = '{d}/server.crt'\n\
         ssl_key_file = '{d}/server.key'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         max_connections = 60\n\
         shared_buffers = 16MB\n"
    );
    let append = |path: PathBuf, text: &str| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| StartError::Failed(format!("{}: {e}", path.display())))
    };
    append(dir.join("data/postgresql.conf"), &conf)?;
    // Only TLS over TCP: a plain-text connection is rejected, so any success proves TLS.
    std::fs::write(
        dir.join("data/pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 0.0.0.0/0 reject\n",
    )
    .map_err(|e| StartError::Failed(e.to_string()))
}

/// The wrapper script: start, say `ready`, wait for the lifeline to close, stop, clean up.
const WRAPPER: &str = r#"
trap '' INT TERM HUP
$RUN "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 -o "-p $PORT" start >/dev/null 2>&1 || { echo failed; exit 1; }
echo ready
read _ignored
$RUN "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1
rm -rf "$DIR"
"#;

/// A loopback port that was free a moment ago. PostgreSQL cannot be told to pick its own port
/// (the port names its socket file), so [`launch`] retries on a bind conflict instead.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start on a free port, retrying on a bind conflict.
fn launch(dir: &Path) -> Result<TlsPostgres, StartError> {
    let run = if is_root() {
        "runuser -u postgres --"
    } else {
        ""
    };
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("sh")
            .args(["-c", WRAPPER])
            .env("RUN", run)
            .env("PG_BIN", PG_BIN)
            .env("DIR", dir)
            .env("PORT", port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError::Failed(format!("sh: {e}")))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() == "ready" {
            return Ok(TlsPostgres {
                port,
                dir: dir.to_owned(),
                ca: dir.join("ca.pem"),
                stranger_ca: dir.join("stranger.pem"),
                _wrapper: Mutex::new(child),
            });
        }
        let _ = child.wait();
        last = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        if !last.contains("could not bind") && !last.contains("already in use") {
            break;
        }
    }
    Err(StartError::Failed(format!("pg_ctl start failed:\n{last}")))
}

impl TlsPostgres {
    /// `postgres://postgres@<host>:<port>/<db>?<query>`.
    pub fn url(&self, host: &str, db: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/{db}?{query}", self.port)
    }

    /// A plain-text connection over the Unix socket (no TLS involved), to `db`.
    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let config = format!(
            "host={}/sock port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .expect("connect to the private PostgreSQL over its socket");
        tokio::spawn(conn);
        client
    }

    /// A new empty database; returns its name.
    pub async fn create_db(&self) -> String {
        let name = format!("dialtone_tls_{}", uuid::Uuid::new_v4().simple());
        self.admin("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        name
    }

    /// Every value of a one-column text query in `db`.
    pub async fn strings(&self, db: &str, sql: &str) -> Vec<String> {
        self.admin(db)
            .await
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// TCP client connections to `db` now: (over TLS, in plain text), from `pg_stat_ssl`.
    pub async fn connections(&self, db: &str) -> (i64, i64) {
        let row = self
            .admin("postgres")
            .await
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = $1 AND a.backend_type = 'client backend' \
                 AND a.client_addr IS NOT NULL",
                &[&db],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
}
