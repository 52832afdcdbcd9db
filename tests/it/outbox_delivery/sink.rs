//! A real SMTP receiver on loopback for the delivery tests and the outbox benchmark
//! (`benches/outbox` includes this file).
//!
//! The SMTP dialogue is the `mailin` crate's state machine (EHLO, optional AUTH PLAIN/LOGIN,
//! MAIL, RCPT, DATA with dot-unstuffing, RSET, QUIT); the I/O is a small tokio loop here, so the
//! receiver can be stopped (connection refused, pooled connections cut), slowed down (a delay
//! before acknowledging each message's data, as a busy relay does) and made to refuse chosen
//! recipients with a temporary `451`. mailin-embedded, the same author's ready-made server, runs
//! forever on blocking threads and pulls rustls with the aws-lc provider, so it is not used.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One message as the receiver got it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    /// The AUTH identity, when the session authenticated.
    pub user: Option<String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first value of header `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let parsed = mailparse::parse_mail(&self.data).ok()?;
        use mailparse::MailHeaderMap;
        parsed.headers.get_first_value(name)
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    count: AtomicUsize,
    refuse: Mutex<HashSet<String>>,
    delay_ms: AtomicU64,
    credentials: Option<(String, String)>,
    changed: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running receiver. Dropping it without [`SmtpSink::stop`] leaves it running until the test
/// process ends.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl SmtpSink {
    /// A receiver on a fresh loopback port.
    pub async fn start() -> Self {
        Self::start_with("127.0.0.1:0".parse().unwrap(), None).await
    }

    /// A receiver on `addr` (e.g. the port of one that was stopped), requiring AUTH with
    /// `credentials` when given.
    pub async fn start_with(addr: SocketAddr, credentials: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the SMTP receiver");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            ..Shared::default()
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (s, st, t) = (shared.clone(), stop.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = st.cancelled() => break,
                    a = listener.accept() => a,
                };
                if let Ok((stream, peer)) = accepted {
                    t.spawn(session(stream, peer.ip(), s.clone(), st.clone()));
                }
            }
        });
        Self {
            addr,
            shared,
            stop,
            tasks,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening (new connections are refused) and cuts every open session.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Answers `RCPT TO:<address>` with a temporary `451` until [`Self::accept`] (case-insensitive).
    pub fn refuse(&self, address: &str) {
        lock(&self.shared.refuse).insert(address.to_lowercase());
    }

    pub fn accept(&self, address: &str) {
        lock(&self.shared.refuse).remove(&address.to_lowercase());
    }

    /// Waits this long before acknowledging each message's data.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits until at least `n` messages arrived; `false` after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.count() >= n;
            }
        }
    }
}

struct SinkHandler {
    shared: Arc<Shared>,
    current: Received,
    user: Option<String>,
    /// Set when a message's data ended, so the loop can hold the acknowledgement.
    data_ended: Arc<AtomicBool>,
}

impl Handler for SinkHandler {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current = Received {
            from: from.trim_matches(['<', '>']).to_owned(),
            user: self.user.clone(),
            ..Received::default()
        };
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let to = to.trim_matches(['<', '>']).to_owned();
        if lock(&self.shared.refuse).contains(&to.to_lowercase()) {
            return Response::custom(451, format!("4.3.0 {to}: try again later"));
        }
        self.current.to.push(to);
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = std::mem::take(&mut self.current);
        lock(&self.shared.received).push(message);
        self.shared.count.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
        self.data_ended.store(true, Ordering::SeqCst);
        mailin::response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check(user, password)
    }
}

impl SinkHandler {
    fn check(&mut self, user: &str, password: &str) -> Response {
        match &self.shared.credentials {
            Some((u, p)) if u == user && p == password => {
                self.user = Some(user.to_owned());
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }
}

async fn session(stream: TcpStream, peer: IpAddr, shared: Arc<Shared>, stop: CancellationToken) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut builder = SessionBuilder::new("sink.localhost");
    if shared.credentials.is_some() {
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login)
            .insecure_enable_plaintext_auth();
    }
    let data_ended = Arc::new(AtomicBool::new(false));
    let handler = SinkHandler {
        shared: shared.clone(),
        current: Received::default(),
        user: None,
        data_ended: data_ended.clone(),
    };
    let mut smtp = builder.build(peer, handler);
    let mut out = Vec::new();
    if smtp.greeting().write_to(&mut out).is_err() || write.write_all(&out).await.is_err() {
        return;
    }
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = read.read_until(b'\n', &mut line) => n,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = smtp.process(&line);
        if data_ended.swap(false, Ordering::SeqCst) {
            let delay = shared.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                }
            }
        }
        match response.action {
            Action::NoReply => continue,
            Action::Reply | Action::Close | Action::UpgradeTls => {
                out.clear();
                if response.write_to(&mut out).is_err() || write.write_all(&out).await.is_err() {
                    return;
                }
                if response.action != Action::Reply {
                    return;
                }
            }
        }
    }
}
