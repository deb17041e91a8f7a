//! Queries on `channel_messages`: group-committed (idempotent) inserts and cursor-paged history.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

use super::models::MessageRow;
use super::schema::channel_messages as m;
use super::{Db, DbResult};
use crate::dispatch;

/// Insert many messages in one statement (the group commit's batch). A row whose
/// `(sender_id, client_message_id)` is already stored is skipped, not an error: the caller reads
/// the originals back with [`by_client_ids`]. Returns how many rows were inserted.
pub async fn insert_batch(db: &mut Db<'_>, rows: &[MessageRow]) -> DbResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(match db {
        // One array per column, whatever the batch size (see `InsertUnnest`).
        Db::Postgres(c) => {
            let mut cols = Columns::with_capacity(rows.len());
            for r in rows {
                cols.push(r);
            }
            InsertUnnest(cols).execute(&mut **c).await?
        }
        // diesel implements SQLite's multi-row INSERT for its synchronous connection only, so the
        // statements run on the wrapper's blocking thread (inside the same transaction). A
        // statement binds every value of its rows, and SQLite takes at most
        // `SQLITE_MAX_VARIABLE_NUMBER` (32,766) of them, so a batch goes in pieces under it.
        Db::Sqlite(c) => {
            let owned = rows.to_vec();
            c.spawn_blocking(move |conn| {
                let mut inserted = 0;
                for piece in owned.chunks(SQLITE_ROWS_PER_INSERT) {
                    inserted += diesel::RunQueryDsl::execute(
                        diesel::insert_into(m::table)
                            .values(piece)
                            .on_conflict_do_nothing(),
                        conn,
                    )?;
                }
                Ok(inserted)
            })
            .await?
        }
    })
}

/// Rows per SQLite `INSERT`: 8 bound values each, under SQLite's default limit of 32,766.
const SQLITE_ROWS_PER_INSERT: usize = 4_000;

/// A batch of rows as one array per column, the parameters of `insert_batch`'s `unnest`.
struct Columns<'a> {
    id: Vec<&'a str>,
    channel_id: Vec<&'a str>,
    sender_id: Vec<&'a str>,
    sender_name_enc: Vec<&'a str>,
    body: Vec<&'a str>,
    sent_at: Vec<chrono::DateTime<chrono::Utc>>,
    client_message_id: Vec<Option<&'a str>>,
    seq: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Columns {
            id: Vec::with_capacity(n),
            channel_id: Vec::with_capacity(n),
            sender_id: Vec::with_capacity(n),
            sender_name_enc: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            sent_at: Vec::with_capacity(n),
            client_message_id: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, r: &'a MessageRow) {
        self.id.push(&r.id);
        self.channel_id.push(&r.channel_id);
        self.sender_id.push(&r.sender_id);
        self.sender_name_enc.push(&r.sender_name_enc);
        self.body.push(&r.body);
        self.sent_at.push(r.sent_at.0);
        self.client_message_id.push(r.client_message_id.as_deref());
        self.seq.push(r.seq);
    }
}

/// `INSERT ... SELECT * FROM unnest(...)` of a batch: its text never changes, so PostgreSQL
/// parses and plans it once per connection (it is cached as a prepared statement, which diesel's
/// `sql_query` and its multi-row `VALUES` of a varying row count are not), and its eight
/// parameters do not grow with the batch.
struct InsertUnnest<'a>(Columns<'a>);

/// [`InsertUnnest`]'s statement-cache key: one statement text for every batch.
struct InsertUnnestId;

impl QueryId for InsertUnnest<'_> {
    type QueryId = InsertUnnestId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for InsertUnnest<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let c = &self.0;
        out.push_sql(
            "INSERT INTO channel_messages \
             (id, channel_id, sender_id, sender_name_enc, body, sent_at, client_message_id, seq) \
             SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&c.id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&c.channel_id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&c.sender_id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&c.sender_name_enc)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&c.body)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Timestamptz>, _>(&c.sent_at)?;
        out.push_sql("::timestamptz[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&c.client_message_id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&c.seq)?;
        out.push_sql("::bigint[]) ON CONFLICT DO NOTHING");
        Ok(())
    }
}

/// Those of the messages `ids` that are stored.
pub async fn by_ids(db: &mut Db<'_>, ids: &[&str]) -> DbResult<Vec<MessageRow>> {
    Ok(dispatch!(db, |c| m::table
        .filter(m::id.eq_any(ids))
        .select(MessageRow::as_select())
        .load(c)
        .await)?)
}

/// The stored messages of any of `sender_ids` with any of `client_message_ids` (a superset of the
/// pairs asked for: the caller matches exact pairs).
pub async fn by_client_ids(
    db: &mut Db<'_>,
    sender_ids: &[&str],
    client_message_ids: &[&str],
) -> DbResult<Vec<MessageRow>> {
    Ok(dispatch!(db, |c| m::table
        .filter(m::sender_id.eq_any(sender_ids))
        .filter(m::client_message_id.eq_any(client_message_ids))
        .select(MessageRow::as_select())
        .load(c)
        .await)?)
}

/// Where a page starts. History is in `seq` order, the channel's commit order on every node (a
/// message id cursor is resolved to its message's `seq` first): `sent_at` is taken when a batch
/// forms, on each node's clock, so across nodes it can disagree with the commit order, and a
/// page after a message by time could skip one committed after it.
#[derive(Debug, Clone)]
pub enum Cursor {
    /// The newest messages.
    Latest,
    /// `seq` strictly below this.
    BeforeSeq(i64),
    /// `seq` strictly above this.
    AfterSeq(i64),
}

/// The `seq` of `message_id` within `channel_id`, if it is there.
pub async fn seq_of(db: &mut Db<'_>, channel_id: &str, message_id: &str) -> DbResult<Option<i64>> {
    Ok(dispatch!(db, |c| m::table
        .filter(m::id.eq(message_id))
        .filter(m::channel_id.eq(channel_id))
        .select(m::seq)
        .first(c)
        .await
        .optional())?)
}

/// Up to `limit` messages from `cursor`, in ascending time order, and whether more exist beyond
/// them in the paging direction.
pub async fn page(
    db: &mut Db<'_>,
    channel_id: &str,
    cursor: &Cursor,
    limit: i64,
) -> DbResult<(Vec<MessageRow>, bool)> {
    let fetch = limit + 1;
    let mut rows: Vec<MessageRow> = match cursor {
        Cursor::Latest => dispatch!(db, |c| m::table
            .filter(m::channel_id.eq(channel_id))
            .order(m::seq.desc())
            .limit(fetch)
            .select(MessageRow::as_select())
            .load(c)
            .await)?,
        Cursor::BeforeSeq(seq) => dispatch!(db, |c| m::table
            .filter(m::channel_id.eq(channel_id))
            .filter(m::seq.lt(*seq))
            .order(m::seq.desc())
            .limit(fetch)
            .select(MessageRow::as_select())
            .load(c)
            .await)?,
        Cursor::AfterSeq(seq) => dispatch!(db, |c| m::table
            .filter(m::channel_id.eq(channel_id))
            .filter(m::seq.gt(*seq))
            .order(m::seq.asc())
            .limit(fetch)
            .select(MessageRow::as_select())
            .load(c)
            .await)?,
    };
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if !matches!(cursor, Cursor::AfterSeq(..)) {
        rows.reverse();
    }
    Ok((rows, has_more))
}

#[cfg(test)]
mod tests {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};

    use super::*;
    use crate::config::DbUrl;
    use crate::db::{SqliteConn, migrate};

    fn row(i: usize) -> MessageRow {
        MessageRow {
            id: format!("m-{i}"),
            channel_id: "c".into(),
            sender_id: "u".into(),
            sender_name_enc: "bg".into(),
            body: "eA".into(),
            sent_at: chrono::Utc::now().into(),
            client_message_id: Some(format!("k-{i}")),
            seq: i as i64 + 1,
        }
    }

    /// `DIALTONE_DB_BATCH_MAX` goes up to 10,000 rows: more values than one SQLite statement
    /// can bind. The store's own migrations make the tables.
    #[tokio::test]
    async fn a_sqlite_batch_past_the_bound_value_limit_is_inserted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        migrate::run(&DbUrl::Sqlite(path.clone())).await.unwrap();
        let mut c = SqliteConn::establish(path.to_str().unwrap()).await.unwrap();
        c.batch_execute(
            "INSERT INTO users (id, username_hash, created_at) VALUES ('u', 'h', '2026-12-08T00:00:00.000000Z'); \
             INSERT INTO channels (id, name_enc, created_at) VALUES ('c', 'bg', '2026-12-08T00:00:00.000000Z')",
        )
        .await
        .unwrap();
        let rows: Vec<MessageRow> = (0..10_000).map(row).collect();
        assert_eq!(
            insert_batch(&mut Db::Sqlite(&mut c), &rows).await.unwrap(),
            10_000
        );
        // Pieces of 4,000, 4,000 and 2,001 rows: stored rows are skipped in each, and the one
        // new row, in the last piece, is inserted.
        let again: Vec<MessageRow> = (0..10_001).map(row).collect();
        assert_eq!(
            insert_batch(&mut Db::Sqlite(&mut c), &again).await.unwrap(),
            1
        );
    }
}
