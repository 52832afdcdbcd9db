//! The harness of the console tests: a real server on loopback (store on either backend, a
//! secrets key, an admin token, a SCIM integration and a Graph integration pointed at the
//! bundled Graph simulator), and a cookie-carrying HTTP client that does not follow redirects.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::TimeDelta;
use essentry_sync::config::Settings;
use essentry_sync::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, Clock, Guest, ManualClock, UserName,
};
use essentry_sync::entra::simulator::{SAMPLE_CLIENT_SECRET, Simulator, sample_tenant};
use essentry_sync::http::AppState;
use essentry_sync::integrations::{self, GraphSettings};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::store::Store;
use reqwest::StatusCode;
use tokio::sync::oneshot;

use crate::support::{Backend, TestStore, t0};

/// The Graph integration's name.
pub const GRAPH: &str = "EntraPull";
/// The SCIM integration's name.
pub const SCIM: &str = "EntraPush";

pub struct ConsoleApp {
    /// `http://127.0.0.1:port`.
    pub origin: String,
    pub admin_token: String,
    pub scim_token: String,
    pub account: AccountId,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub sim: Simulator,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    schema: Option<String>,
    _dir: tempfile::TempDir,
}

/// A reply: status, headers and the body as text.
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn location(&self) -> &str {
        self.header("location")
    }
}

/// A signed-in browser session: its cookie and CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// Creates an admin token the way `essentry-sync admin-token create` does (optionally scoped to
/// one account).
pub async fn create_admin_token(
    store: &Store,
    name: &str,
    account: Option<&AccountId>,
    clock: &dyn Clock,
) -> String {
    let (_, token) = essentry_sync::admin_tokens::create(store, name, None, account, clock.now())
        .await
        .expect("admin token");
    token.expose().to_owned()
}

impl ConsoleApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let ts = TestStore::new(backend).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut settings = Settings::default();
        settings.server.listen = addr.to_string();
        settings.server.public_url = Some(format!("http://{addr}"));
        settings.sync.retry_budget_wait_secs = 5;
        settings.sync.request_timeout_secs = 10;
        tweak(&mut settings);
        let clock = Arc::new(ManualClock::new(t0()));
        let TestStore {
            store, schema, dir, ..
        } = ts;
        let account = store
            .ensure_account("default", clock.now())
            .await
            .expect("account");
        let key = SecretKey::load_or_create(&dir.path().join("secret.key")).expect("key");
        let (_, scim_token) = integrations::create_scim(
            &store,
            &key,
            &account,
            "default",
            SCIM,
            &settings.scim_base_url(),
            clock.now(),
        )
        .await
        .expect("SCIM integration");
        let sim = Simulator::start(sample_tenant())
            .await
            .expect("the Graph simulator starts");
        let graph = GraphSettings::sample(sim.graph_url(), sim.authority_url());
        integrations::create_graph(
            &store,
            &key,
            &account,
            "default",
            GRAPH,
            &graph,
            &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
            clock.now(),
        )
        .await
        .expect("Graph integration");
        let admin_token = create_admin_token(&store, "ops", None, clock.as_ref()).await;
        let state = AppState::with_key(store, clock.clone(), settings, Some(key));
        let (tx, rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            let _ = essentry_sync::http::serve(listener, server_state, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            origin: format!("http://{addr}"),
            admin_token,
            scim_token: scim_token.expose().to_owned(),
            account,
            clock,
            state,
            sim,
            backend,
            shutdown: Some(tx),
            server: Some(server),
            schema,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    async fn send(req: reqwest::RequestBuilder) -> Page {
        let resp = req.send().await.expect("request");
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    /// `GET path` with the session's cookie (or none).
    pub async fn get(&self, session: Option<&Session>, path: &str) -> Page {
        let mut req = Self::client().get(format!("{}{path}", self.origin));
        if let Some(s) = session {
            req = req.header("cookie", &s.cookie);
        }
        Self::send(req).await
    }

    /// `POST path` as a form, with the session's cookie (or none). The CSRF token is not added:
    /// pass it in `form`.
    pub async fn post(&self, session: Option<&Session>, path: &str, form: &[(&str, &str)]) -> Page {
        let mut req = Self::client()
            .post(format!("{}{path}", self.origin))
            .form(form);
        if let Some(s) = session {
            req = req.header("cookie", &s.cookie);
        }
        Self::send(req).await
    }

    /// Posts `token` to the sign-in form.
    pub async fn sign_in_with(&self, token: &str) -> Page {
        self.post(None, "/admin/login", &[("token", token)]).await
    }

    /// Signs in with the admin token and reads the CSRF token from the overview.
    pub async fn sign_in(&self) -> Session {
        let page = self.sign_in_with(&self.admin_token).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let set = page.header("set-cookie");
        let cookie = set.split(';').next().expect("cookie").to_owned();
        let mut session = Session {
            cookie,
            csrf: String::new(),
        };
        let overview = self.get(Some(&session), "/admin/").await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
        session.csrf = csrf_of(&overview.body);
        session
    }

    /// Books an appointment hosted by `host` (a stored user) in `in_hours` with `guests`.
    pub async fn add_appointment(&self, host: &str, title: &str, guests: &[(&str, &str)]) {
        let host = self
            .store()
            .user_by_name(&self.account, &UserName::parse(host).expect("email"))
            .await
            .expect("db")
            .expect("host exists");
        let starts = self.clock.now() + TimeDelta::hours(24);
        let a = Appointment {
            id: AppointmentId::generate(),
            account_id: self.account.clone(),
            host_user_id: Some(host.id.clone()),
            host_user_name: host.attrs.user_name.as_str().to_owned(),
            host_display: host.attrs.user_name.as_str().to_owned(),
            title: title.to_owned(),
            starts_at: starts,
            ends_at: starts + TimeDelta::hours(1),
            status: AppointmentStatus::Scheduled,
            cancelled_at: None,
            cancel_reason: None,
            guests: guests
                .iter()
                .map(|(name, email)| Guest {
                    name: (*name).to_owned(),
                    email: (*email).to_owned(),
                })
                .collect(),
        };
        let mut tx = self.store().begin().await.expect("tx");
        tx.insert_appointment(&a).await.expect("appointment");
        tx.commit().await.expect("commit");
    }

    /// Unassigns the simulated user with this UPN from the application.
    pub fn unassign(&self, upn: &str) {
        let id = self.sim.with_tenant(|t| {
            t.user_by_upn(upn)
                .unwrap_or_else(|| panic!("no {upn}"))
                .id
                .clone()
        });
        self.sim
            .with_tenant(|t| assert!(t.unassign(&id), "{upn} was assigned"));
    }

    /// Stops the server and the simulator and drops the PostgreSQL schema.
    pub async fn finish(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
        self.state.store.close().await;
        if let Some(schema) = self.schema.take() {
            crate::support::drop_test_schema(&schema).await;
        }
        self.sim.shutdown().await;
    }
}

/// The first CSRF token of a page's forms.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = html[start..].find('"').expect("end of the CSRF token") + start;
    html[start..end].to_owned()
}
