//! Queries shared by both backends, second part (see `backend.rs` for how it is compiled twice):
//! appointments, the outbox, the provisioning log, sync cycles and retention.
//! Imports and helpers come from `backend.rs` (`use super::backend::*`).

use super::backend::*;

// ---------------------------------------------------------------------------------------------
// Appointments

pub async fn insert_appointment(c: &mut Conn, a: &Appointment) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO appointments (id, account_id, host_user_id, host_user_name, host_display, \
         title, starts_at, ends_at, status, cancelled_at, cancel_reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(a.id.as_str())
    .bind(a.account_id.as_str())
    .bind(a.host_user_id.as_ref().map(|u| u.as_str()))
    .bind(a.host_user_name.as_str())
    .bind(a.host_display.as_str())
    .bind(a.title.as_str())
    .bind(a.starts_at)
    .bind(a.ends_at)
    .bind(a.status.as_str())
    .bind(a.cancelled_at)
    .bind(a.cancel_reason.as_deref())
    .bind(a.starts_at.min(a.cancelled_at.unwrap_or(a.starts_at)))
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    for (i, g) in a.guests.iter().enumerate() {
        sqlx::query(
            "INSERT INTO appointment_guests (appointment_id, position, name, email) VALUES ($1, $2, $3, $4)",
        )
        .bind(a.id.as_str())
        .bind(i64::try_from(i).unwrap_or(i64::MAX))
        .bind(g.name.as_str())
        .bind(g.email.as_str())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

const APPOINTMENT_SELECT: &str = "SELECT a.id, a.account_id, a.host_user_id, a.host_user_name, \
    a.host_display, a.title, a.starts_at, a.ends_at, a.status, a.cancelled_at, a.cancel_reason, \
    ag.name AS guest_name, ag.email AS guest_email \
    FROM appointments a LEFT JOIN appointment_guests ag ON ag.appointment_id = a.id";

/// Folds joined appointment/guest rows (ordered by appointment) into appointments.
fn appointments_from_rows(rows: &[DbRow]) -> Result<Vec<Appointment>, StoreError> {
    let mut out: Vec<Appointment> = Vec::new();
    for row in rows {
        let id: String = row.try_get("id").map_err(db_err)?;
        if out.last().is_none_or(|a| a.id.as_str() != id) {
            let host: Option<String> = row.try_get("host_user_id").map_err(db_err)?;
            let status: String = row.try_get("status").map_err(db_err)?;
            out.push(Appointment {
                id: AppointmentId::from_trusted(id),
                account_id: AccountId::from_trusted(row.try_get("account_id").map_err(db_err)?),
                host_user_id: host.map(UserId::from_trusted),
                host_user_name: row.try_get("host_user_name").map_err(db_err)?,
                host_display: row.try_get("host_display").map_err(db_err)?,
                title: row.try_get("title").map_err(db_err)?,
                starts_at: row.try_get("starts_at").map_err(db_err)?,
                ends_at: row.try_get("ends_at").map_err(db_err)?,
                status: AppointmentStatus::parse(&status)
                    .ok_or_else(|| corrupt("appointment status"))?,
                cancelled_at: row.try_get("cancelled_at").map_err(db_err)?,
                cancel_reason: row.try_get("cancel_reason").map_err(db_err)?,
                guests: Vec::new(),
            });
        }
        let name: Option<String> = row.try_get("guest_name").map_err(db_err)?;
        let email: Option<String> = row.try_get("guest_email").map_err(db_err)?;
        if let (Some(name), Some(email), Some(last)) = (name, email, out.last_mut()) {
            last.guests.push(Guest { name, email });
        }
    }
    Ok(out)
}

pub async fn upcoming_hosted(
    c: &mut Conn,
    account: &AccountId,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<Vec<Appointment>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{APPOINTMENT_SELECT} WHERE a.account_id = $1 AND a.host_user_id = $2 \
         AND a.status = 'scheduled' AND a.starts_at > $3 ORDER BY a.starts_at, a.id, ag.position"
    )))
    .bind(account.as_str())
    .bind(user.as_str())
    .bind(now)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    appointments_from_rows(&rows)
}

pub async fn list_appointments(
    c: &mut Conn,
    account: &AccountId,
) -> Result<Vec<Appointment>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{APPOINTMENT_SELECT} WHERE a.account_id = $1 ORDER BY a.starts_at, a.id, ag.position"
    )))
    .bind(account.as_str())
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    appointments_from_rows(&rows)
}

pub async fn cancel_appointment(
    c: &mut Conn,
    id: &AppointmentId,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE appointments SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3 \
         WHERE id = $1 AND status = 'scheduled'",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(reason)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Outbox and provisioning log

pub async fn enqueue(c: &mut Conn, messages: &[OutboxMessage]) -> Result<(), StoreError> {
    for m in messages {
        sqlx::query(
            "INSERT INTO outbox (id, account_id, kind, idempotency_key, recipient_email, \
             recipient_name, subject, body_text, appointment_id, payload, status, attempts, \
             next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(m.id.as_str())
        .bind(m.account_id.as_str())
        .bind(m.kind.as_str())
        .bind(m.idempotency_key.as_str())
        .bind(m.recipient_email.as_str())
        .bind(m.recipient_name.as_str())
        .bind(m.subject.as_str())
        .bind(m.body_text.as_str())
        .bind(m.appointment_id.as_ref().map(|a| a.as_str()))
        .bind(m.payload.to_string())
        .bind(m.created_at)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

pub async fn list_outbox(c: &mut Conn, account: &AccountId) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, idempotency_key, recipient_email, recipient_name, subject, body_text, \
         appointment_id, status, attempts, created_at, sent_at, last_error \
         FROM outbox WHERE account_id = $1 ORDER BY seq",
    )
    .bind(account.as_str())
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| outbox_row(r, r.try_get("status").map_err(db_err)?))
        .collect()
}

/// An outbox row's columns, with the status the caller shows.
pub(super) fn outbox_row(r: &DbRow, status: String) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.try_get("id").map_err(db_err)?,
        kind: r.try_get("kind").map_err(db_err)?,
        idempotency_key: r.try_get("idempotency_key").map_err(db_err)?,
        recipient_email: r.try_get("recipient_email").map_err(db_err)?,
        recipient_name: r.try_get("recipient_name").map_err(db_err)?,
        subject: r.try_get("subject").map_err(db_err)?,
        body_text: r.try_get("body_text").map_err(db_err)?,
        appointment_id: r.try_get("appointment_id").map_err(db_err)?,
        status,
        attempts: r.try_get("attempts").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        sent_at: r.try_get("sent_at").map_err(db_err)?,
        last_error: r.try_get("last_error").map_err(db_err)?,
    })
}

/// Writes one provisioning-log row, every value bounded (see `crate::domain::clip`).
/// Binds a provisioning-log row's 15 columns (`log_columns_sql!`), from whichever parameter
/// number the statement gives them; `modified` is the row's attribute changes as JSON.
pub(in crate::store) fn bind_log<'q>(q: Query<'q>, e: &'q LogEntry, modified: String) -> Query<'q> {
    q.bind(e.id.as_str())
        .bind(e.account_id.as_str())
        .bind(e.integration_id.as_ref().map(|i| i.as_str()))
        .bind(e.cycle_id.as_deref())
        .bind(e.source.as_str())
        .bind(e.action.as_str())
        .bind(e.status.as_str())
        .bind(e.user_id.as_ref().map(|u| u.as_str()))
        .bind(e.user_name.as_deref())
        .bind(e.source_object_id.as_deref())
        .bind(modified)
        .bind(e.error_code.as_deref())
        .bind(e.error_message.as_deref())
        .bind(e.duration_ms)
        .bind(e.at)
}

/// A log entry as it is stored: clipped to the column limits, with its changes as JSON.
pub(in crate::store) fn stored_log(e: &LogEntry) -> Result<(LogEntry, String), StoreError> {
    let e = e.clipped();
    let modified =
        serde_json::to_string(&e.modified).map_err(|err| StoreError::Database(Box::new(err)))?;
    Ok((e, modified))
}

pub async fn write_log(c: &mut Conn, e: &LogEntry) -> Result<(), StoreError> {
    let (e, modified) = stored_log(e)?;
    bind_log(
        sqlx::query(concat!(
            log_columns_sql!(),
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )),
        &e,
        modified,
    )
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn list_log(
    c: &mut Conn,
    account: &AccountId,
    q: &LogQuery,
) -> Result<Vec<LogRow>, StoreError> {
    let mut sql = String::from(
        "SELECT l.at, i.name AS integration, l.cycle_id, l.source, l.action, l.status, l.user_id, \
         l.user_name, l.source_object_id, l.modified, l.error_code, l.error_message, l.duration_ms \
         FROM provisioning_log l LEFT JOIN integrations i ON i.id = l.integration_id \
         WHERE l.account_id = $1",
    );
    let mut n = 2;
    let mut text_params: Vec<String> = Vec::new();
    for (col, val) in [
        ("i.name", q.integration.as_ref()),
        (
            "lower(l.user_name)",
            q.user_name.as_deref().map(fold_key).as_ref(),
        ),
        ("l.cycle_id", q.cycle_id.as_ref()),
        ("l.status", q.status.as_ref()),
    ] {
        if let Some(v) = val {
            sql.push_str(&format!(" AND {col} = ${n}"));
            text_params.push(v.clone());
            n += 1;
        }
    }
    if q.since.is_some() {
        sql.push_str(&format!(" AND l.at >= ${n}"));
    }
    sql.push_str(&format!(
        " ORDER BY l.seq DESC LIMIT {}",
        q.limit.clamp(1, 100_000)
    ));
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(account.as_str());
    for p in &text_params {
        query = query.bind(p.as_str());
    }
    if let Some(since) = q.since {
        query = query.bind(since);
    }
    let rows = query.fetch_all(&mut *c).await.map_err(db_err)?;
    rows.iter().map(log_row).collect()
}

/// One provisioning-log row (the CLI's `logs` and the console's log page read the same columns).
pub(super) fn log_row(r: &DbRow) -> Result<LogRow, StoreError> {
    let modified: String = r.try_get("modified").map_err(db_err)?;
    Ok(LogRow {
        at: r.try_get("at").map_err(db_err)?,
        integration: r.try_get("integration").map_err(db_err)?,
        cycle_id: r.try_get("cycle_id").map_err(db_err)?,
        source: r.try_get("source").map_err(db_err)?,
        action: r.try_get("action").map_err(db_err)?,
        status: r.try_get("status").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        user_name: r.try_get("user_name").map_err(db_err)?,
        source_object_id: r.try_get("source_object_id").map_err(db_err)?,
        modified: serde_json::from_str(&modified).unwrap_or(Value::Null),
        error_code: r.try_get("error_code").map_err(db_err)?,
        error_message: r.try_get("error_message").map_err(db_err)?,
        duration_ms: r.try_get("duration_ms").map_err(db_err)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Sync cycles

const CYCLE_COLS: &str = "s.id, s.integration_id, i.name AS integration, s.trigger, s.dry_run, \
    s.outcome, s.counts, s.graph_requests, s.throttled, s.error_code, s.error_message, \
    s.started_at, s.finished_at, s.duration_ms, s.mode, s.full_reason";

fn cycle_from_row(r: &DbRow) -> Result<CycleRow, StoreError> {
    let counts: String = r.try_get("counts").map_err(db_err)?;
    Ok(CycleRow {
        id: r.try_get("id").map_err(db_err)?,
        integration_id: r.try_get("integration_id").map_err(db_err)?,
        integration: r.try_get("integration").map_err(db_err)?,
        trigger: {
            let word: String = r.try_get("trigger").map_err(db_err)?;
            Trigger::parse(&word).ok_or_else(|| corrupt("cycle trigger"))?
        },
        dry_run: r.try_get("dry_run").map_err(db_err)?,
        outcome: {
            let word: String = r.try_get("outcome").map_err(db_err)?;
            CycleStatus::parse(&word).ok_or_else(|| corrupt("cycle outcome"))?
        },
        counts: serde_json::from_str(&counts).map_err(|_| corrupt("cycle counts"))?,
        graph_requests: r.try_get("graph_requests").map_err(db_err)?,
        throttled: r.try_get("throttled").map_err(db_err)?,
        error_code: r.try_get("error_code").map_err(db_err)?,
        error_message: r.try_get("error_message").map_err(db_err)?,
        started_at: r.try_get("started_at").map_err(db_err)?,
        finished_at: r.try_get("finished_at").map_err(db_err)?,
        duration_ms: r.try_get("duration_ms").map_err(db_err)?,
        mode: r.try_get("mode").map_err(db_err)?,
        full_reason: r.try_get("full_reason").map_err(db_err)?,
    })
}

/// Records a cycle as it starts; a cycle of the integration still marked running (its process
/// died) is marked interrupted first.
pub async fn start_cycle(
    c: &mut Conn,
    account: &AccountId,
    cycle: &CycleRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_cycles SET outcome = 'interrupted', finished_at = $1 \
         WHERE integration_id = $2 AND outcome = 'running'",
    )
    .bind(cycle.started_at)
    .bind(cycle.integration_id.as_str())
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO sync_cycles (id, account_id, integration_id, trigger, dry_run, outcome, \
         counts, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(cycle.id.as_str())
    .bind(account.as_str())
    .bind(cycle.integration_id.as_str())
    .bind(cycle.trigger.as_str())
    .bind(cycle.dry_run)
    .bind(cycle.outcome.as_str())
    .bind(cycle.counts.to_string())
    .bind(cycle.started_at)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Records how a cycle ended.
pub async fn finish_cycle(c: &mut Conn, cycle: &CycleRow) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_cycles SET outcome = $1, counts = $2, graph_requests = $3, throttled = $4, \
         error_code = $5, error_message = $6, finished_at = $7, duration_ms = $8, mode = $9, \
         full_reason = $10 WHERE id = $11",
    )
    .bind(cycle.outcome.as_str())
    .bind(cycle.counts.to_string())
    .bind(cycle.graph_requests)
    .bind(cycle.throttled)
    .bind(cycle.error_code.as_deref())
    .bind(cycle.error_message.as_deref())
    .bind(cycle.finished_at)
    .bind(cycle.duration_ms)
    .bind(cycle.mode.as_deref())
    .bind(cycle.full_reason.as_deref())
    .bind(cycle.id.as_str())
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The latest cycles, newest first: of one integration, or of every integration of `account`.
pub async fn recent_cycles(
    c: &mut Conn,
    account: &AccountId,
    integration: Option<&IntegrationId>,
    limit: i64,
) -> Result<Vec<CycleRow>, StoreError> {
    let limit = limit.clamp(1, 10_000);
    let rows = match integration {
        Some(id) => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {CYCLE_COLS} FROM sync_cycles s JOIN integrations i ON i.id = s.integration_id \
                 WHERE s.account_id = $1 AND s.integration_id = $2 ORDER BY s.seq DESC LIMIT {limit}"
            )))
            .bind(account.as_str())
            .bind(id.as_str())
            .fetch_all(&mut *c)
            .await
        }
        None => {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {CYCLE_COLS} FROM sync_cycles s JOIN integrations i ON i.id = s.integration_id \
                 WHERE s.account_id = $1 ORDER BY s.seq DESC LIMIT {limit}"
            )))
            .bind(account.as_str())
            .fetch_all(&mut *c)
            .await
        }
    }
    .map_err(db_err)?;
    rows.iter().map(cycle_from_row).collect()
}

/// Deletes provisioning-log rows and finished cycles older than `cutoff`; returns how many of
/// each.
pub async fn purge_before(c: &mut Conn, cutoff: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
    let logs = sqlx::query("DELETE FROM provisioning_log WHERE at < $1")
        .bind(cutoff)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
    let cycles =
        sqlx::query("DELETE FROM sync_cycles WHERE started_at < $1 AND outcome <> 'running'")
            .bind(cutoff)
            .execute(&mut *c)
            .await
            .map_err(db_err)?
            .rows_affected();
    Ok((logs, cycles))
}

/// `action:object_id:code` of the skip and staged-delete rows an integration logged since
/// `since` (a cycle logs such a row once, not every cycle).
pub async fn logged_skip_keys(
    c: &mut Conn,
    integration: &IntegrationId,
    since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT DISTINCT action, source_object_id, error_code FROM provisioning_log \
         WHERE integration_id = $1 AND at >= $2 AND action IN ('skip', 'staged_delete')",
    )
    .bind(integration.as_str())
    .bind(since)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let action: String = r.try_get("action").map_err(db_err)?;
            let object: Option<String> = r.try_get("source_object_id").map_err(db_err)?;
            let code: Option<String> = r.try_get("error_code").map_err(db_err)?;
            Ok(skip_key(
                &action,
                object.as_deref().unwrap_or(""),
                code.as_deref().unwrap_or(""),
            ))
        })
        .collect()
}
