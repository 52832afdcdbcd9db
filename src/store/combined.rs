//! Combined writes: the statements of one user create or update — the user row, its
//! provisioning-log row and its email rows — sent as one query, so the request costs one round
//! trip instead of three to five.
//!
//! On SQLite the query goes to the single writer as one multi-statement query with one set of
//! numbered parameters. With group commit that round trip is the time the batch lock is held for
//! the request, so it bounds how many writes per second SQLite takes. The statements after the
//! user row's write run only if it wrote: the log row is inserted `WHERE changes() > 0` (the
//! count of the statement just before, the user's insert or update) and returns its `seq`, and
//! the email rows are written only where that log row exists.
//!
//! In a shared SQLite transaction whose request has not run a statement yet, the query also
//! opens the request's savepoint first (releasing the previous request's on the way,
//! `savepoint.rs`); a statement that fails stops the query there, and the request's end rolls its
//! savepoint back.
//!
//! PostgreSQL has no multi-statement queries with parameters; there the writes are one statement
//! with data-modifying CTEs: the user's insert or update `RETURNING id`, the log row inserted
//! `SELECT ... FROM` that, and the email rows written `WHERE EXISTS` a row of it. An update's
//! new email rows are upserted by position and the rows past the new count deleted, so no row is
//! touched twice in the one statement (the order of a statement's CTEs is not defined).
//!
//! On both backends a taken userName (the insert does nothing, `ON CONFLICT DO NOTHING`) or a
//! stale version (the update matches no row) writes nothing at all, and the answer is whether a
//! row came back.

use serde_json::{Value, json};

use super::savepoint::Savepoint;
use super::{StoreError, db_err};
use super::{postgres, sqlite};
use crate::domain::{LogEntry, UserRecord};

type SqliteTx = sqlx::Transaction<'static, sqlx::Sqlite>;
type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The email rows of `$user` (`$1` or `$2`), from the JSON array `$emails`, if the log row
/// `$log` was written.
macro_rules! emails_insert_sql {
    ($user:literal, $emails:literal, $log:literal) => {
        concat!(
            "INSERT INTO user_emails (user_id, position, type, type_lower, value, value_lower, \
             is_primary) SELECT ",
            $user,
            ", e.key, e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4 \
             FROM json_each(",
            $emails,
            ") e WHERE EXISTS (SELECT 1 FROM provisioning_log WHERE id = ",
            $log,
            ")"
        )
    };
}

/// A create: the user (`$1`–`$19`), its log row (`$20`–`$34`), its emails (`$35`).
macro_rules! create_sql {
    () => {
        concat!(
            user_insert_sql!(),
            "; ",
            log_columns_sql!(),
            "SELECT $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34 \
             WHERE changes() > 0 RETURNING seq; ",
            emails_insert_sql!("$1", "$35", "$20")
        )
    };
}

/// An update: the user (`$1`–`$18`) and its log row (`$19`–`$33`).
macro_rules! update_sql {
    () => {
        concat!(
            user_update_sql!(),
            "; ",
            log_columns_sql!(),
            "SELECT $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33 \
             WHERE changes() > 0 RETURNING seq"
        )
    };
}

/// An update whose emails changed: `update_sql!`, then the email rows replaced (`$34`).
macro_rules! update_emails_sql {
    () => {
        concat!(
            update_sql!(),
            "; DELETE FROM user_emails WHERE user_id = $2 AND EXISTS \
             (SELECT 1 FROM provisioning_log WHERE id = $19); ",
            emails_insert_sql!("$2", "$34", "$19")
        )
    };
}

/// PostgreSQL: the email rows of the user `u` returned, from the JSON array `$emails`, as the
/// `SELECT` an `INSERT INTO user_emails` takes (positions from 0, as on SQLite).
macro_rules! pg_emails_select_sql {
    ($emails:literal) => {
        concat!(
            "SELECT u.id, e.n - 1, e.v ->> 0, e.v ->> 1, e.v ->> 2, e.v ->> 3, \
             (e.v ->> 4)::boolean FROM u, jsonb_array_elements(",
            $emails,
            "::jsonb) WITH ORDINALITY AS e(v, n)"
        )
    };
}

/// PostgreSQL, a create: the user (`$1`–`$19`), its log row (`$20`–`$34`), its emails (`$35`).
const PG_CREATE: &str = concat!(
    "WITH u AS (",
    user_insert_sql!(),
    " RETURNING id), l AS (",
    log_columns_sql!(),
    "SELECT $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34 FROM u \
     RETURNING seq), e AS (INSERT INTO user_emails (user_id, position, type, type_lower, value, \
     value_lower, is_primary) ",
    pg_emails_select_sql!("$35"),
    ") SELECT seq FROM l"
);

/// PostgreSQL, an update: the user (`$1`–`$18`) and its log row (`$19`–`$33`).
macro_rules! pg_update_sql {
    () => {
        concat!(
            "WITH u AS (",
            user_update_sql!(),
            " RETURNING id), l AS (",
            log_columns_sql!(),
            "SELECT $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33 \
             FROM u RETURNING seq)"
        )
    };
}

const PG_UPDATE: &str = concat!(pg_update_sql!(), " SELECT seq FROM l");

/// PostgreSQL, an update whose emails changed: `pg_update_sql!`, then the email rows (`$34`)
/// upserted by position and the rows past their count deleted.
const PG_UPDATE_EMAILS: &str = concat!(
    pg_update_sql!(),
    ", e AS (INSERT INTO user_emails (user_id, position, type, type_lower, value, value_lower, \
     is_primary) ",
    pg_emails_select_sql!("$34"),
    " ON CONFLICT (user_id, position) DO UPDATE SET type = excluded.type, \
     type_lower = excluded.type_lower, value = excluded.value, \
     value_lower = excluded.value_lower, is_primary = excluded.is_primary), \
     d AS (DELETE FROM user_emails WHERE user_id = (SELECT id FROM u) \
     AND position >= jsonb_array_length($34::jsonb)) \
     SELECT seq FROM l"
);

/// `$sql` after each `savepoint::Opening`, in the order of `Opening::index`.
macro_rules! by_opening {
    ($sql:expr) => {
        [
            $sql,
            concat!("SAVEPOINT essentry_write_a; ", $sql),
            concat!(
                "RELEASE SAVEPOINT essentry_write_b; SAVEPOINT essentry_write_a; ",
                $sql
            ),
            concat!(
                "RELEASE SAVEPOINT essentry_write_a; SAVEPOINT essentry_write_b; ",
                $sql
            ),
        ]
    };
}

const CREATE: [&str; 4] = by_opening!(create_sql!());
const UPDATE: [&str; 4] = by_opening!(update_sql!());
const UPDATE_EMAILS: [&str; 4] = by_opening!(update_emails_sql!());

/// The user's email rows as the JSON array the statements read: `[type, type folded, value,
/// value folded, primary]` each.
fn emails_json(user: &UserRecord) -> String {
    // `folded` is the same function, `backend.rs`, on both backends.
    let rows: Vec<Value> = user
        .attrs
        .emails()
        .into_iter()
        .map(|e| {
            json!([
                e.kind,
                sqlite::folded(&e.kind),
                e.value,
                sqlite::folded(&e.value),
                e.primary
            ])
        })
        .collect();
    Value::Array(rows).to_string()
}

/// Inserts `user`, its email rows and its log row `entry`: `Ok(false)`, with nothing written,
/// when the userName is taken in the account.
pub(super) async fn insert_user_logged(
    t: &mut SqliteTx,
    sp: &mut Savepoint,
    user: &UserRecord,
    entry: &LogEntry,
) -> Result<bool, StoreError> {
    let (log, modified) = sqlite::stored_log(entry)?;
    let sql = CREATE[sp.opening().index()];
    let query = sqlite::bind_user_insert(sqlx::query(sql), user);
    let rows = sqlite::bind_log(query, &log, modified)
        .bind(emails_json(user))
        .fetch_all(&mut **t)
        .await
        .map_err(db_err)?;
    Ok(!rows.is_empty())
}

/// Writes `user` (its new version already set), its log row `entry` and, when `emails_changed`,
/// its email rows, if the stored user is still at `expected_version`: `Ok(false)`, with nothing
/// written, otherwise.
pub(super) async fn update_user_logged(
    t: &mut SqliteTx,
    sp: &mut Savepoint,
    user: &UserRecord,
    expected_version: i64,
    emails_changed: bool,
    entry: &LogEntry,
) -> Result<bool, StoreError> {
    let (log, modified) = sqlite::stored_log(entry)?;
    let sql = if emails_changed {
        UPDATE_EMAILS
    } else {
        UPDATE
    }[sp.opening().index()];
    let query = sqlite::bind_user_update(sqlx::query(sql), user, expected_version);
    let mut query = sqlite::bind_log(query, &log, modified);
    if emails_changed {
        query = query.bind(emails_json(user));
    }
    let rows = query.fetch_all(&mut **t).await.map_err(db_err)?;
    Ok(!rows.is_empty())
}

/// PostgreSQL: inserts `user`, its email rows and its log row `entry` in one statement:
/// `Ok(false)`, with nothing written, when the userName is taken in the account.
pub(super) async fn pg_insert_user_logged(
    t: &mut PgTx,
    user: &UserRecord,
    entry: &LogEntry,
) -> Result<bool, StoreError> {
    let (log, modified) = postgres::stored_log(entry)?;
    let query = postgres::bind_user_insert(sqlx::query(PG_CREATE), user);
    let row = postgres::bind_log(query, &log, modified)
        .bind(emails_json(user))
        .fetch_optional(&mut **t)
        .await
        .map_err(db_err)?;
    Ok(row.is_some())
}

/// PostgreSQL: writes `user` (its new version already set), its log row `entry` and, when
/// `emails_changed`, its email rows in one statement, if the stored user is still at
/// `expected_version`: `Ok(false)`, with nothing written, otherwise.
pub(super) async fn pg_update_user_logged(
    t: &mut PgTx,
    user: &UserRecord,
    expected_version: i64,
    emails_changed: bool,
    entry: &LogEntry,
) -> Result<bool, StoreError> {
    let (log, modified) = postgres::stored_log(entry)?;
    let sql = if emails_changed {
        PG_UPDATE_EMAILS
    } else {
        PG_UPDATE
    };
    let query = postgres::bind_user_update(sqlx::query(sql), user, expected_version);
    let mut query = postgres::bind_log(query, &log, modified);
    if emails_changed {
        query = query.bind(emails_json(user));
    }
    let row = query.fetch_optional(&mut **t).await.map_err(db_err)?;
    Ok(row.is_some())
}
