//! `/app/`: every embedded file served with its type and the security headers, `/` sending
//! browsers there, and no HSTS with the development certificate.

use std::collections::BTreeSet;

use dialtone::http::webapp::{ASSETS, CSP};

use crate::support::*;

#[tokio::test]
async fn every_file_of_web_app_is_embedded_and_served_with_strict_headers() {
    // Nothing in web/app is left out of the binary.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/app");
    let mut on_disk = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                on_disk.insert(rel);
            }
        }
    }
    let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
    assert_eq!(embedded, on_disk);

    let server = TestServer::start().await;
    let rest = server.rest();
    let get = |path: String| rest.request(reqwest::Method::GET, &path);
    for asset in ASSETS {
        let res = get(format!("/app/{}", asset.path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", asset.path);
        let h = res.headers().clone();
        assert_eq!(h["content-type"], asset.content_type, "{}", asset.path);
        assert_eq!(h["content-security-policy"], CSP);
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS in development"
        );
        let etag = h["etag"].to_str().unwrap().to_owned();
        assert_eq!(res.bytes().await.unwrap().as_ref(), asset.body);
        let again = get(format!("/app/{}", asset.path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{}", asset.path);
    }
    let csp = CSP;
    for rule in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    // The page itself: no inline script or style for the CSP to have to allow.
    let index = String::from_utf8(ASSETS[0].body.to_vec()).unwrap();
    assert!(
        !index.contains("<script>") && !index.contains("style="),
        "{index}"
    );

    // `/` and `/app` send browsers to the page.
    for path in ["/", "/app"] {
        let res = get(path.to_owned()).send().await.unwrap();
        assert_eq!(res.url().path(), "/app/", "{path}");
        assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    }
    let res = rest
        .request(reqwest::Method::POST, "/app/")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    for path in ["/app/../Cargo.toml", "/app/js/nothing.js", "/app/js/"] {
        let res = get(path.to_owned()).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap()["code"],
            "not_found"
        );
    }
}

#[tokio::test]
async fn a_server_with_a_real_certificate_sends_hsts_with_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = crate::certs::Ca::new("dialtone test CA").issue(&["localhost"]);
    let (cert, key) = leaf.write(dir.path(), "server");
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_TLS_CERT", cert.display().to_string());
        s.set("DIALTONE_TLS_KEY", key.display().to_string());
    })
    .await;
    let res = server
        .rest()
        .request(reqwest::Method::GET, "/app/")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(res.headers()["content-security-policy"], CSP);
}
