//! Running the real `dialtone rekey` binary and reading its report.

use super::server::TestServer;

/// Run the real `dialtone rekey` binary on a (stopped) server's database and data directory, with
/// the server's settings but `DIALTONE_CHANNEL_KEY = key` and `DIALTONE_CHANNEL_KEY_PREVIOUS =
/// previous`. Returns (exit code, stdout, stderr).
pub async fn run_rekey(
    server: &TestServer,
    key: &str,
    previous: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dialtone"));
    cmd.arg("rekey").env_clear().kill_on_drop(true);
    for (k, v) in &server.settings.vars {
        cmd.env(k, v);
    }
    cmd.env("DIALTONE_DB_URL", &server.db.url)
        .env("DIALTONE_DATA_DIR", &server.data_dir)
        .env("DIALTONE_CHANNEL_KEY", key)
        .env("RUST_LOG", "warn");
    match previous {
        Some(p) => cmd.env("DIALTONE_CHANNEL_KEY_PREVIOUS", p),
        None => cmd.env_remove("DIALTONE_CHANNEL_KEY_PREVIOUS"),
    };
    // Bounded like every child process (killed on timeout, which fails the test).
    let out = tokio::time::timeout(super::WAIT * 6, cmd.output())
        .await
        .expect("dialtone rekey finished in time")
        .expect("run dialtone rekey");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pretty-printed JSON report `dialtone rekey` prints on stdout (log lines may surround it).
pub fn rekey_report(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "{")
        .unwrap_or_else(|| panic!("no JSON report in: {stdout}"));
    let end = lines
        .iter()
        .rposition(|l| *l == "}")
        .unwrap_or_else(|| panic!("no JSON report in: {stdout}"));
    serde_json::from_str(&lines[start..=end].join("\n"))
        .unwrap_or_else(|e| panic!("bad report ({e}): {stdout}"))
}

/// One column's counts in a rekey report.
#[track_caller]
pub fn assert_rekey_counts(
    report: &serde_json::Value,
    column: &str,
    rewritten: u64,
    already_current: u64,
) {
    assert_eq!(
        report[column],
        serde_json::json!({"rewritten": rewritten, "already_current": already_current, "failed": 0}),
        "{column} in {report:#}"
    );
}
