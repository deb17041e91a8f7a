//! `dialtone rekey`: move every encrypted column to the current key.
//!
//! Each row is rewritten on its own (idempotent and resumable: a second run finds nothing to do).
//! Legacy plaintext rows are encrypted too, and device key hashes recomputed under the current key.
//! A row that fails to decrypt is counted and reported, never overwritten.

use serde::Serialize;

use super::{ServiceResult, Store};
use crate::crypto::field::Column;
use crate::db;

const PAGE: i64 = 500;

/// Counts for one column.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnReport {
    pub rewritten: u64,
    pub already_current: u64,
    pub failed: u64,
}

impl ColumnReport {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Rewritten => self.rewritten += 1,
            Outcome::Current => self.already_current += 1,
            Outcome::Failed => self.failed += 1,
        }
    }
}

/// What `rekey` did, per column.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct RekeyReport {
    pub key_id: String,
    pub users_username: ColumnReport,
    pub devices_public_key: ColumnReport,
    pub broadcast_sender_name: ColumnReport,
    pub broadcast_sender_public_key: ColumnReport,
    pub device_lists_statement: ColumnReport,
}

impl RekeyReport {
    pub fn failed(&self) -> u64 {
        self.users_username.failed
            + self.devices_public_key.failed
            + self.broadcast_sender_name.failed
            + self.broadcast_sender_public_key.failed
            + self.device_lists_statement.failed
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Rewritten,
    Current,
    Failed,
}

/// Re-encrypt `stored` under the current key when needed: `Some(new value)` to write.
fn reseal(store: &Store, column: Column, id: &str, stored: &str) -> (Outcome, Option<String>) {
    match store.cipher().decrypt(column, id, stored) {
        Ok(o) if o.needs_rewrite => (
            Outcome::Rewritten,
            Some(store.cipher().encrypt(column, id, &o.plaintext)),
        ),
        Ok(_) => (Outcome::Current, None),
        Err(e) => {
            tracing::error!(column = column.name(), row_id = id, error = %e, "row not re-encrypted");
            (Outcome::Failed, None)
        }
    }
}

pub async fn run(store: &Store) -> ServiceResult<RekeyReport> {
    let mut report = RekeyReport {
        key_id: store.cipher().current_key_id().to_owned(),
        ..RekeyReport::default()
    };
    let mut conn = store.pool.get().await?;
    let mut db = conn.db();

    let mut after = String::new();
    loop {
        let page = db::users::username_page(&mut db, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (id, stored) in page.into_iter().filter(|(_, u)| !u.is_empty()) {
            let (outcome, new) = reseal(store, Column::UsersUsername, &id, &stored);
            if let Some(new) = new {
                db::users::set_username(&mut db, &id, &new).await?;
            }
            report.users_username.count(outcome);
        }
    }

    let mut after = String::new();
    loop {
        let page = db::devices::key_page(&mut db, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (id, stored) in page {
            let outcome = match store
                .cipher()
                .decrypt(Column::DevicesPublicKey, &id, &stored)
            {
                Ok(o) => {
                    // The hash key is derived from the channel key, so it rotates too.
                    let enc = if o.needs_rewrite {
                        store
                            .cipher()
                            .encrypt(Column::DevicesPublicKey, &id, &o.plaintext)
                    } else {
                        stored
                    };
                    let hash = store.hasher().device_key_hash(&o.plaintext);
                    db::devices::set_key(&mut db, &id, &enc, &hash).await?;
                    if o.needs_rewrite {
                        Outcome::Rewritten
                    } else {
                        Outcome::Current
                    }
                }
                Err(e) => {
                    tracing::error!(row_id = %id, error = %e, "device key not re-encrypted");
                    Outcome::Failed
                }
            };
            report.devices_public_key.count(outcome);
        }
    }

    let mut after = String::new();
    loop {
        let page = db::broadcasts::encrypted_page(&mut db, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (id, name, key) in page {
            let (name_outcome, new_name) = reseal(store, Column::BroadcastSenderName, &id, &name);
            let (key_outcome, new_key) = reseal(store, Column::BroadcastSenderPublicKey, &id, &key);
            if new_name.is_some() || new_key.is_some() {
                db::broadcasts::set_encrypted(
                    &mut db,
                    &id,
                    new_name.as_deref().unwrap_or(&name),
                    new_key.as_deref().unwrap_or(&key),
                )
                .await?;
            }
            report.broadcast_sender_name.count(name_outcome);
            report.broadcast_sender_public_key.count(key_outcome);
        }
    }
    let mut after = String::new();
    loop {
        let page = db::device_lists::page_after(&mut db, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for row in page {
            let (outcome, new) =
                reseal(store, Column::DeviceListsStatement, &row.id, &row.statement);
            if let Some(new) = new {
                db::device_lists::set_statement(&mut db, &row.id, &new).await?;
            }
            report.device_lists_statement.count(outcome);
        }
    }
    tracing::info!(?report, "rekey finished");
    Ok(report)
}
