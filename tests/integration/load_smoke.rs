//! A short, bounded run of the load generator against a test server: it provisions, connects,
//! delivers and reports (seconds, not minutes; it asserts that messages flowed, not a speed).

use std::sync::Arc;
use std::time::Duration;

use dialtone::load::{
    self, AbuseLoad, ChurnLoad, ConnectionsLoad, FanoutLoad, Live, Options, PersistLoad, Scenario,
    Target,
};

use crate::support::*;

fn target(server: &TestServer) -> Target {
    Target {
        base_url: server.base_url.clone(),
        nodes: Vec::new(),
        trust: server.trust(),
        admin_token: Some(server.admin_token.clone()),
        tokens_file: None,
        channel_ids: Vec::new(),
    }
}

fn options() -> Options {
    Options {
        users: 3,
        // The test server runs inside this process: it has no pid of its own, so the report must
        // leave the server's RSS and CPU out rather than measure the test process.
        server_pids: Vec::new(),
        source_ips: load::loopback_sources("https://localhost", 2),
        drain: Duration::from_millis(500),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_smoke_run_delivers_and_reports() {
    let server = TestServer::start().await;
    let scenario = Scenario::Fanout(FanoutLoad {
        channels: 2,
        members: 4,
        rate: 40.0,
        publishers: 1,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        size: 64,
    });
    let report = load::run(
        &target(&server),
        &scenario,
        &options(),
        Arc::new(Live::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.connections, 8);
    assert!(report.sent > 0);
    assert!(report.delivered > 0, "{}", report.table());
    assert_eq!(report.latency.count, report.delivered);
    assert_eq!(report.errors.send_failures, 0);
    assert_eq!(report.errors.error_events, 0, "{:?}", report.notes);
    assert!(report.server_figures.mailbox_depth.contains_key("db"));
    assert_eq!(report.server_figures.rss_before_bytes, None);
    // One URL: no cross-node figures (not 0 %), but duplicates and order are still checked.
    let delivery = report.delivery.as_ref().expect("fan-out delivery figures");
    assert_eq!(delivery.nodes.len(), 1);
    assert_eq!(delivery.cross_node, None);
    assert_eq!(delivery.cross_node_delivery_ratio, None);
    assert_eq!((delivery.duplicates, delivery.order_violations), (0, 0));
    assert!(delivery.order_checked_by_seq > 0, "{}", report.table());
    assert!(report.table().contains("n/a (one server URL)"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "fanout");
    assert!(json["delivery"]["cross_node_delivery_ratio"].is_null());
}

/// Two URLs naming the same test server (by address and by name): the sockets and publishers
/// spread over both, every cross-"node" delivery arrives, none twice, none out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_two_urls_spreads_and_checks_cross_node_delivery() {
    let server = TestServer::start().await;
    let port = server.base_url.rsplit(':').next().unwrap().to_owned();
    let urls = vec![
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
    ];
    let mut target = target(&server);
    target.nodes = urls.clone();
    let scenario = Scenario::Fanout(FanoutLoad {
        channels: 2,
        members: 4,
        rate: 40.0,
        publishers: 1,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        size: 64,
    });
    let options = Options {
        // Long enough for every in-window message to arrive on a busy 2-core machine: the ratio
        // must be exactly 1.
        drain: Duration::from_secs(2),
        ..options()
    };
    let report = load::run(&target, &scenario, &options, Arc::new(Live::default()))
        .await
        .unwrap();
    let table = report.table();
    assert_eq!(
        (report.connections, report.connect_failures),
        (8, 0),
        "{table}"
    );
    let d = report.delivery.as_ref().expect("fan-out delivery figures");
    assert_eq!(
        d.nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>(),
        urls
    );
    // Round-robin: 4 sockets on each URL, and channel 1's publisher on the second one.
    assert_eq!(
        d.nodes.iter().map(|n| n.sockets).collect::<Vec<_>>(),
        [4, 4],
        "{table}"
    );
    assert_eq!(
        d.nodes.iter().map(|n| n.publishers).collect::<Vec<_>>(),
        [1, 1],
        "{table}"
    );
    assert!(d.nodes.iter().all(|n| n.sent > 0), "{table}");
    let cross = d.cross_node.expect("cross-node figures with two URLs");
    // Each message reaches the 2 members of its channel on the other URL.
    assert_eq!(cross.expected, report.sent * 2, "{table}");
    assert_eq!(cross.delivered, cross.expected, "{table}");
    assert_eq!(d.cross_node_delivery_ratio, Some(1.0), "{table}");
    assert_eq!(d.same_node.delivered, d.same_node.expected, "{table}");
    assert_eq!(d.duplicates, 0, "{table}");
    assert_eq!(d.order_violations, 0, "{table}");
    // The server sends `seq`: order was checked by it, not by the fallback.
    assert!(d.order_checked_by_seq > 0, "{table}");
    assert_eq!(d.order_checked_by_send_order, 0, "{table}");
    assert!(table.contains("cross-node delivery ratio"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["delivery"]["cross_node_delivery_ratio"], 1.0);
    assert_eq!(json["delivery"]["duplicates"], 0);
    assert_eq!(json["delivery"]["order_violations"], 0);
    assert_eq!(json["parameters"]["server URLs"], urls.join(", "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_and_churn_smoke_runs() {
    let server = TestServer::start().await;
    let persist = Scenario::Persist(PersistLoad {
        senders: 2,
        window: 4,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        size: 32,
        // Both senders on one channel: the shared-channel form of the scenario.
        channels: 1,
    });
    let report = load::run(
        &target(&server),
        &persist,
        &options(),
        Arc::new(Live::default()),
    )
    .await
    .unwrap();
    assert!(report.persisted_per_sec > 0.0, "{}", report.table());
    let stored = server
        .db
        .count("SELECT count(*) AS v FROM channel_messages")
        .await;
    // Every echo is a commit acknowledgement; messages still in flight at the end may be stored
    // without an echo.
    assert!(
        u64::try_from(stored).unwrap() >= report.delivered && report.delivered > 0,
        "stored {stored}, delivered {}",
        report.delivered
    );

    let churn = Scenario::Churn(ChurnLoad {
        workers: 2,
        duration: Duration::from_secs(1),
    });
    let report = load::run(
        &target(&server),
        &churn,
        &options(),
        Arc::new(Live::default()),
    )
    .await
    .unwrap();
    assert!(report.cycles_per_sec > 0.0, "{}", report.table());
    assert_eq!(report.connect_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_run_over_worker_processes_merges_their_results() {
    let server = TestServer::start().await;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_dialtone-load"));
    let live = Arc::new(Live::default());
    let fanout = Scenario::Fanout(FanoutLoad {
        channels: 2,
        members: 3,
        rate: 20.0,
        publishers: 1,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(300),
        size: 32,
    });
    let plan = load::provision(&target(&server), &fanout, &options(), &live)
        .await
        .unwrap();
    let report = load::workers::run_split(&plan, 2, exe, live.clone())
        .await
        .unwrap();
    assert_eq!(
        report.connections, 6,
        "each worker opened its channel's members"
    );
    assert!(report.delivered > 0, "{}", report.table());
    assert_eq!(report.latency.count, report.delivered);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("2 worker processes"))
    );
    assert_eq!(report.errors.error_events, 0, "{:?}", report.notes);
    // The workers' delivery figures are merged: both channels' sockets are counted.
    let delivery = report.delivery.as_ref().expect("merged delivery figures");
    assert_eq!(delivery.nodes[0].sockets, 6);
    assert_eq!((delivery.duplicates, delivery.order_violations), (0, 0));

    let connections = Scenario::Connections(ConnectionsLoad {
        connections: 7,
        hold: Duration::from_secs(1),
    });
    let plan = load::provision(&target(&server), &connections, &options(), &live)
        .await
        .unwrap();
    let report = load::workers::run_split(&plan, 3, exe, Arc::new(Live::default()))
        .await
        .unwrap();
    assert_eq!(report.connections, 7);
    assert_eq!(report.connect_failures, 0);
    assert_eq!(report.server_figures.rss_per_connection_bytes, None);
}

/// The abuse scenario against tight per-address limits: the flood is refused with 429 from its
/// own addresses, while the logged-in users' REST calls and the fan-out all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_smoke_run_refuses_the_flood_and_serves_the_users() {
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_LIMIT_LOGIN_IP", "3/min");
        // Provisioning registers the 3 users from 127.0.0.1: its own bucket of 3.
        s.set("DIALTONE_LIMIT_REGISTER_IP", "3/min");
        // The 8 fan-out sockets come from 2 addresses: 4 each.
        s.set("DIALTONE_LIMIT_WS_UPGRADE_IP", "4/min");
    })
    .await;
    let scenario = Scenario::Abuse(AbuseLoad {
        fanout: FanoutLoad {
            channels: 2,
            members: 4,
            rate: 40.0,
            publishers: 1,
            // Long enough for the first password checks to finish on a 2-core machine busy with
            // the rest of the suite (at 2 s, a login flood sometimes finished no attempt at all).
            duration: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
            size: 64,
        },
        rest_users: 3,
        rest_rate: 15.0,
        flood_login: 4,
        flood_register: 2,
        flood_upgrade: 2,
        flood_sources: 2,
    });
    let report = load::run(
        &target(&server),
        &scenario,
        &options(),
        Arc::new(Live::default()),
    )
    .await
    .unwrap();
    let table = report.table();
    let abuse = report.abuse.as_ref().expect("abuse figures");
    assert_eq!(
        (report.connections, report.connect_failures),
        (8, 0),
        "{table}"
    );
    assert!(report.delivered > 0, "{table}");
    assert_eq!(report.errors.error_events, 0, "{table}");
    assert!(abuse.rest.attempted >= 10, "{table}");
    assert_eq!(abuse.rest.succeeded, abuse.rest.attempted, "{table}");
    for (kind, success) in [("login", "200"), ("register", "201"), ("upgrade", "101")] {
        let f = &abuse.flood[kind];
        let count = |label: &str| f.answers.get(label).copied().unwrap_or(0);
        assert!(count("429") > 0, "{kind}: {table}");
        assert_eq!(count(success), 0, "{kind}: {table}");
        // Every attempt got a 4xx answer: no 5xx, no reset, no timeout.
        let answered: u64 = f
            .answers
            .iter()
            .filter(|(label, _)| label.starts_with('4'))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(answered, f.attempted, "{kind}: {table}");
    }
    // Two flood addresses with a burst of 3 each: at most 6 logins reached the password check.
    assert!(
        abuse.flood["login"]
            .answers
            .get("401")
            .copied()
            .unwrap_or(0)
            <= 6,
        "{table}"
    );
    assert!(table.contains("flood upgrade"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "abuse");
    assert!(json["abuse"]["flood"]["login"]["answers"]["429"].as_u64() > Some(0));
}
