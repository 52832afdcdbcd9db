//! Where rendered emails go: an SMTP relay, through `lettre`'s SMTP client (tokio, rustls with
//! the ring provider), or files.
//!
//! - **SMTP**: `starttls` connects in plain text and requires the STARTTLS upgrade before any
//!   credentials or mail are sent (no downgrade), `implicit` speaks TLS from the first byte
//!   (submissions, port 465), `none` is plain text, meant for a relay on loopback (and the tests).
//!   Certificates are checked against the webpki roots. Username and password are optional (both
//!   or neither; AUTH PLAIN or LOGIN, as the relay offers). One connection is kept open and
//!   reused between messages (checked with NOOP after an idle spell, replaced when it broke).
//!
//!   The connection is ours, not lettre's `AsyncSmtpTransport`, for one reason: that transport
//!   leaves Nagle's algorithm on, and lettre writes a message's body and its terminating
//!   `CRLF.CRLF` as two writes, so every message waits for the relay's delayed ACK (40 ms on
//!   Linux) — about 25 messages/s per connection. With `TCP_NODELAY` a message costs its round
//!   trips. lettre still speaks the protocol (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA).
//! - **File**: one `<outbox id>.eml` per message in a folder (`data/mail/` by default), written
//!   to a temporary name and renamed, so a reader never sees half a file and a re-send replaces
//!   the earlier file instead of adding a second one (lettre's own file transport names files by
//!   a random UUID, which would).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::NotifyError;
use crate::config::{MailSettings, MailTransportKind, SmtpTls};

/// A failed send. Every failure is retried until `mail.max_attempts`; the text (with its causes)
/// is stored as the row's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

impl SendError {
    fn chain(e: &dyn std::error::Error) -> Self {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = s.source();
        }
        Self(text)
    }
}

/// A reused connection that sat idle this long is checked with NOOP before the next message.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// A configured transport.
#[derive(Clone)]
pub enum MailTransport {
    Smtp(Arc<SmtpRelay>),
    File { dir: PathBuf },
}

impl std::fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An SMTP relay and the one connection kept open to it.
pub struct SmtpRelay {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    /// For implicit TLS (built once: it holds the root store).
    tls_connector: Option<tokio_rustls::TlsConnector>,
    conn: Mutex<Option<(AsyncSmtpConnection, tokio::time::Instant)>>,
}

impl MailTransport {
    /// The transport `settings` describe (nothing is connected yet).
    pub fn from_settings(settings: &MailSettings) -> Result<Self, NotifyError> {
        match settings.transport {
            MailTransportKind::File => Ok(Self::file(settings.file_dir.clone())),
            MailTransportKind::Smtp => Ok(Self::Smtp(Arc::new(SmtpRelay::new(settings)?))),
        }
    }

    pub fn file(dir: impl Into<PathBuf>) -> Self {
        Self::File { dir: dir.into() }
    }

    /// For logs: where mail goes.
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp(relay) => relay.describe(),
            Self::File { dir } => format!("files in {}", dir.display()),
        }
    }

    /// Sends `message`, the rendering of outbox row `outbox_id`.
    pub async fn send(&self, outbox_id: &str, message: Message) -> Result<(), SendError> {
        match self {
            Self::Smtp(relay) => relay.send(&message).await,
            Self::File { dir } => write_eml(dir, outbox_id, &message.formatted())
                .await
                .map_err(|e| SendError(format!("writing to {}: {e}", dir.display()))),
        }
    }

    /// Says goodbye to the relay (QUIT), if a connection is open.
    pub async fn close(&self) {
        if let Self::Smtp(relay) = self {
            relay.close().await;
        }
    }
}

impl SmtpRelay {
    fn new(s: &MailSettings) -> Result<Self, NotifyError> {
        let host = s.smtp_host.trim().to_owned();
        if host.is_empty() {
            return Err(NotifyError::Config("mail.smtp_host is empty".to_owned()));
        }
        let default_port = match s.smtp_tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        };
        if s.smtp_tls == SmtpTls::None && !is_loopback(&host) {
            tracing::warn!(
                host,
                "mail.smtp_tls = \"none\" sends mail (and any password) in plain text to a host that is not loopback"
            );
        }
        let tls_connector = (s.smtp_tls == SmtpTls::Implicit)
            .then(|| {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .map(|config| tokio_rustls::TlsConnector::from(Arc::new(config)))
                .map_err(|e| NotifyError::Config(format!("TLS for mail.smtp_host {host:?}: {e}")))
            })
            .transpose()?;
        let credentials = match (&s.smtp_username, &s.smtp_password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(NotifyError::Config(
                    "mail.smtp_username and mail.smtp_password go together".to_owned(),
                ));
            }
        };
        Ok(Self {
            port: s.smtp_port.unwrap_or(default_port),
            host,
            tls: s.smtp_tls,
            credentials,
            timeout: Duration::from_secs(s.smtp_timeout_secs.max(1)),
            hello: ClientId::default(),
            tls_connector,
            conn: Mutex::new(None),
        })
    }

    fn describe(&self) -> String {
        let tls = match self.tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit TLS",
            SmtpTls::None => "plain text",
        };
        format!("smtp {}:{} ({tls})", self.host, self.port)
    }

    /// A new connection: TCP (no Nagle), TLS as configured, EHLO, and AUTH when configured.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError(format!("connecting to {}:{}: {e}", self.host, self.port)))?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError(format!("TCP_NODELAY: {e}")))?;
        let smtp_error = |e: lettre::transport::smtp::Error| SendError::chain(&e);
        let mut conn = match &self.tls_connector {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| SendError(format!("TLS server name {:?}: {e}", self.host)))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError(format!("TLS with {}:{}: {e}", self.host, self.port)))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(ImplicitTls(tls)), &self.hello)
                    .await
                    .map_err(smtp_error)?
            }
            None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(smtp_error)?,
        };
        if self.tls == SmtpTls::Starttls {
            // Required: without the upgrade nothing (no password, no mail) is sent.
            if !conn.can_starttls() {
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.abort()).await;
                return Err(SendError(format!(
                    "{}:{} does not offer STARTTLS (mail.smtp_tls = \"starttls\")",
                    self.host, self.port
                )));
            }
            let params = TlsParameters::new(self.host.clone()).map_err(smtp_error)?;
            conn.starttls(params, &self.hello)
                .await
                .map_err(smtp_error)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(smtp_error)?;
        }
        Ok(conn)
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let mut slot = self.conn.lock().await;
        if let Some((conn, last_used)) = slot.as_mut() {
            let stale = last_used.elapsed() >= IDLE_CHECK
                && !tokio::time::timeout(self.timeout, conn.test_connected())
                    .await
                    .unwrap_or(false);
            if conn.has_broken() || stale {
                *slot = None;
            }
        }
        if slot.is_none() {
            let conn = tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| {
                    SendError(format!(
                        "connecting to {}:{} timed out after {:?}",
                        self.host, self.port, self.timeout
                    ))
                })??;
            *slot = Some((conn, tokio::time::Instant::now()));
        }
        let Some((conn, last_used)) = slot.as_mut() else {
            return Err(SendError("no SMTP connection".to_owned()));
        };
        let sent = tokio::time::timeout(
            self.timeout,
            conn.send(message.envelope(), &message.formatted()),
        )
        .await;
        *last_used = tokio::time::Instant::now();
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                // A refusal (4xx/5xx) leaves the session usable after RSET; anything else
                // does not. Starting afresh is simplest either way.
                if let Some((mut conn, _)) = slot.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.abort()).await;
                }
                Err(SendError::chain(&e))
            }
            Err(_) => {
                *slot = None;
                Err(SendError(format!(
                    "sending to {}:{} timed out after {:?}",
                    self.host, self.port, self.timeout
                )))
            }
        }
    }

    async fn close(&self) {
        if let Some((mut conn, _)) = self.conn.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }
}

/// A TLS stream lettre's SMTP client can speak through (implicit TLS).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The file a message is written to: `<outbox id>.eml`, the id reduced to safe characters.
pub fn eml_path(dir: &Path, outbox_id: &str) -> PathBuf {
    let name: String = outbox_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.eml"))
}

async fn write_eml(dir: &Path, outbox_id: &str, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let path = eml_path(dir, outbox_id);
    let tmp = path.with_extension("eml.tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tls_mode_builds_and_credentials_go_together() {
        let mut s = MailSettings {
            transport: MailTransportKind::Smtp,
            smtp_host: "smtp.example.com".to_owned(),
            ..MailSettings::default()
        };
        for (tls, port) in [
            (SmtpTls::Starttls, 587),
            (SmtpTls::Implicit, 465),
            (SmtpTls::None, 25),
        ] {
            s.smtp_tls = tls;
            let t = MailTransport::from_settings(&s).unwrap();
            assert!(
                t.describe()
                    .starts_with(&format!("smtp smtp.example.com:{port} (")),
                "{}",
                t.describe()
            );
        }
        s.smtp_username = Some("essentry".to_owned());
        assert!(MailTransport::from_settings(&s).is_err());
        s.smtp_password = Some("secret".to_owned());
        let t = MailTransport::from_settings(&s).unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn file_names_come_from_the_outbox_id() {
        assert_eq!(
            eml_path(Path::new("data/mail"), "7d2c-ab/../x"),
            PathBuf::from("data/mail/7d2c-ab____x.eml")
        );
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("smtp.example.com"));
    }
}
