//! Combined writes on SQLite: the statements of one user create or update — the user row, its
//! provisioning-log row and its email rows — sent to the single writer as one multi-statement
//! query with one set of numbered parameters, so the request costs one round trip to the
//! writer's thread instead of four or five. With group commit that round trip is the time the
//! batch lock is held for the request, so it bounds how many writes per second SQLite takes.
//!
//! The statements after the user row's write run only if it wrote: the log row is inserted
//! `WHERE changes() > 0` (the count of the statement just before, the user's insert or update)
//! and returns its `seq`, and the email rows are written only where that log row exists. So a
//! taken userName (the insert does nothing, `ON CONFLICT DO NOTHING`) or a stale version (the
//! update matches no row) writes nothing at all, and the answer is whether a row came back.
//!
//! In a shared transaction whose request has not run a statement yet, the query also opens the
//! request's savepoint first (releasing the previous request's on the way, `savepoint.rs`); a
//! statement that fails stops the query there, and the request's end rolls its savepoint back.
//! PostgreSQL has no multi-statement queries with parameters: there the same writes run one by
//! one (`mod.rs`).

use serde_json::{Value, json};

use super::savepoint::Savepoint;
use super::sqlite;
use super::{StoreError, db_err};
use crate::domain::{LogEntry, UserRecord};

type SqliteTx = sqlx::Transaction<'static, sqlx::Sqlite>;

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
