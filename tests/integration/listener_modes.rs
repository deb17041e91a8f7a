//! Listener modes: a configured certificate (`DIALTONE_TLS_CERT`/`DIALTONE_TLS_KEY`) is what the
//! real binary serves; `DIALTONE_INSECURE_HTTP` serves plain HTTP on loopback only; the separate
//! `DIALTONE_METRICS_ADDR` listener serves `/metrics` unauthenticated and nothing else, while the
//! main listener keeps `/metrics` admin-only; that listener is loopback-only unless
//! `DIALTONE_METRICS_PUBLIC` opens it.

use dialtone::client::rest::Credentials;
use dialtone::client::{RestClient, Trust};
use reqwest::Method;

use crate::certs::Ca;
use crate::procs::{self, base_env};
use crate::support::{TestDb, TestServer, send_raw};

#[tokio::test]
async fn serve_presents_the_configured_certificate() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("dialtone test CA");
    let leaf = ca.issue(&["localhost"]);
    let (cert, key) = leaf.write(dir.path(), "server");
    let mut env = base_env(&db.url, dir.path());
    env.insert("DIALTONE_TLS_CERT".into(), cert.display().to_string());
    env.insert("DIALTONE_TLS_KEY".into(), key.display().to_string());
    let server = procs::serve(&env).await.serving();
    assert_eq!(server.scheme, "https");
    assert_eq!(
        server.fingerprint.as_deref(),
        Some(leaf.fingerprint.as_str()),
        "the banner names another certificate"
    );
    // What the client sees: trusted through the CA, and pinned by the certificate's own hash.
    for trust in [
        Trust::CaFile(ca.write(dir.path(), "ca.pem")),
        Trust::Fingerprint(leaf.fingerprint.clone()),
    ] {
        RestClient::new(&server.base_url(), &trust)
            .unwrap()
            .health()
            .await
            .unwrap_or_else(|e| panic!("{trust:?}: {e}"));
    }
    assert!(
        !dir.path().join("dev-cert.pem").exists(),
        "a development certificate was generated anyway"
    );
    server.kill().await;
}

#[tokio::test]
async fn insecure_http_on_loopback_serves_plain_http() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_INSECURE_HTTP", "1");
    })
    .await;
    // The TLS ClientHello sent below is garbage to an HTTP parser: answered, and not an ERROR.
    assert_eq!(server.fingerprint, "", "no certificate with TLS disabled");
    let http = server.base_url.replacen("https://", "http://", 1);
    let plain = RestClient::new(&http, &Trust::SystemRoots).unwrap();
    plain.health().await.expect("/health over http://");
    let (status, body) = send_raw(plain.request(Method::GET, "/ready")).await;
    assert_eq!((status, body), (200, serde_json::json!("ready")));
    // And there is no TLS on that port.
    let tls = RestClient::new(&server.base_url, &Trust::SystemRoots).unwrap();
    assert!(tls.health().await.is_err(), "a TLS handshake succeeded");
}

#[tokio::test]
async fn insecure_http_is_refused_on_a_non_loopback_address() {
    let data = tempfile::tempdir().unwrap();
    let mut env = base_env(
        &format!("sqlite://{}/d.db", data.path().display()),
        data.path(),
    );
    // TEST-NET-1: not loopback, and not an address of this machine, so even a server that
    // wrongly accepted the setting could not listen off loopback.
    env.insert("DIALTONE_LISTEN_ADDR".into(), "192.0.2.1:0".into());
    env.insert("DIALTONE_INSECURE_HTTP".into(), "1".into());
    let out = procs::serve(&env).await.exited();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("dialtone: configuration error: DIALTONE_INSECURE_HTTP: plain HTTP is only allowed on a loopback listener"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_the_main_listener_keeps_them_admin_only() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, data.path());
    // Port 0: the process binds a free port itself and prints which.
    env.insert("DIALTONE_METRICS_ADDR".into(), "127.0.0.1:0".into());
    let server = procs::serve(&env).await.serving();
    let metrics_port = server
        .metrics_port
        .expect("the banner names the metrics port");
    let metrics = RestClient::new(
        &format!("http://127.0.0.1:{metrics_port}"),
        &Trust::SystemRoots,
    )
    .unwrap();
    let res = metrics
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("GET /metrics on the metrics listener");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    for name in ["dialtone_messages_persisted", "dialtone_ws_connections"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // Only /metrics there: the API is not exposed on the plain listener.
    for path in ["/health", "/users/profiles"] {
        let (status, _) = send_raw(metrics.request(Method::GET, path)).await;
        assert_eq!(status, 404, "{path} on the metrics listener");
    }

    // The main listener still has /metrics, for the admin only.
    let trust = Trust::Fingerprint(server.fingerprint.clone().expect("TLS"));
    let main = RestClient::new(&server.base_url(), &trust).unwrap();
    let (status, _) = send_raw(main.request(Method::GET, "/metrics")).await;
    assert_eq!(status, 401, "unauthenticated /metrics on the main listener");
    let admin = main.with_credentials(Credentials::AdminToken(env["DIALTONE_ADMIN_TOKEN"].clone()));
    let (status, body) = send_raw(admin.request(Method::GET, "/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        body.as_str()
            .is_some_and(|t| t.contains("dialtone_messages_persisted")),
        "{body}"
    );
    server.kill().await;
}

#[tokio::test]
async fn a_non_loopback_metrics_listener_needs_metrics_public() {
    let data = tempfile::tempdir().unwrap();
    let mut env = base_env(
        &format!("sqlite://{}/d.db", data.path().display()),
        data.path(),
    );
    // Every interface: the unauthenticated metrics would be on the internet.
    env.insert("DIALTONE_METRICS_ADDR".into(), "0.0.0.0:0".into());
    let out = procs::serve(&env).await.exited();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(
            "dialtone: configuration error: DIALTONE_METRICS_ADDR: 0.0.0.0:0 is not a loopback address"
        ),
        "{}",
        out.stderr
    );

    // Opened by name, the same address serves.
    env.insert("DIALTONE_METRICS_PUBLIC".into(), "1".into());
    let server = procs::serve(&env).await.serving();
    let port = server
        .metrics_port
        .expect("the banner names the metrics port");
    let metrics =
        RestClient::new(&format!("http://127.0.0.1:{port}"), &Trust::SystemRoots).unwrap();
    let (status, _) = send_raw(metrics.request(Method::GET, "/metrics")).await;
    assert_eq!(status, 200);
    server.kill().await;
}
