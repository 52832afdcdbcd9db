//! Delivery of the outbox: the guest emails that directory operations queue (one row per guest
//! of a cancelled appointment, written in the same transaction as the cancellation; see
//! [`crate::domain::notice`]) are rendered, sent and recorded here.
//!
//! - [`render`]: the email a guest gets — a plain-text part and an HTML alternative rendered
//!   from templates, naming the appointment's title, its time in the account's time zone
//!   (`accounts.time_zone`, an IANA name, through `chrono-tz`) and the host; the subject stored
//!   with the row; and a stable `Message-ID` (`<outbox.{id}@{domain}>`), fixed at the row's first
//!   claim, so that a re-send is recognisable as the same message.
//! - [`transport`]: where it goes, with `lettre` (tokio, rustls with the ring provider the rest of
//!   the service uses; no native-tls/OpenSSL): SMTP with STARTTLS, implicit TLS or — for a
//!   relay on loopback — plain text, with optional AUTH; or the file transport, the embedded
//!   default, which writes one readable `.eml` per message under `data/mail/`.
//! - [`worker`]: the delivery worker `serve` runs. It claims due rows in batches under a lease,
//!   sends them one by one, records each result (sent, or a failure with exponential backoff
//!   and jitter, or `dead` after `mail.max_attempts`), and stops between messages on shutdown.
//!
//! Delivery is at-least-once: a claim moves the row's `next_attempt_at` to the end of a lease
//! inside the claiming transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas never
//! claim the same row), so a process killed mid-send leaves the row to be claimed again when the
//! lease runs out. The only duplicate is a message whose send completed but whose result was not
//! yet recorded when the process died; it carries the same Message-ID.
//!
//! Templates: **minijinja**, not askama. The templates are data (`templates/*.txt`, `*.html`,
//! embedded with `include_str!`) rendered from a small context, HTML-escaped automatically by
//! the `.html` name, with one small dependency and no proc-macro build step on top of the build
//! the project already has; askama's compile-time checking buys little for two short templates,
//! whose every variable the unit tests below render (strict undefined: a misspelt variable is
//! an error, not an empty string).

pub mod render;
pub mod transport;
pub mod worker;

pub use render::{Renderer, message_id};
pub use transport::{MailTransport, SendError};
pub use worker::{BatchReport, DeliveryPolicy, DeliveryWorker, WorkerHandle, backoff_delay};

use crate::domain::StoreError;

/// Why the delivery worker could not be set up or could not reach the store.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("mail settings: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
