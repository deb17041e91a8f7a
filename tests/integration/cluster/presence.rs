//! Presence is the union over nodes; a node that dies drops out of it; a revocation on one node
//! closes the sockets on the others.

use dialtone::client::{Trust, WsClient, WsOptions};
use dialtone::protocol::ws::event_type;

use super::*;
use crate::procs;
use crate::support::*;

async fn online(via: &TestUser, user_id: &str) -> bool {
    let r = via.rest.presence(&[user_id.to_owned()]).await.unwrap();
    r.statuses.get(user_id).copied().unwrap_or(false)
}

/// The next `presence.updated` of `user_id` on `ws`.
async fn presence_of(ws: &mut WsClient, user_id: &str) -> bool {
    loop {
        let e = next_of(ws, event_type::PRESENCE_UPDATED).await;
        if e.sender == user_id {
            return e.online.expect("online flag");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_is_the_union_over_nodes_and_a_killed_node_drops_out() {
    let Some(cluster) = TestCluster::start(2).await else {
        return;
    };
    let bob = cluster.nodes[0].user("bob").await;
    let alice = cluster.nodes[0].user("alice").await;
    let mut watcher = cluster.nodes[0].ws(&bob).await;
    ws_ready(&mut watcher).await;

    // Alice online on node 1 only: node 0 says so, and tells its sockets.
    let mut alice_b = cluster.nodes[1].ws(&alice).await;
    assert!(presence_of(&mut watcher, alice.id()).await);
    assert!(online(&bob, alice.id()).await);
    alice_b.close().await.unwrap();
    assert!(!presence_of(&mut watcher, alice.id()).await);
    eventually("node 0 sees alice offline", || {
        online(&bob, alice.id()).map_false()
    })
    .await;

    // A third node in its own process, killed with SIGKILL while alice is on it.
    let data = tempfile::tempdir().unwrap();
    let mut vars = procs::base_env(&cluster.db.url, data.path());
    vars.insert(
        "DIALTONE_CHANNEL_KEY".into(),
        cluster.nodes[0].settings.vars["DIALTONE_CHANNEL_KEY"].clone(),
    );
    for (k, v) in [
        ("DIALTONE_NATS_URL", cluster.nats.as_str()),
        ("DIALTONE_NODE_ID", "killed"),
        ("DIALTONE_CLUSTER_SUBJECT_PREFIX", cluster.prefix.as_str()),
        ("DIALTONE_CLUSTER_HEARTBEAT_MS", "200"),
    ] {
        vars.insert(k.into(), v.into());
    }
    let third = procs::serve(&vars).await.serving();
    let opts = WsOptions::new(
        &third.base_url(),
        alice.token(),
        Trust::Fingerprint(third.fingerprint.clone().expect("TLS fingerprint")),
    );
    let mut alice_c = WsClient::connect(&opts).await.unwrap();
    ws_ready(&mut alice_c).await;
    assert!(
        presence_of(&mut watcher, alice.id()).await,
        "online via the third node"
    );
    assert!(online(&bob, alice.id()).await);

    third.kill().await;
    // No goodbye: the peer times out after three missed heartbeats.
    assert!(
        !presence_of(&mut watcher, alice.id()).await,
        "dropped with its node"
    );
    assert!(!online(&bob, alice.id()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_and_disable_on_one_node_close_the_sockets_on_another() {
    let Some(cluster) = TestCluster::start(2).await else {
        return;
    };
    let bob = cluster.nodes[0].user("bob").await;
    let carol = cluster.nodes[0].user("carol").await;
    let mut bob_b = cluster.nodes[1].ws(&bob).await;
    let mut carol_b = cluster.nodes[1].ws(&carol).await;
    ws_ready(&mut bob_b).await;
    ws_ready(&mut carol_b).await;

    bob.rest.logout().await.unwrap();
    assert_eq!(wait_closed(&mut bob_b).await, 1000);

    cluster.nodes[0]
        .admin()
        .admin_user_action(carol.id(), "disable")
        .await
        .unwrap();
    assert_eq!(wait_closed(&mut carol_b).await, 1000);
}

/// `async fn` results as "not": for `eventually` on a false condition.
trait MapFalse {
    fn map_false(self) -> impl std::future::Future<Output = bool>;
}

impl<F: std::future::Future<Output = bool>> MapFalse for F {
    async fn map_false(self) -> bool {
        !self.await
    }
}
