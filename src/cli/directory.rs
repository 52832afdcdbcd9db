//! The directory commands: `users list`, `appointments create|list` (and the booking the demo
//! shares) and `outbox [--dead]` / `outbox retry ID`.

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::*;
use crate::domain::text;

pub(super) async fn users_list(env: Env, common: Common) -> Result<()> {
    let account = env.account(&common).await?;
    let mut users = Vec::new();
    let page = 1000;
    loop {
        let (batch, _) = env
            .store
            .list_users(&account, None, users.len() as i64, page, false)
            .await?;
        let done = (batch.len() as i64) < page;
        users.extend(batch);
        if done {
            break;
        }
    }
    if common.json {
        let out: Vec<_> = users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "userName": u.attrs.user_name.as_str(),
                    "givenName": u.attrs.given_name,
                    "familyName": u.attrs.family_name,
                    "displayName": u.attrs.display_name,
                    "externalId": u.attrs.external_id,
                    "active": u.attrs.active,
                    "source": u.source.as_str(),
                    "createdAt": u.created_at,
                    "updatedAt": u.updated_at,
                })
            })
            .collect();
        return print_json(&out);
    }
    if users.is_empty() {
        println!("no users");
    }
    for u in users {
        let name = [
            u.attrs.given_name.as_deref(),
            u.attrs.family_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        println!(
            "{:<36}  {:<40} {:<28} {:<5} {}",
            u.id,
            u.attrs.user_name.as_str(),
            name,
            u.source.as_str(),
            u.attrs.external_id.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// `"Name <email>"` or a bare email.
pub fn parse_guest(raw: &str) -> Result<Guest> {
    let raw = raw.trim();
    let (name, email) = match (raw.find('<'), raw.strip_suffix('>')) {
        (Some(i), Some(inner)) => (raw[..i].trim(), &inner[i + 1..]),
        _ => ("", raw),
    };
    let email =
        UserName::parse(email).map_err(|_| anyhow!("guest {raw:?} is not an email address"))?;
    let name = name.trim_matches('"');
    text::check_display_text("the guest name", name)
        .map_err(|e| anyhow!("--guest {raw:?}: {e}"))?;
    Ok(Guest {
        name: name.to_owned(),
        email: email.as_str().to_owned(),
    })
}

/// Books an appointment hosted by `host` (who must exist) with `guests`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn book_appointment(
    store: &Store,
    account: &AccountId,
    account_name: &str,
    host_name: &UserName,
    title: &str,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    guests: Vec<Guest>,
) -> Result<Appointment> {
    if title.trim().is_empty() {
        bail!("--title must not be empty");
    }
    text::check_display_text("--title", title)?;
    let host = store
        .user_by_name(account, host_name)
        .await?
        .ok_or_else(|| anyhow!("no user {host_name} in account {account_name:?}"))?;
    let ends_at = ends_at.unwrap_or(starts_at + TimeDelta::hours(1));
    if ends_at <= starts_at {
        bail!("--ends-at must be after --starts-at");
    }
    let display = [
        host.attrs.given_name.as_deref(),
        host.attrs.family_name.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    // The host's name goes into every guest's email; one stored before names were checked is
    // refused here rather than sent.
    text::check_display_text("the host's name", &display)
        .map_err(|e| anyhow!("{e}: fix the name of {host_name} first"))?;
    let appointment = Appointment {
        id: AppointmentId::generate(),
        account_id: account.clone(),
        host_user_id: Some(host.id.clone()),
        host_user_name: host.attrs.user_name.as_str().to_owned(),
        host_display: if display.is_empty() {
            host.attrs.user_name.as_str().to_owned()
        } else {
            display
        },
        title: title.trim().to_owned(),
        starts_at,
        ends_at,
        status: AppointmentStatus::Scheduled,
        cancelled_at: None,
        cancel_reason: None,
        guests,
    };
    let mut tx = store.begin().await?;
    tx.insert_appointment(&appointment).await?;
    tx.commit().await?;
    Ok(appointment)
}

pub(super) async fn appointments(env: Env, cmd: AppointmentsCmd) -> Result<()> {
    match cmd {
        AppointmentsCmd::Create {
            host,
            starts_at,
            ends_at,
            title,
            guests,
            common,
        } => {
            let account = env.account(&common).await?;
            let host_name = UserName::parse(&host).map_err(|e| anyhow!("--host: {e}"))?;
            let guests = guests
                .iter()
                .map(|g| parse_guest(g))
                .collect::<Result<Vec<_>>>()?;
            let appointment = book_appointment(
                &env.store,
                &account,
                env.account_name(&common),
                &host_name,
                &title,
                starts_at,
                ends_at,
                guests,
            )
            .await?;
            if common.json {
                return print_json(&appointment);
            }
            println!(
                "appointment {} created: {:?} hosted by {} at {} with {} guest(s)",
                appointment.id,
                appointment.title,
                appointment.host_user_name,
                appointment.starts_at.to_rfc3339(),
                appointment.guests.len()
            );
            Ok(())
        }
        AppointmentsCmd::List { common } => {
            let account = env.account(&common).await?;
            let list = env.store.list_appointments(&account).await?;
            if common.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no appointments");
            }
            for a in list {
                let guests = a
                    .guests
                    .iter()
                    .map(|g| g.email.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "{}  {:<9}  {}  {:<30} host {:<30} guests {}",
                    a.id,
                    a.status.as_str(),
                    a.starts_at.format("%Y-%m-%d %H:%M"),
                    a.title,
                    a.host_user_name,
                    guests
                );
            }
            Ok(())
        }
    }
}

pub(super) async fn outbox(
    env: Env,
    action: Option<OutboxCmd>,
    dead: bool,
    common: Common,
) -> Result<()> {
    if let Some(OutboxCmd::Retry { id, common }) = action {
        let account = env.account(&common).await?;
        let id = id.trim();
        let outcome = env
            .store
            .retry_outbox(&account, id, env.clock.now())
            .await?;
        if common.json && outcome == crate::store::RetryOutcome::Requeued {
            return print_json(&json!({"id": id, "outcome": outcome}));
        }
        return match outcome {
            crate::store::RetryOutcome::Requeued => {
                println!(
                    "message {id} is pending again and will be sent with the next delivery round"
                );
                Ok(())
            }
            crate::store::RetryOutcome::NotFound => {
                bail!(
                    "no outbox message {id:?} in account {:?}",
                    env.account_name(&common)
                )
            }
            crate::store::RetryOutcome::AlreadySent => bail!("message {id} was already sent"),
            crate::store::RetryOutcome::InFlight => {
                bail!("message {id} is being sent right now; look again in a moment")
            }
        };
    }
    let account = env.account(&common).await?;
    let rows = env
        .store
        .list_outbox_entries(&account, dead, env.clock.now())
        .await?;
    if common.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!(
            "{}",
            if dead {
                "no dead messages"
            } else {
                "the outbox is empty"
            }
        );
    }
    for m in rows {
        let state = if m.in_flight {
            "sending"
        } else {
            m.row.status.as_str()
        };
        println!(
            "{}  {}  {:<7} {:>2} attempt(s)  to {:<32} {}",
            m.row.id,
            m.row.created_at.format("%Y-%m-%d %H:%M:%S"),
            state,
            m.row.attempts,
            m.row.recipient_email,
            m.row.subject
        );
        if let Some(at) = m.row.sent_at {
            println!("      sent {}", at.format("%Y-%m-%d %H:%M:%S"));
        } else if m.row.status == "pending" && m.row.attempts > 0 && !m.in_flight {
            println!(
                "      next attempt {}",
                m.next_attempt_at.format("%Y-%m-%d %H:%M:%S")
            );
        }
        if let Some(e) = &m.row.last_error {
            println!("      last error: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_parse_with_and_without_names() {
        let g = parse_guest("Vera Visitor <vera@example.org>").unwrap();
        assert_eq!(
            (g.name.as_str(), g.email.as_str()),
            ("Vera Visitor", "vera@example.org")
        );
        let g = parse_guest("bob@example.org").unwrap();
        assert_eq!((g.name.as_str(), g.email.as_str()), ("", "bob@example.org"));
        assert!(parse_guest("not an email").is_err());
        let err = parse_guest("Evil\r\nBcc: x@evil.example <s@x.example>").unwrap_err();
        assert!(
            err.to_string()
                .contains("the guest name must not contain control characters"),
            "{err}"
        );
    }
}
