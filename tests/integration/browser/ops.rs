//! The ops pages: the first user, in a browser, is the admin; the admin page mints an invite that
//! a new browser user redeems, lists and revokes invites, disables (the user's open page is
//! signed out at once), enables, promotes and demotes users, and shows live stats.

use serde_json::json;

use crate::support::*;

const ROOT: &str = "takahe-root";
const NEWBIE: &str = "weta-newbie";
const LATE: &str = "tuatara-late";

#[tokio::test]
async fn the_admin_pages_mint_an_invite_that_a_new_browser_user_redeems() {
    let server = TestServer::start().await;
    let Some(mut b) = Browser::start(&server).await else {
        return;
    };
    b.sign_up(&server, "root", ROOT).await;
    b.cmd(json!({"op": "openOps", "ctx": "root"})).await;
    let stats = b.cmd(json!({"op": "stats", "ctx": "root"})).await;
    assert_eq!(stats["values"]["connections"], "1", "{stats}");

    // An invite minted on the page, redeemed in another browser.
    let minted = b
        .cmd(json!({"op": "mintInvite", "ctx": "root", "uses": 1, "hours": 24}))
        .await;
    let token = minted["token"].as_str().unwrap().to_owned();
    b.cmd(json!({"op": "newContext", "ctx": "newbie"})).await;
    b.cmd(
        json!({"op": "register", "ctx": "newbie", "username": NEWBIE,
                 "password": password(NEWBIE), "invite": token}),
    )
    .await;
    // The admin's page gave the newcomer the directory key: their name shows on both sides.
    b.cmd(json!({"op": "waitPerson", "ctx": "newbie", "name": ROOT}))
        .await;
    b.cmd(json!({"op": "openOps", "ctx": "root"})).await;
    let invites = b.cmd(json!({"op": "invites", "ctx": "root"})).await;
    let rows = invites["invites"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["cells"][2] == "1 of 1" && r["cells"][3] == "used up"),
        "{invites}"
    );

    // A revoked invite cannot be redeemed, and the page says so in words.
    let token = b
        .cmd(json!({"op": "mintInvite", "ctx": "root", "uses": 3, "hours": 1}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let invites = b.cmd(json!({"op": "invites", "ctx": "root"})).await;
    let open: Vec<_> = invites["invites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cells"][3] == "open")
        .collect();
    assert_eq!(open.len(), 1, "only the new invite is open: {invites}");
    assert_eq!(open[0]["cells"][2], "0 of 3");
    b.cmd(json!({"op": "revokeInvite", "ctx": "root", "id": open[0]["id"]}))
        .await;
    b.cmd(json!({"op": "newContext", "ctx": "late"})).await;
    let refused = b
        .cmd(
            json!({"op": "registerFails", "ctx": "late", "username": LATE,
                    "password": password(LATE), "invite": token}),
        )
        .await;
    assert!(
        refused["status"]
            .as_str()
            .unwrap()
            .contains("invite cannot be used"),
        "{refused}"
    );

    // Users: disabling signs the newcomer's open page out at once; enabling lets them back.
    let users = b.cmd(json!({"op": "users", "ctx": "root"})).await;
    let mut listed = users["users"].as_array().unwrap().clone();
    listed.sort_by_key(|u| u["username"].as_str().unwrap().to_owned());
    assert_eq!(
        listed,
        [
            json!({"username": ROOT, "role": "admin", "state": "active"}),
            json!({"username": NEWBIE, "role": "member", "state": "active"}),
        ]
    );
    b.cmd(json!({"op": "userAction", "ctx": "root", "username": NEWBIE, "action": "disable"}))
        .await;
    let out = b.cmd(json!({"op": "waitSignedOut", "ctx": "newbie"})).await;
    assert!(
        out["status"]
            .as_str()
            .unwrap()
            .contains("session has ended"),
        "{out}"
    );
    b.cmd(json!({"op": "userAction", "ctx": "root", "username": NEWBIE, "action": "enable"}))
        .await;
    b.cmd(json!({"op": "login", "ctx": "newbie", "username": NEWBIE,
                 "password": password(NEWBIE)}))
        .await;
    for (action, role) in [("promote", "admin"), ("demote", "member")] {
        b.cmd(json!({"op": "userAction", "ctx": "root", "username": NEWBIE, "action": action}))
            .await;
        let users = b.cmd(json!({"op": "users", "ctx": "root"})).await;
        let row = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == NEWBIE)
            .unwrap()
            .clone();
        assert_eq!(row["role"], role, "{users}");
    }
    // The charts follow: two pages are connected now.
    let stats = b
        .cmd(json!({"op": "stats", "ctx": "root", "connections": 2}))
        .await;
    assert_eq!(stats["values"]["users_online"], "2", "{stats}");
    b.cmd(json!({"op": "screenshot", "ctx": "root", "name": "ops"}))
        .await;
    let axe = b.cmd(json!({"op": "axe", "ctx": "root"})).await;
    assert_eq!(axe["violations"], json!([]), "ops page: {axe}");
    // The refused invite and the disabled session's check were provoked on purpose.
    let errors = b
        .cmd(json!({"op": "consoleErrors", "expect": [
            "late: HTTP 410 POST /auth/register",
            "newbie: HTTP 401 GET /devices",
        ]}))
        .await;
    assert_eq!(errors["errors"], json!([]), "{errors}");
    b.close().await;
}
