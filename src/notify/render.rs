//! The email a claimed outbox row becomes: a `multipart/alternative` message with a plain-text
//! part and an HTML part rendered from the templates in `templates/` (minijinja, see the module
//! docs of [`crate::notify`]), the subject stored with the row, the guest as `To`, the
//! configured sender as `From`, and the row's stable Message-ID.
//!
//! Times are shown in the account's time zone (`accounts.time_zone`, an IANA name such as
//! `Europe/Berlin`); an unknown name falls back to UTC. A row of an unknown kind, or whose payload
//! lacks the appointment, is sent as the plain text stored with it. Both parts are
//! quoted-printable, so a `.eml` file stays readable in a text editor.
//!
//! Names and titles are stripped of control characters here ([`strip_controls`]) even though
//! every entrance refuses them: a row written before that check must not forge a header. A
//! message that still cannot be built — even one whose building panics — is a permanent
//! [`RenderError`], so the worker parks it as `dead` with the reason and goes on.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use minijinja::{Environment, UndefinedBehavior, context};
use serde::Deserialize;

use crate::domain::notice::APPOINTMENT_CANCELLED;
use crate::domain::text::strip_controls;
use crate::store::ClaimedMessage;

const CANCELLED_TXT: &str = "appointment_cancelled.txt";
const CANCELLED_HTML: &str = "appointment_cancelled.html";

/// The Message-ID of outbox row `outbox_id`: the same on every attempt, so a re-send is
/// recognisable. The store fixes it at the row's first claim with the same format.
pub fn message_id(outbox_id: &str, domain: &str) -> String {
    format!("<outbox.{outbox_id}@{domain}>")
}

/// A message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The recipient address cannot be written into a message; no retry will change that.
    #[error("recipient {0:?} is not a usable email address: {1}")]
    Recipient(String, String),
    /// A template failed (a bug, fixed by a deploy: the row is retried).
    #[error("rendering the {0} email failed: {1}")]
    Template(String, String),
    #[error("building the message failed: {0}")]
    Build(String),
    /// Building the message panicked (a bug, or input the checks missed); retrying the same row
    /// would panic again.
    #[error("building the message failed unexpectedly: {0}")]
    Panicked(String),
}

impl RenderError {
    /// No later attempt can succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Recipient(..) | Self::Panicked(..))
    }
}

/// The two bodies of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bodies {
    pub text: String,
    pub html: Option<String>,
}

/// What a cancellation row's payload says about its appointment.
#[derive(Debug, Deserialize)]
struct CancelledPayload {
    title: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    host_display: String,
    #[serde(default)]
    guest_name: String,
}

/// Renders claimed rows into messages. Build one per worker; it holds the parsed templates.
pub struct Renderer {
    env: Environment<'static>,
    from: Mailbox,
}

impl Renderer {
    pub fn new(from: Mailbox) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in [
            (
                CANCELLED_TXT,
                include_str!("templates/appointment_cancelled.txt"),
            ),
            (
                CANCELLED_HTML,
                include_str!("templates/appointment_cancelled.html"),
            ),
        ] {
            // The templates are compiled in; one that does not parse fails every unit test.
            if let Err(e) = env.add_template(name, source) {
                panic!("template {name} does not parse: {e}");
            }
        }
        Self { env, from }
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The text and HTML bodies of `msg`.
    pub fn bodies(&self, msg: &ClaimedMessage) -> Result<Bodies, RenderError> {
        let payload = (msg.kind == APPOINTMENT_CANCELLED)
            .then(|| serde_json::from_value::<CancelledPayload>(msg.payload.clone()).ok())
            .flatten();
        let Some(p) = payload else {
            return Ok(Bodies {
                text: msg.body_text.clone(),
                html: None,
            });
        };
        let guest_name = if p.guest_name.trim().is_empty() {
            strip_controls(&msg.recipient_name)
        } else {
            strip_controls(&p.guest_name)
        };
        let ctx = context! {
            guest_name => guest_name,
            title => strip_controls(&p.title),
            host => strip_controls(&p.host_display),
            when => format_when(p.starts_at, p.ends_at, &msg.time_zone),
            subject => strip_controls(&msg.subject),
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| RenderError::Template(msg.kind.clone(), e.to_string()))
        };
        let mut text = render(CANCELLED_TXT)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(Bodies {
            text,
            html: Some(render(CANCELLED_HTML)?),
        })
    }

    /// The complete message for `msg`, dated `date`. Never panics: a panic while building is
    /// [`RenderError::Panicked`].
    pub fn message(
        &self,
        msg: &ClaimedMessage,
        date: DateTime<Utc>,
    ) -> Result<Message, RenderError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build(msg, date)))
            .unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Err(RenderError::Panicked(text.chars().take(300).collect()))
            })
    }

    fn build(&self, msg: &ClaimedMessage, date: DateTime<Utc>) -> Result<Message, RenderError> {
        let address =
            msg.recipient_email
                .trim()
                .parse()
                .map_err(|e: lettre::address::AddressError| {
                    RenderError::Recipient(msg.recipient_email.clone(), e.to_string())
                })?;
        let name = strip_controls(&msg.recipient_name);
        let to = Mailbox::new((!name.is_empty()).then_some(name), address);
        let bodies = self.bodies(msg)?;
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(bodies.text);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(strip_controls(&msg.subject))
            .message_id(Some(msg.message_id.clone()))
            .date(SystemTime::from(date));
        let built = match bodies.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .header(ContentTransferEncoding::QuotedPrintable)
                        .body(html),
                ),
            ),
            None => builder.singlepart(text),
        };
        built.map_err(|e| RenderError::Build(e.to_string()))
    }
}

/// The appointment's time as a guest reads it, in `time_zone` (IANA; unknown: UTC), e.g.
/// `Sunday, 29 November 2026, 13:00 – 14:00 CET (Europe/Berlin)`.
pub fn format_when(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, time_zone: &str) -> String {
    let tz: Tz = time_zone.trim().parse().unwrap_or_else(|_| {
        tracing::warn!(time_zone, "unknown account time zone; showing times in UTC");
        Tz::UTC
    });
    let start = starts_at.with_timezone(&tz);
    let end = ends_at.with_timezone(&tz);
    let zone = if matches!(tz, Tz::UTC | Tz::Etc__UTC) {
        "UTC".to_owned()
    } else {
        format!("{} ({})", end.format("%Z"), tz.name())
    };
    let day = "%A, %-d %B %Y, %H:%M";
    let end_text = if start.date_naive() == end.date_naive() {
        end.format("%H:%M").to_string()
    } else {
        end.format(day).to_string()
    };
    format!("{} – {end_text} {zone}", start.format(day))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::domain::AccountId;

    fn claimed(title: &str, time_zone: &str) -> ClaimedMessage {
        let starts = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        ClaimedMessage {
            id: "0b7d7b1e-1111-4222-8333-944444444444".to_owned(),
            account_id: AccountId::from_trusted("acc".to_owned()),
            kind: APPOINTMENT_CANCELLED.to_owned(),
            recipient_email: "vera@example.org".to_owned(),
            recipient_name: "Vera Visitor".to_owned(),
            subject: format!("Cancelled: {title} on 29 November 2026"),
            body_text: "stored body".to_owned(),
            payload: json!({
                "title": title,
                "starts_at": starts,
                "ends_at": starts + chrono::TimeDelta::hours(1),
                "host_display": "Hanna Host",
                "guest_name": "Vera Visitor",
                "guest_email": "vera@example.org",
            }),
            attempts: 1,
            message_id: message_id("0b7d7b1e-1111-4222-8333-944444444444", "mail.example.com"),
            time_zone: time_zone.to_owned(),
        }
    }

    fn renderer() -> Renderer {
        Renderer::new("essentry <no-reply@example.com>".parse().unwrap())
    }

    #[test]
    fn both_parts_name_the_title_the_local_time_and_the_host() {
        let b = renderer()
            .bodies(&claimed("Quarterly review", "Europe/Berlin"))
            .unwrap();
        let when = "Sunday, 29 November 2026, 13:00 – 14:00 CET (Europe/Berlin)";
        assert!(b.text.starts_with("Hello Vera Visitor,\n\n"), "{}", b.text);
        assert!(
            b.text.contains("\"Quarterly review\" with Hanna Host on"),
            "{}",
            b.text
        );
        assert!(b.text.contains(when), "{}", b.text);
        assert!(b.text.ends_with("-- essentry\n"), "{:?}", b.text);
        let html = b.html.unwrap();
        assert!(html.contains("<strong>Quarterly review</strong>"), "{html}");
        // minijinja escapes `/` too (valid HTML; a browser shows "Europe/Berlin").
        let when_html = when.replace('/', "&#x2f;");
        assert!(
            html.contains(&when_html) && html.contains("Hanna Host"),
            "{html}"
        );
        assert!(html.contains("<title>Cancelled: Quarterly review on 29 November 2026</title>"));
    }

    #[test]
    fn html_escapes_what_users_typed_and_text_does_not() {
        let b = renderer()
            .bodies(&claimed("<script>alert(1)</script> & co", "UTC"))
            .unwrap();
        let html = b.html.unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; co"),
            "{html}"
        );
        assert!(
            b.text.contains("\"<script>alert(1)</script> & co\""),
            "{}",
            b.text
        );
        assert!(b.text.contains("12:00 – 13:00 UTC"), "{}", b.text);
    }

    #[test]
    fn times_follow_the_zone_and_its_daylight_saving() {
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 22, 30, 0).unwrap();
        assert_eq!(
            format_when(
                summer,
                summer + chrono::TimeDelta::hours(2),
                "America/New_York"
            ),
            "Wednesday, 1 July 2026, 18:30 – 20:30 EDT (America/New_York)"
        );
        assert_eq!(
            format_when(
                summer,
                summer + chrono::TimeDelta::hours(2),
                "Europe/Berlin"
            ),
            "Thursday, 2 July 2026, 00:30 – 02:30 CEST (Europe/Berlin)"
        );
        assert_eq!(
            format_when(summer, summer + chrono::TimeDelta::hours(2), "Not/AZone"),
            "Wednesday, 1 July 2026, 22:30 – Thursday, 2 July 2026, 00:30 UTC"
        );
    }

    #[test]
    fn the_message_has_both_parts_the_subject_and_the_stable_message_id() {
        let msg = claimed("Quarterly review", "Europe/Berlin");
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let raw = String::from_utf8(renderer().message(&msg, at).unwrap().formatted()).unwrap();
        assert!(
            raw.contains(
                "Message-ID: <outbox.0b7d7b1e-1111-4222-8333-944444444444@mail.example.com>"
            ),
            "{raw}"
        );
        assert!(
            raw.contains("Subject: Cancelled: Quarterly review on 29 November 2026"),
            "{raw}"
        );
        assert!(
            raw.contains("To: \"Vera Visitor\" <vera@example.org>"),
            "{raw}"
        );
        assert!(
            raw.contains("From: essentry <no-reply@example.com>"),
            "{raw}"
        );
        assert!(
            raw.contains("Date: Sat, 28 Nov 2026 12:00:00 +0000"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("Content-Type: text/plain; charset=utf-8"),
            "{raw}"
        );
        assert!(
            raw.contains("Content-Type: text/html; charset=utf-8"),
            "{raw}"
        );
        assert!(
            raw.contains("Hello Vera Visitor,"),
            "readable as text: {raw}"
        );
    }

    #[test]
    fn control_characters_in_stored_rows_are_stripped_and_forge_no_header() {
        let evil = "Evil\r\nBcc: x@evil.example";
        let mut msg = claimed("Review\r\nX-Injected: 1", "UTC");
        msg.recipient_name = evil.to_owned();
        msg.subject = "Cancelled: Review\r\nX-Injected: 1 on 29 November 2026".to_owned();
        msg.payload["guest_name"] = json!(evil);
        msg.payload["host_display"] = json!("Hanna\nHost");
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let raw = String::from_utf8(renderer().message(&msg, at).unwrap().formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Injected:")),
            "{headers}"
        );
        use mailparse::MailHeaderMap;
        let parsed = mailparse::parse_mail(raw.as_bytes()).unwrap();
        let to = parsed.headers.get_first_value("To").unwrap();
        assert!(to.contains("Evil Bcc: x@evil.example"), "{to}");
        assert!(to.ends_with("<vera@example.org>"), "{to}");
        assert!(raw.contains("Hello Evil Bcc: x@evil.example,"), "{raw}");
        assert!(raw.contains("with Hanna Host on"), "{raw}");
    }

    #[test]
    fn unknown_kinds_are_sent_as_the_stored_text_and_bad_addresses_are_permanent() {
        let mut msg = claimed("Quarterly review", "UTC");
        msg.kind = "something_else".to_owned();
        let b = renderer().bodies(&msg).unwrap();
        assert_eq!(
            b,
            Bodies {
                text: "stored body".to_owned(),
                html: None
            }
        );
        msg.recipient_email = "not an address".to_owned();
        let err = renderer().message(&msg, Utc::now()).unwrap_err();
        assert!(err.is_permanent(), "{err}");
    }
}
