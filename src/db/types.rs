//! Column types that mean the same on both backends.
//!
//! - [`TimestampUtc`]: `TIMESTAMPTZ` on PostgreSQL (as in the dialtone v1 schema); on SQLite a TEXT
//!   in a fixed-width RFC 3339 UTC form (`2026-11-28T10:00:00.000000Z`), so text order is time
//!   order and `ORDER BY sent_at` means the same on both.
//! - [`JsonDoc`]: `JSONB` on PostgreSQL, TEXT on SQLite.

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::query_builder::QueryId;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{SqlType, Text, Timestamptz};
use diesel::sqlite::{Sqlite, SqliteValue};
use std::io::Write;

/// SQL type of every timestamp column.
#[derive(Debug, Clone, Copy, Default, SqlType, QueryId)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct TimestampUtc;

/// A UTC instant stored in a [`TimestampUtc`] column.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    AsExpression,
    FromSqlRow,
    serde::Serialize,
    serde::Deserialize,
)]
#[diesel(sql_type = TimestampUtc)]
#[serde(transparent)]
pub struct Time(pub DateTime<Utc>);

impl Time {
    pub fn now() -> Self {
        Time(Utc::now())
    }

    /// The wire form (RFC 3339, `Z`, microseconds).
    pub fn wire(&self) -> String {
        crate::protocol::format_time(self.0)
    }
}

impl From<DateTime<Utc>> for Time {
    fn from(t: DateTime<Utc>) -> Self {
        Time(t)
    }
}

impl ToSql<TimestampUtc, Pg> for Time {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<TimestampUtc, Pg> for Time {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<Timestamptz, Pg>>::from_sql(bytes).map(Time)
    }
}

impl ToSql<TimestampUtc, Sqlite> for Time {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_rfc3339_opts(SecondsFormat::Micros, true));
        Ok(IsNull::No)
    }
}

impl FromSql<TimestampUtc, Sqlite> for Time {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        let parsed = DateTime::parse_from_rfc3339(&text)
            .map_err(|e| format!("bad timestamp `{text}`: {e}"))?;
        Ok(Time(parsed.with_timezone(&Utc)))
    }
}

/// SQL type of JSON document columns.
#[derive(Debug, Clone, Copy, Default, SqlType, QueryId)]
#[diesel(postgres_type(oid = 3802, array_oid = 3807))]
#[diesel(sqlite_type(name = "Text"))]
pub struct JsonDoc;

/// A JSON document, kept as its text.
#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = JsonDoc)]
pub struct Json(pub String);

/// Version byte of PostgreSQL's binary `jsonb` format.
const JSONB_VERSION: u8 = 1;

impl ToSql<JsonDoc, Pg> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<JsonDoc, Pg> for Json {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let raw = bytes.as_bytes();
        match raw.split_first() {
            Some((&JSONB_VERSION, rest)) => Ok(Json(String::from_utf8(rest.to_vec())?)),
            _ => Err("unsupported jsonb encoding".into()),
        }
    }
}

impl ToSql<JsonDoc, Sqlite> for Json {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_str());
        Ok(IsNull::No)
    }
}

impl FromSql<JsonDoc, Sqlite> for Json {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Sqlite>>::from_sql(value).map(Json)
    }
}
