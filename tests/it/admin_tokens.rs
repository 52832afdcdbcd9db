//! Admin API tokens against a real server on either backend: expiry, revocation, account scope
//! (a scoped token cannot reach another account's integrations and sees only its own in
//! `status`), and the last use written at most once a minute.

use std::sync::Arc;

use chrono::TimeDelta;
use essentry_sync::admin_tokens;
use essentry_sync::config::Settings;
use essentry_sync::domain::{AccountId, Clock, ManualClock};
use essentry_sync::http::AppState;
use essentry_sync::integrations::{self, GraphSettings};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::store::{AdminTokenInfo, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{Backend, TestStore, t0};

/// A server with the admin API (it needs the secrets key) and a Graph integration named `Pull`
/// in each of the accounts `default` and `acme`.
struct AdminApp {
    base: String,
    store: Store,
    clock: Arc<ManualClock>,
    acme: AccountId,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    ts: Option<TestStore>,
}

impl AdminApp {
    async fn spawn(backend: Backend) -> Self {
        let ts = TestStore::new(backend).await;
        let store = ts.store.clone();
        let clock = Arc::new(ManualClock::new(t0()));
        let key = SecretKey::load_or_create(&ts.dir.path().join("secret.key")).expect("key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let mut settings = Settings::default();
        settings.server.listen = addr.to_string();
        let default = store
            .ensure_account("default", t0())
            .await
            .expect("account");
        let acme = store.ensure_account("acme", t0()).await.expect("account");
        for (account, name) in [(&default, "default"), (&acme, "acme")] {
            let graph = GraphSettings {
                graph_url: Some("http://127.0.0.1:9/v1.0".to_owned()),
                authority_url: Some("http://127.0.0.1:9".to_owned()),
                ..GraphSettings::new(
                    "contoso.onmicrosoft.com",
                    "11111111-1111-1111-1111-111111111111",
                    "22222222-2222-2222-2222-222222222222",
                )
            };
            integrations::create_graph(
                &store,
                &key,
                account,
                name,
                "Pull",
                &graph,
                &Secret::new("client-secret-value".to_owned()),
                t0(),
            )
            .await
            .expect("graph integration");
        }
        let state = AppState::with_key(store.clone(), clock.clone(), settings, Some(key));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = essentry_sync::http::serve(listener, state, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            base: format!("http://{addr}/admin/v1"),
            store,
            clock,
            acme,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            ts: Some(ts),
        }
    }

    async fn token(&self, name: &str, expires_in: Option<TimeDelta>, acme: bool) -> String {
        let now = self.clock.now();
        let (_, token) = admin_tokens::create(
            &self.store,
            name,
            expires_in.map(|d| now + d),
            acme.then_some(&self.acme),
            now,
        )
        .await
        .expect("create admin token");
        token.expose().to_owned()
    }

    async fn call(&self, token: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let req = match body {
            Some(b) => self.client.post(&url).json(&b),
            None => self.client.get(&url),
        };
        let resp = req.bearer_auth(token).send().await.expect("request");
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn listed(&self, name: &str) -> AdminTokenInfo {
        admin_tokens::list(&self.store)
            .await
            .expect("list")
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no token {name}"))
    }

    async fn finish(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
        if let Some(ts) = self.ts.take() {
            ts.cleanup().await;
        }
    }
}

backend_test! {
    /// An expired token and a revoked token are refused with 401 at once; a valid one works.
    async fn expired_and_revoked_tokens_are_refused(backend) {
        let app = AdminApp::spawn(backend).await;
        let short = app.token("short", Some(TimeDelta::hours(1)), false).await;
        let ops = app.token("ops", None, false).await;
        assert_eq!(app.call(&short, "/status", None).await.0, StatusCode::OK);
        assert_eq!(app.call(&ops, "/status", None).await.0, StatusCode::OK);

        app.clock.advance(TimeDelta::hours(1));
        let (status, body) = app.call(&short, "/status", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "unauthorized");

        admin_tokens::revoke(&app.store, "ops").await.expect("revoke");
        assert_eq!(app.call(&ops, "/status", None).await.0, StatusCode::UNAUTHORIZED);
        assert!(admin_tokens::revoke(&app.store, "ops").await.is_err(), "revoked twice");
        let names: Vec<String> = admin_tokens::list(&app.store)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["short"]);
        app.finish().await;
    }
}

backend_test! {
    /// A token scoped to `acme` sees acme's integrations only, and a request naming another
    /// account gets the same 404 as a missing integration, whether the account exists or not.
    async fn account_scoped_token_stays_in_its_account(backend) {
        let app = AdminApp::spawn(backend).await;
        let scoped = app.token("acme-ops", None, true).await;
        let global = app.token("ops", None, false).await;

        let (status, body) = app.call(&global, "/status", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut accounts: Vec<&str> =
            body.as_array().expect("list").iter().filter_map(|s| s["account"].as_str()).collect();
        accounts.sort_unstable();
        assert_eq!(accounts, ["acme", "default"]);

        let (status, body) = app.call(&scoped, "/status", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let accounts: Vec<&str> =
            body.as_array().expect("list").iter().filter_map(|s| s["account"].as_str()).collect();
        assert_eq!(accounts, ["acme"]);

        let sync = "/integrations/Pull/sync";
        let od = "/integrations/Pull/provision-on-demand";
        let (other, other_body) = app
            .call(&scoped, sync, Some(json!({"dryRun": true, "account": "default"})))
            .await;
        assert_eq!(other, StatusCode::NOT_FOUND, "{other_body}");
        let (missing, missing_body) = app
            .call(&scoped, sync, Some(json!({"dryRun": true, "account": "nosuch"})))
            .await;
        assert_eq!(missing, StatusCode::NOT_FOUND, "{missing_body}");
        assert_eq!(other_body["error"], missing_body["error"]);
        let (status, body) = app
            .call(&scoped, od, Some(json!({"user": "a@b.example", "dryRun": true, "account": "default"})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // Without `account` the scoped token acts on its own account.
        let (status, body) = app
            .call(&scoped, "/integrations/Nope/sync", Some(json!({"dryRun": true})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("acme")), "{body}");
        // The deletion review is scoped the same way: another account's staged deletions can be
        // neither listed nor approved nor rejected.
        let (status, body) = app
            .call(&scoped, "/deletions?account=default&integration=Pull", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = app
            .call(&scoped, "/deletions?account=default", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        for (path, payload) in [
            ("/integrations/Pull/deletions/approve", json!({"all": true, "account": "default"})),
            ("/integrations/Pull/deletions/reject", json!({"user": "a@b.example", "account": "default"})),
        ] {
            let (status, body) = app.call(&scoped, path, Some(payload)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
        let (status, body) = app.call(&global, "/deletions?account=default", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.finish().await;
    }
}

backend_test! {
    /// The last use is recorded, then written again only once the recorded one is a minute old.
    async fn last_use_is_written_at_most_once_a_minute(backend) {
        let app = AdminApp::spawn(backend).await;
        let token = app.token("ops", None, false).await;
        assert_eq!(app.listed("ops").await.last_used_at, None);
        let first = app.clock.now();
        assert_eq!(app.call(&token, "/status", None).await.0, StatusCode::OK);
        assert_eq!(app.listed("ops").await.last_used_at, Some(first));

        app.clock.advance(TimeDelta::seconds(30));
        assert_eq!(app.call(&token, "/status", None).await.0, StatusCode::OK);
        assert_eq!(app.listed("ops").await.last_used_at, Some(first), "written again within a minute");

        app.clock.advance(TimeDelta::seconds(31));
        assert_eq!(app.call(&token, "/status", None).await.0, StatusCode::OK);
        assert_eq!(app.listed("ops").await.last_used_at, Some(app.clock.now()));
        app.finish().await;
    }
}
