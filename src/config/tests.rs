//! Config parsing: names of failing variables, TLS and secret rules, zero-config generation.

use super::secrets::{SECRET_VARS, SECRETS_FILE};
use super::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn prod_vars() -> HashMap<String, String> {
    [
        ("DIALTONE_DB_URL", "postgres://localhost/dialtone"),
        ("DIALTONE_USERNAME_PEPPER", "pepper-pepper-pepper"),
        ("DIALTONE_ADMIN_TOKEN", "admin-token-0123456789"),
        ("DIALTONE_CHANNEL_KEY", KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn err_of(vars: HashMap<String, String>) -> ConfigError {
    match Config::load(vars) {
        Ok(_) => panic!("config unexpectedly valid"),
        Err(e) => e,
    }
}

#[test]
fn valid_production_config_parses() {
    let loaded = Config::load(prod_vars()).unwrap();
    let c = loaded.config;
    assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.channel_key.expose().len(), 32);
    assert!(!c.generated_secrets);
    assert!(matches!(c.tls, TlsSetup::SelfSigned { .. }));
    assert!(!format!("{c:?}").contains("admin-token"));
}

#[test]
fn each_missing_secret_is_named() {
    for var in SECRET_VARS {
        let mut vars = prod_vars();
        vars.remove(var);
        let e = err_of(vars);
        assert_eq!(e.var, var);
        assert!(e.to_string().starts_with(var));
    }
}

#[test]
fn bad_values_name_their_variable() {
    let cases = [
        ("DIALTONE_CHANNEL_KEY", "not base64!"),
        ("DIALTONE_CHANNEL_KEY", "AAEC"),
        ("DIALTONE_CHANNEL_KEY_PREVIOUS", "AAEC"),
        ("DIALTONE_USERNAME_PEPPER", "short"),
        ("DIALTONE_ADMIN_TOKEN", "short"),
        ("DIALTONE_LISTEN_ADDR", "nonsense"),
        ("DIALTONE_DB_URL", "mysql://x"),
        ("DIALTONE_DB_POOL_SIZE", "many"),
        ("DIALTONE_DB_POOL_SIZE", "0"),
        ("DIALTONE_SESSION_TTL_SECS", "-5"),
        ("DIALTONE_WS_IDLE_SECS", "10"),
        ("DIALTONE_INSECURE_HTTP", "maybe"),
        ("DIALTONE_METRICS_ADDR", "x"),
    ];
    for (var, value) in cases {
        let mut vars = prod_vars();
        vars.insert(var.to_owned(), value.to_owned());
        let e = err_of(vars);
        assert_eq!(e.var, var, "{var}={value} gave {e}");
    }
}

#[test]
fn metrics_listener_is_loopback_only_unless_public() {
    for addr in ["127.0.0.1:9090", "[::1]:9090", "localhost:0"] {
        let mut vars = prod_vars();
        vars.insert("DIALTONE_METRICS_ADDR".into(), addr.into());
        let c = Config::load(vars)
            .unwrap_or_else(|e| panic!("{addr}: {e}"))
            .config;
        assert!(
            c.metrics_addr.is_some_and(|a| a.ip().is_loopback()),
            "{addr}"
        );
    }
    for addr in [":9090", "0.0.0.0:9090", "192.0.2.1:9090", "[::]:9090"] {
        let mut vars = prod_vars();
        vars.insert("DIALTONE_METRICS_ADDR".into(), addr.into());
        let e = err_of(vars.clone());
        assert_eq!(e.var, "DIALTONE_METRICS_ADDR", "{addr}: {e}");
        assert!(e.reason.contains("DIALTONE_METRICS_PUBLIC"), "{addr}: {e}");
        vars.insert("DIALTONE_METRICS_PUBLIC".into(), "1".into());
        let c = Config::load(vars)
            .unwrap_or_else(|e| panic!("{addr}: {e}"))
            .config;
        assert!(c.metrics_addr.is_some(), "{addr}");
    }
    let mut vars = prod_vars();
    vars.insert("DIALTONE_METRICS_PUBLIC".into(), "perhaps".into());
    assert_eq!(err_of(vars).var, "DIALTONE_METRICS_PUBLIC");
}

#[test]
fn tls_files_must_come_in_pairs() {
    let mut vars = prod_vars();
    vars.insert("DIALTONE_TLS_CERT".into(), "/tmp/c.pem".into());
    assert_eq!(err_of(vars).var, "DIALTONE_TLS_KEY");
    let mut vars = prod_vars();
    vars.insert("DIALTONE_TLS_KEY".into(), "/tmp/k.pem".into());
    assert_eq!(err_of(vars).var, "DIALTONE_TLS_CERT");
}

#[test]
fn plain_http_only_on_loopback() {
    let mut vars = prod_vars();
    vars.insert("DIALTONE_INSECURE_HTTP".into(), "1".into());
    assert_eq!(err_of(vars.clone()).var, "DIALTONE_INSECURE_HTTP");
    vars.insert("DIALTONE_LISTEN_ADDR".into(), "127.0.0.1:8080".into());
    let c = Config::load(vars).unwrap().config;
    assert_eq!(c.tls, TlsSetup::Disabled);
}

#[test]
fn previous_keys_parse_as_list() {
    let mut vars = prod_vars();
    vars.insert(
        "DIALTONE_CHANNEL_KEY_PREVIOUS".into(),
        format!("{KEY}, {KEY}"),
    );
    let c = Config::load(vars).unwrap().config;
    assert_eq!(c.channel_keys_previous.len(), 2);
}

#[test]
fn embedded_store_generates_and_reuses_secrets() {
    let dir = std::env::temp_dir().join(format!("dialtone-cfg-{}", uuid::Uuid::new_v4()));
    let vars: HashMap<String, String> =
        [("DIALTONE_DATA_DIR".to_owned(), dir.display().to_string())].into();
    let first = Config::load(vars.clone()).unwrap();
    assert!(first.first_run);
    assert!(first.config.generated_secrets);
    assert_eq!(first.config.db.url, DbUrl::Sqlite(dir.join("dialtone.db")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(SECRETS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = Config::load(vars).unwrap();
    assert!(!second.first_run);
    assert_eq!(
        second.config.admin_token.expose(),
        first.config.admin_token.expose()
    );
    assert_eq!(
        second.config.channel_key.expose(),
        first.config.channel_key.expose()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explicit_secret_disables_generation() {
    let dir = std::env::temp_dir().join(format!("dialtone-cfg-{}", uuid::Uuid::new_v4()));
    let vars: HashMap<String, String> = [
        ("DIALTONE_DATA_DIR".to_owned(), dir.display().to_string()),
        (
            "DIALTONE_ADMIN_TOKEN".to_owned(),
            "admin-token-0123456789".to_owned(),
        ),
    ]
    .into();
    assert_eq!(err_of(vars).var, "DIALTONE_USERNAME_PEPPER");
    assert!(!dir.exists());
}

/// Odd `DIALTONE_DB_URL` values are parsed or refused naming the variable; none panics.
#[test]
fn odd_db_urls_never_panic() {
    let odd = [
        "",
        " ",
        "sqlite://",
        "sqlite:// ",
        "sqlite:///",
        "sqlite://é",
        "sqlite://\u{0}",
        "postgres://",
        "postgresql://%",
        "postgres://%é?%é=%é",
        "postgres://[",
        "💥://x",
        "sqlite:",
        "POSTGRES://h/db",
        "postgres:/h",
        "://",
        "%",
        "\u{202e}sqlite://x",
    ];
    for url in odd {
        let mut vars = prod_vars();
        vars.insert("DIALTONE_DB_URL".into(), url.into());
        if let Err(e) = Config::load(vars) {
            assert_eq!(e.var, "DIALTONE_DB_URL", "{url:?}: {e}");
        }
    }
}

#[test]
fn clustering_is_off_without_a_nats_url_and_parsed_with_one() {
    assert!(Config::load(prod_vars()).unwrap().config.cluster.is_none());
    let mut vars = prod_vars();
    vars.insert(
        "DIALTONE_NATS_URL".into(),
        "nats://10.0.0.1:4222, nats://10.0.0.2:4222".into(),
    );
    vars.insert("DIALTONE_NODE_ID".into(), "web-1".into());
    vars.insert("DIALTONE_NATS_TOKEN".into(), "s3cret-token".into());
    let c = Config::load(vars).unwrap().config;
    let cluster = c.cluster.expect("clustered");
    assert_eq!(cluster.node_id, "web-1");
    assert_eq!(cluster.subject_prefix, "dialtone");
    assert!(!cluster.tls_required);
    assert!(matches!(cluster.auth, NatsAuth::Token(_)));
    assert!(!format!("{cluster:?}").contains("s3cret-token"));
    assert!(!cluster.fault_skip_message_publish);
}

#[test]
fn bad_cluster_settings_name_their_variable() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DIALTONE_NATS_URL", "http://nats:4222")],
            "DIALTONE_NATS_URL",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_NODE_ID", "a.b"),
            ],
            "DIALTONE_NODE_ID",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_CLUSTER_SUBJECT_PREFIX", "x>"),
            ],
            "DIALTONE_CLUSTER_SUBJECT_PREFIX",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_NATS_USER", "u"),
            ],
            "DIALTONE_NATS_PASSWORD",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_NATS_TOKEN", "t"),
                ("DIALTONE_NATS_CREDS", "/c"),
            ],
            "DIALTONE_NATS_CREDS",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_NATS_TLS_CERT", "/c"),
            ],
            "DIALTONE_NATS_TLS_KEY",
        ),
        (
            vec![
                ("DIALTONE_NATS_URL", "nats://n:4222"),
                ("DIALTONE_CLUSTER_GAP_HOLD_MS", "1"),
            ],
            "DIALTONE_CLUSTER_GAP_HOLD_MS",
        ),
        (vec![("DIALTONE_NATS_TOKEN", "t")], "DIALTONE_NATS_TOKEN"),
    ];
    for (set, var) in cases {
        let mut vars = prod_vars();
        for (k, v) in set {
            vars.insert(k.into(), v.into());
        }
        assert_eq!(err_of(vars).var, var);
    }
}

#[test]
fn clustering_refuses_the_embedded_store() {
    let mut vars = prod_vars();
    vars.remove("DIALTONE_DB_URL");
    vars.insert("DIALTONE_NATS_URL".into(), "nats://127.0.0.1:4222".into());
    assert_eq!(err_of(vars).var, "DIALTONE_NATS_URL");
}
