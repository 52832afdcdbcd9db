//! The cancellation notice a guest receives when their host is deprovisioned: composed here, as
//! pure data, and written to the outbox by the directory operation that cancels the appointment.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::model::{Appointment, Guest, OutboxMessage};

/// The outbox `kind` of a guest cancellation notice.
pub const APPOINTMENT_CANCELLED: &str = "appointment_cancelled";

/// The key that makes enqueueing the same notice twice a no-op: one message per guest address per
/// cancelled appointment.
pub fn cancellation_key(appointment: &Appointment, guest: &Guest) -> String {
    format!(
        "{APPOINTMENT_CANCELLED}:{}:{}",
        appointment.id,
        guest.email.trim().to_lowercase()
    )
}

/// One message per distinct guest address of `appointment`, which has just been cancelled.
pub fn cancellation_messages(
    appointment: &Appointment,
    now: DateTime<Utc>,
    mut new_id: impl FnMut() -> String,
) -> Vec<OutboxMessage> {
    let mut seen = std::collections::HashSet::new();
    appointment
        .guests
        .iter()
        .filter(|g| seen.insert(g.email.trim().to_lowercase()))
        .map(|guest| {
            let when = format!(
                "{} – {} UTC",
                appointment.starts_at.format("%A, %d %B %Y, %H:%M"),
                appointment.ends_at.format("%H:%M")
            );
            let greeting = if guest.name.trim().is_empty() {
                "Hello,".to_owned()
            } else {
                format!("Hello {},", guest.name.trim())
            };
            let body_text = format!(
                "{greeting}\n\n\
                 your appointment \"{title}\" with {host} on {when} has been cancelled, because \
                 {host} no longer has an essentry account.\n\n\
                 There is no need to come to reception for it. If you still need to meet, please \
                 contact your host or their company directly.\n\n\
                 -- essentry\n",
                title = appointment.title,
                host = appointment.host_display,
            );
            OutboxMessage {
                id: new_id(),
                account_id: appointment.account_id.clone(),
                kind: APPOINTMENT_CANCELLED.to_owned(),
                idempotency_key: cancellation_key(appointment, guest),
                recipient_email: guest.email.trim().to_owned(),
                recipient_name: guest.name.trim().to_owned(),
                subject: format!(
                    "Cancelled: {} on {}",
                    appointment.title,
                    appointment.starts_at.format("%d %B %Y")
                ),
                body_text,
                appointment_id: Some(appointment.id.clone()),
                payload: json!({
                    "appointment_id": appointment.id,
                    "title": appointment.title,
                    "starts_at": appointment.starts_at,
                    "ends_at": appointment.ends_at,
                    "host_user_name": appointment.host_user_name,
                    "host_display": appointment.host_display,
                    "guest_name": guest.name,
                    "guest_email": guest.email,
                }),
                created_at: now,
            }
        })
        .collect()
}
