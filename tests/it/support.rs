//! Shared helpers: a real essentry-sync server on a loopback port backed by a real SQLite file
//! or a fresh PostgreSQL schema, an HTTP client that speaks SCIM to it, and fixtures.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use essentry_sync::config::Settings;
use essentry_sync::domain::{
    AccountId, Appointment, AppointmentId, AppointmentStatus, Clock, Guest, ManualClock, UserName,
};
use essentry_sync::http::AppState;
use essentry_sync::integrations;
use essentry_sync::secrets::SecretKey;
use essentry_sync::service::Service;
use essentry_sync::store::{Store, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const SCIM_JSON: &str = "application/scim+json";

/// The PostgreSQL the tests use: `ESSENTRY_TEST_POSTGRES_URL`, or the CI server on loopback.
pub fn postgres_url() -> String {
    std::env::var("ESSENTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One PostgreSQL variant of a test, registered so the skip line can say how many were skipped.
pub struct PgVariant;
inventory::collect!(PgVariant);

/// Defines a store-touching test once and generates one test per backend:
/// `name::sqlite` and `name::postgres`, so a failure names its backend and one backend can be
/// run alone (`cargo test sqlite`). The PostgreSQL variant skips (one line on stderr for the
/// whole run) when no PostgreSQL answers, unless `ESSENTRY_TEST_REQUIRE_POSTGRES=1`.
///
/// ```ignore
/// backend_test! {
///     /// What it checks.
///     async fn it_works(backend) { let app = TestApp::spawn(backend).await; … }
/// }
/// backend_test! { multi_thread async fn on_two_threads(backend) { … } }
/// ```
macro_rules! backend_test {
    ($(#[$doc:meta])* async fn $name:ident($backend:ident) $body:block) => {
        backend_test!(@gen [tokio::test] $(#[$doc])* $name $backend $body);
    };
    ($(#[$doc:meta])* multi_thread async fn $name:ident($backend:ident) $body:block) => {
        backend_test!(
            @gen [tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$doc])* $name $backend $body
        );
    };
    (@gen [$($test:tt)*] $(#[$doc:meta])* $name:ident $backend:ident $body:block) => {
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[$($test)*]
            async fn sqlite() {
                let $backend = crate::support::Backend::Sqlite;
                $body
            }

            #[$($test)*]
            async fn postgres() {
                if !crate::support::postgres_or_skip().await {
                    return;
                }
                let $backend = crate::support::Backend::Postgres;
                $body
            }

            inventory::submit! { crate::support::PgVariant }
        }
    };
}

/// Whether PostgreSQL tests run: true when the test PostgreSQL answers. When it does not,
/// `ESSENTRY_TEST_REQUIRE_POSTGRES=1` (CI) fails the test; otherwise the test is skipped and the
/// first skip prints one line saying how many PostgreSQL tests the run skips and how to run them.
pub async fn postgres_or_skip() -> bool {
    static AVAILABLE: tokio::sync::OnceCell<Result<(), String>> =
        tokio::sync::OnceCell::const_new();
    let probe = AVAILABLE
        .get_or_init(|| async {
            use sqlx::Connection;
            let connect = sqlx::PgConnection::connect(&postgres_url());
            match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 5 s".to_owned()),
            }
        })
        .await;
    let Err(why) = probe else {
        return true;
    };
    if std::env::var("ESSENTRY_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!(
            "ESSENTRY_TEST_REQUIRE_POSTGRES=1 but PostgreSQL at {} is unreachable: {why}",
            postgres_url()
        );
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        // Written to stderr directly: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "note: PostgreSQL at {} is unreachable ({why}): skipping {} PostgreSQL tests \
             (the `::postgres` variants). Start PostgreSQL there or set \
             ESSENTRY_TEST_POSTGRES_URL to run them; ESSENTRY_TEST_REQUIRE_POSTGRES=1 makes \
             this a failure.",
            postgres_url(),
            inventory::iter::<PgVariant>.into_iter().count()
        );
    });
    false
}

/// A store of its own: a SQLite file in a temporary folder, or a fresh PostgreSQL schema.
pub struct TestStore {
    pub store: Store,
    pub backend: Backend,
    pub schema: Option<String>,
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("essentry.db").display()),
                None,
            ),
            Backend::Postgres => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                (postgres_url(), Some(schema))
            }
        };
        let store = Store::connect(&StoreConfig {
            url,
            max_connections: 4,
            pg_schema: schema.clone(),
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{backend:?} store: {e} (is PostgreSQL at {} reachable?)",
                postgres_url()
            )
        });
        Self {
            store,
            backend,
            schema,
            dir,
        }
    }

    /// Drops the PostgreSQL schema (SQLite's folder goes with the TempDir).
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(schema) = self.schema {
            let _ = drop_schema(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
        }
    }
}

/// Drops a test's PostgreSQL schema (for harnesses that own their store).
pub async fn drop_test_schema(schema: &str) {
    let _ = drop_schema(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
}

async fn drop_schema(sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The pinned "now" of every test server.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub token: String,
    pub account: AccountId,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub client: reqwest::Client,
    pub backend: Backend,
    service: Option<Service>,
    schema: Option<String>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server built by the same [`Service::start`] as `serve`, on a fresh store. The
    /// scheduler and the mail worker are off unless `tweak` switches them on (most tests drive
    /// cycles and delivery themselves); mail files go to the test's folder.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let ts = TestStore::new(backend).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let TestStore {
            store, schema, dir, ..
        } = ts;
        let mut settings = Settings::default();
        settings.server.listen = addr.to_string();
        settings.server.public_url = Some(format!("http://{addr}"));
        settings.sync.scheduler_enabled = false;
        settings.mail.worker_enabled = false;
        settings.mail.file_dir = dir.path().join("mail");
        tweak(&mut settings);
        let clock = Arc::new(ManualClock::new(t0()));
        let account = store
            .ensure_account("default", clock.now())
            .await
            .expect("account");
        let key = SecretKey::load_or_create(&dir.path().join("secret.key")).expect("key");
        let (_, token) = integrations::create_scim(
            &store,
            &key,
            &account,
            "default",
            "EntraID",
            &settings.scim_base_url(),
            clock.now(),
        )
        .await
        .expect("integration");
        let base = settings.scim_base_url();
        let service = Service::start(listener, store, clock.clone(), settings, key)
            .await
            .expect("start the service");
        let state = service.state().clone();
        Self {
            base,
            token: token.expose().to_owned(),
            account,
            clock,
            state,
            client: reqwest::Client::new(),
            backend,
            service: Some(service),
            schema,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The `DATABASE_URL` that points the `essentry-sync` binary at this app's store.
    pub fn database_url(&self) -> String {
        match (&self.backend, &self.schema) {
            (Backend::Postgres, Some(schema)) => {
                let base = postgres_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-c%20search_path%3D{schema}")
            }
            _ => format!(
                "sqlite://{}",
                self._dir.path().join("essentry.db").display()
            ),
        }
    }

    /// How many times `ANALYZE` ran on `table` in this app's PostgreSQL schema by a statement
    /// (not by autovacuum, which `pg_stat_user_tables` counts apart); `None` on SQLite.
    pub async fn manual_analyzes(&self, table: &str) -> Option<i64> {
        use sqlx::Connection;
        let schema = self
            .schema
            .as_deref()
            .filter(|_| self.backend == Backend::Postgres)?;
        let mut conn = sqlx::PgConnection::connect(&postgres_url())
            .await
            .expect("connect to PostgreSQL");
        let n: i64 = sqlx::query_scalar(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("read pg_stat_user_tables");
        Some(n)
    }

    /// The app's temporary directory (the SQLite file and the secrets key live there).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.request_with(method, path, body, |r| r).await
    }

    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        tweak: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Reply {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", SCIM_JSON).body(b.to_string());
        }
        let resp = tweak(req)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None).await
    }

    /// Creates a user over SCIM and returns its id.
    pub async fn create_user(&self, user_name: &str, given: &str, family: &str) -> String {
        let r = self
            .post(
                "/Users",
                &serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "active": true,
                    "name": {"givenName": given, "familyName": family},
                }),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create {user_name}: {}",
            r.body
        );
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// Adds an appointment hosted by `host` starting `in_hours` from the pinned now.
    pub async fn add_appointment(
        &self,
        host: &str,
        title: &str,
        in_hours: i64,
        guests: &[(&str, &str)],
    ) -> Appointment {
        let store = self.store();
        let host_name = UserName::parse(host).expect("host email");
        let host = store
            .user_by_name(&self.account, &host_name)
            .await
            .expect("db")
            .expect("host exists");
        let starts = self.clock.now() + TimeDelta::hours(in_hours);
        let a = Appointment {
            id: AppointmentId::generate(),
            account_id: self.account.clone(),
            host_user_id: Some(host.id.clone()),
            host_user_name: host.attrs.user_name.as_str().to_owned(),
            host_display: format!(
                "{} {}",
                host.attrs.given_name.clone().unwrap_or_default(),
                host.attrs.family_name.clone().unwrap_or_default()
            )
            .trim()
            .to_owned(),
            title: title.to_owned(),
            starts_at: starts,
            ends_at: starts + TimeDelta::hours(1),
            status: AppointmentStatus::Scheduled,
            cancelled_at: None,
            cancel_reason: None,
            guests: guests
                .iter()
                .map(|(n, e)| Guest {
                    name: (*n).to_owned(),
                    email: (*e).to_owned(),
                })
                .collect(),
        };
        let mut tx = store.begin().await.expect("tx");
        tx.insert_appointment(&a).await.expect("insert appointment");
        tx.commit().await.expect("commit");
        a
    }

    /// Stops the service (as `serve` does on SIGTERM) and drops the PostgreSQL schema.
    pub async fn finish(mut self) {
        if let Some(service) = self.service.take() {
            service.shutdown(std::time::Duration::from_secs(10)).await;
        }
        if let Some(schema) = self.schema.take() {
            let _ = drop_schema(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
        }
    }
}

/// The settings of a Graph integration of the simulator's sample tenant (its tenant, client and
/// service principal), pointed at `sim`.
pub fn sample_graph_settings(
    sim: &essentry_sync::entra::simulator::Simulator,
) -> essentry_sync::integrations::GraphSettings {
    essentry_sync::integrations::GraphSettings::sample(sim.graph_url(), sim.authority_url())
}
