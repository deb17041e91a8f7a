//! `GET /openapi.json`: served unauthenticated, a valid OpenAPI 3.1 document whose references all
//! resolve, describing exactly the routes registered in `http::configure` (read from its source,
//! then probed on the live router), and equal to the committed copy `docs/openapi.json`.

use std::collections::BTreeSet;

use reqwest::Method;

use crate::support::*;

/// `(METHOD, path)` of every route `http::configure` registers, read from its source: a route
/// added there without a `#[utoipa::path]` makes the comparison below fail.
fn registered_routes() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"))
        .expect("read src/http/mod.rs");
    let start = src
        .find("pub fn configure(")
        .expect("configure in src/http/mod.rs");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of configure")];
    for unsupported in ["web::scope(", "web::resource(", ".route(\"", "web::route("] {
        assert!(
            !body.contains(unsupported),
            "configure registers routes with `{unsupported}`: teach this test to read it"
        );
    }
    let mut routes = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut rest = body;
    loop {
        let res = rest.find("resource(\"");
        let route = rest.find(".route(web::");
        match (res, route) {
            (Some(r), m) if m.is_none_or(|m| r < m) => {
                let after = &rest[r + "resource(\"".len()..];
                let end = after.find('"').expect("end of path literal");
                current = Some(after[..end].to_owned());
                rest = &after[end..];
            }
            (_, Some(m)) => {
                let after = &rest[m + ".route(web::".len()..];
                let end = after.find("()").expect("method call");
                let path = current.clone().expect("a route before any resource");
                routes.insert((after[..end].to_uppercase(), path));
                rest = &after[end..];
            }
            _ => break,
        }
    }
    assert!(routes.len() > 20, "parsed too few routes: {routes:?}");
    routes
}

fn described_routes(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&&**method) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Every `$ref` in `v` names an existing component.
fn assert_refs_resolve(doc: &serde_json::Value, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                let pointer = r.strip_prefix('#').expect("local reference");
                assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
            }
            map.values().for_each(|x| assert_refs_resolve(doc, x));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| assert_refs_resolve(doc, x)),
        _ => {}
    }
}

async fn fetch_document(server: &TestServer) -> (String, String) {
    let res = server
        .rest()
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, res.text().await.expect("body"))
}

#[tokio::test]
async fn document_describes_every_registered_route() {
    let server = TestServer::start().await;
    let (content_type, text) = fetch_document(&server).await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let typed: utoipa::openapi::OpenApi =
        serde_json::from_str(&text).expect("the document parses as OpenAPI");
    assert!(!typed.paths.paths.is_empty());
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_refs_resolve(&doc, &doc);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["admin_token"]["name"], "X-Admin-Token", "{schemes}");

    let registered = registered_routes();
    let described = described_routes(&doc);
    let missing: Vec<_> = registered.difference(&described).collect();
    let extra: Vec<_> = described.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "registered but not described: {missing:?}; described but not registered: {extra:?}"
    );

    // Every operation documents its answers, errors with the `{error, code}` body.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            // Refused credentials count per address (`auth_failures_ip`): whatever can say 401
            // can also say 429.
            if responses.contains_key("401") {
                assert!(responses.contains_key("429"), "{method} {path}: no 429");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    // The live router agrees: each described route exists (whatever it answers without
    // credentials, it is not the unknown-path 404 nor a 405), and other methods get 405.
    let id = "00000000-0000-4000-8000-000000000000";
    for (method, path) in &described {
        let url = path.replace("{id}", id).replace("{action}", "disable");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = send_raw(server.rest().request(m, &url)).await;
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body["error"] == "no such endpoint"),
            "{method} {path} is not routed"
        );
        if !described.contains(&("PUT".to_owned(), path.clone())) {
            let res = server
                .rest()
                .request(Method::PUT, &url)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 405, "PUT {path}");
            // The `Allow` header lists exactly the described methods (RFC 9110).
            let allow = res
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut allowed: Vec<&str> = allow.split(", ").collect();
            allowed.sort_unstable();
            let mut expected: Vec<&str> = described
                .iter()
                .filter(|(_, p)| p == path)
                .map(|(m, _)| m.as_str())
                .collect();
            expected.sort_unstable();
            assert_eq!(allowed, expected, "Allow of {path}");
        }
    }
}

#[tokio::test]
async fn committed_copy_equals_the_served_document() {
    let server = TestServer::start().await;
    let (_, served) = fetch_document(&server).await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json");
    assert!(
        served == committed,
        "docs/openapi.json is stale: regenerate it with \
         `cargo run --bin dialtone -- openapi > docs/openapi.json`"
    );
}
