//! The SCIM hot path's shared state, on both backends: group commit (concurrent writes share a
//! transaction, each with its own result: one winner per userName, a failed write keeps nothing,
//! the others keep everything, log rows included) and the cache of token lookups (a deleted
//! integration's token is refused at once, also when another process or replica deleted it);
//! a write whose client gives up midway keeps nothing half done and undoes no other.

use std::sync::Arc;

use essentry_sync::config::Settings;
use essentry_sync::domain::directory::{OpContext, create_user};
use essentry_sync::domain::{DirectoryError, ManualClock, Source, StoreError, UserName};
use essentry_sync::scim::resource::user_from_body;
use essentry_sync::secrets::SecretKey;
use essentry_sync::service::Service;
use essentry_sync::store::{GroupCommit, LogQuery, Store, StoreConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::scim_protocol::{USER, assert_error, find, send};
use crate::support::{Backend, SCIM_JSON, TestApp, t0};

/// POSTs a user named `user_name` with the app's token.
async fn post_user(app: &TestApp, user_name: &str) -> crate::support::Reply {
    send(
        app.client
            .post(format!("{}/Users", app.base))
            .bearer_auth(&app.token)
            .header("content-type", SCIM_JSON)
            .body(json!({"schemas": [USER], "userName": user_name}).to_string()),
    )
    .await
}

backend_test! {
    /// 24 creates of one userName (in two spellings) race with 24 creates of distinct users:
    /// exactly one of the first wins, the other 23 get 409 uniqueness, every distinct user is
    /// created, and the provisioning log holds one success row per created user and one
    /// failure row per refused request.
    multi_thread async fn concurrent_creates_share_commits_with_one_winner(backend) {
        let app = Arc::new(TestApp::spawn(backend).await);
        let mut tasks = Vec::new();
        for i in 0..48 {
            let app = app.clone();
            let name = match i % 4 {
                0 => "same@contoso.com".to_owned(),
                1 => "SAME@Contoso.com".to_owned(),
                _ => format!("distinct{i}@contoso.com"),
            };
            tasks.push(tokio::spawn(async move { (name.clone(), post_user(&app, &name).await) }));
        }
        let (mut same_created, mut same_refused, mut distinct_created) = (0, 0, 0);
        for t in tasks {
            let (name, r) = t.await.expect("task");
            if name.eq_ignore_ascii_case("same@contoso.com") {
                if r.status == StatusCode::CREATED {
                    same_created += 1;
                } else {
                    assert_error(&r, StatusCode::CONFLICT, Some("uniqueness"), &format!("{backend:?} {name}"));
                    same_refused += 1;
                }
            } else {
                assert_eq!(r.status, StatusCode::CREATED, "{backend:?} {name}: {}", r.body);
                assert_eq!(r.body["userName"], name.as_str());
                distinct_created += 1;
            }
        }
        assert_eq!((same_created, same_refused, distinct_created), (1, 23, 24), "{backend:?}");
        assert_eq!(find(&app, r#"userName eq "same@contoso.com""#).await.len(), 1);
        let all = app.get("/Users?count=100").await;
        assert_eq!(all.body["totalResults"], 25, "{backend:?}: {}", all.body);
        let log = app
            .store()
            .list_log(&app.account, &LogQuery { limit: 1000, ..Default::default() })
            .await
            .expect("log");
        let count = |status: &str| {
            log.iter().filter(|l| l.action == "create" && l.status == status).count()
        };
        assert_eq!((count("success"), count("failure")), (25, 23), "{backend:?}");
        let Ok(app) = Arc::try_unwrap(app) else { panic!("the app is still shared") };
        app.finish().await;
    }
}

/// Who acts in the writes these tests run through a `GroupCommit` directly: a SCIM client.
fn scim_context(app: &TestApp) -> OpContext {
    OpContext {
        account: app.account.clone(),
        source: Source::Scim,
        integration_id: None,
        cycle_id: None,
        now: t0(),
    }
}

backend_test! {
    /// Writes run through one `GroupCommit` concurrently; every third fails after it wrote its
    /// user and log row. The failed ones keep nothing (their savepoint is rolled back), every
    /// other one keeps its user and its log row, whoever shared its transaction.
    multi_thread async fn a_failed_write_in_a_shared_transaction_keeps_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let gc = GroupCommit::new(app.store().clone(), 16);
        let ctx = scim_context(&app);
        let mut tasks = Vec::new();
        for i in 0..30 {
            let (gc, ctx) = (gc.clone(), ctx.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({"schemas": [USER], "userName": format!("gc{i}@contoso.com")});
                let desired = user_from_body(&body).expect("valid user");
                gc.run(async |tx| {
                    let user = create_user(tx, &ctx, desired).await?;
                    if i % 3 == 0 {
                        return Err(DirectoryError::Store(StoreError::Database(
                            format!("write {i} fails after writing").into(),
                        )));
                    }
                    Ok(user)
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let out = t.await.expect("task");
            assert_eq!(out.is_ok(), i % 3 != 0, "{backend:?} write {i}: {out:?}");
        }
        for i in 0..30 {
            let name = UserName::parse(&format!("gc{i}@contoso.com")).expect("name");
            let stored = app.store().user_by_name(&app.account, &name).await.expect("read");
            assert_eq!(stored.is_some(), i % 3 != 0, "{backend:?} user {i}");
        }
        let log = app
            .store()
            .list_log(&app.account, &LogQuery { limit: 1000, ..Default::default() })
            .await
            .expect("log");
        let mut logged: Vec<String> = log.iter().filter_map(|l| l.user_name.clone()).collect();
        logged.sort();
        let mut expected: Vec<String> =
            (0..30).filter(|i| i % 3 != 0).map(|i| format!("gc{i}@contoso.com")).collect();
        expected.sort();
        assert_eq!(logged, expected, "{backend:?}: one log row per kept write");
        app.finish().await;
    }
}

backend_test! {
    /// Writes through one `GroupCommit` whose clients give up at different moments (a timeout
    /// drops the request's future: before its turn, while its combined write runs, while it
    /// waits for the commit). Every write that answered success is kept, log row included —
    /// cleaning up after a dropped one never reaches into an earlier write of the batch — and a
    /// dropped one keeps both its user and its log row or neither. The writes after them work.
    multi_thread async fn dropped_writes_keep_nothing_half_done_and_undo_no_other(backend) {
        let app = TestApp::spawn(backend).await;
        let gc = GroupCommit::new(app.store().clone(), 16);
        let ctx = scim_context(&app);
        let create = |i: usize| {
            let (gc, ctx) = (gc.clone(), ctx.clone());
            async move {
                let body = json!({"schemas": [USER], "userName": format!("drop{i}@contoso.com"),
                                  "emails": [{"value": format!("drop{i}@contoso.com")}]});
                let desired = user_from_body(&body).expect("valid user");
                gc.run(async |tx| create_user(tx, &ctx, desired).await).await
            }
        };
        let mut tasks = Vec::new();
        for i in 0..90 {
            let work = create(i);
            tasks.push(tokio::spawn(async move {
                if i % 3 == 0 {
                    let patience = std::time::Duration::from_micros(50 * (i as u64 % 40));
                    tokio::time::timeout(patience, work).await.ok()
                } else {
                    Some(work.await)
                }
            }));
        }
        let mut answered = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Some(Ok(_)) => answered.push(i),
                Some(Err(e)) => panic!("{backend:?} write {i} failed: {e}"),
                None => {}
            }
        }
        assert!(answered.len() >= 60, "{backend:?}: only {} writes answered", answered.len());
        // One more write decides whatever batch the dropped ones left open.
        create(1000).await.expect("a write after the dropped ones");
        let log = app
            .store()
            .list_log(&app.account, &LogQuery { limit: 1000, ..Default::default() })
            .await
            .expect("log");
        let logged = |i: usize| {
            let name = format!("drop{i}@contoso.com");
            log.iter().filter(|l| l.user_name.as_deref() == Some(name.as_str())).count()
        };
        for i in (0..90).chain([1000]) {
            let name = UserName::parse(&format!("drop{i}@contoso.com")).expect("name");
            let stored = app.store().user_by_name(&app.account, &name).await.expect("read");
            if answered.contains(&i) || i == 1000 {
                assert!(stored.is_some(), "{backend:?} write {i} answered success but is gone");
            }
            let emails = stored.as_ref().map_or(0, |u| u.attrs.emails().len());
            assert_eq!(
                (logged(i), emails),
                if stored.is_some() { (1, 1) } else { (0, 0) },
                "{backend:?} write {i}: user, email row and log row together or not at all"
            );
        }
        app.finish().await;
    }
}

/// A second server on `app`'s database (another replica on PostgreSQL; on SQLite a second
/// process would be refused, so only a second store is opened there: see the test).
async fn second_replica(app: &TestApp) -> (Service, String) {
    let store = Store::connect(&StoreConfig {
        url: app.database_url(),
        max_connections: 4,
        pg_schema: None,
    })
    .await
    .expect("second store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut settings = Settings::default();
    settings.server.listen = addr.to_string();
    settings.server.public_url = Some(format!("http://{addr}"));
    settings.sync.scheduler_enabled = false;
    settings.mail.worker_enabled = false;
    let base = settings.scim_base_url();
    let key = SecretKey::load_or_create(&app.dir().join("secret.key")).expect("key");
    let clock = Arc::new(ManualClock::new(t0()));
    let service = Service::start(listener, store, clock, settings, key)
        .await
        .expect("start the second replica");
    (service, base)
}

async fn users_status(app: &TestApp, base: &str) -> StatusCode {
    app.client
        .get(format!("{base}/Users"))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("request")
        .status()
}

backend_test! {
    /// The token lookups are cached, yet a deleted integration's token is refused at once:
    /// - on PostgreSQL by another replica (a second server on the same database), with the
    ///   deletion made through the first one;
    /// - on SQLite by the server, with the deletion made through a store of its own on the same
    ///   file, as the CLI's `integration delete` does from another process.
    multi_thread async fn a_deleted_integrations_token_is_refused_at_once_everywhere(backend) {
        let app = TestApp::spawn(backend).await;
        match backend {
            Backend::Postgres => {
                let (replica, replica_base) = second_replica(&app).await;
                // Both replicas have the token cached.
                for _ in 0..3 {
                    assert_eq!(users_status(&app, &app.base).await, StatusCode::OK);
                    assert_eq!(users_status(&app, &replica_base).await, StatusCode::OK);
                }
                essentry_sync::integrations::delete(app.store(), &app.account, "default", "EntraID")
                    .await
                    .expect("delete through the first replica");
                assert_eq!(users_status(&app, &replica_base).await, StatusCode::UNAUTHORIZED);
                assert_eq!(users_status(&app, &app.base).await, StatusCode::UNAUTHORIZED);
                replica.shutdown(std::time::Duration::from_secs(10)).await;
            }
            Backend::Sqlite => {
                for _ in 0..3 {
                    assert_eq!(users_status(&app, &app.base).await, StatusCode::OK);
                }
                let other = Store::connect(&StoreConfig {
                    url: app.database_url(),
                    max_connections: 1,
                    pg_schema: None,
                })
                .await
                .expect("a store of another process");
                essentry_sync::integrations::delete(&other, &app.account, "default", "EntraID")
                    .await
                    .expect("delete through the other store");
                other.close().await;
                assert_eq!(users_status(&app, &app.base).await, StatusCode::UNAUTHORIZED);
            }
        }
        app.finish().await;
    }
}

backend_test! {
    /// A lookup never fails for want of a free read connection: lookups are cancelled midway
    /// (a client that hangs up), then 16 tasks look a user up over and over on a store with two
    /// readers, so that connections are constantly handed out and given back while other
    /// lookups are waiting for one. Every lookup must find the user. (On SQLite, a hand-out
    /// that scanned the connections for an unlocked one after taking a permit could miss the
    /// connection freed behind its scan and fail with "pool timed out": the two HTTP 500s of
    /// the lookup benchmark.)
    multi_thread async fn scim_lookups_always_get_a_reader_also_after_cancelled_ones(backend) {
        let app = TestApp::spawn(backend).await;
        app.create_user("lookup@contoso.com", "Lookup", "User").await;
        let store = Store::connect(&StoreConfig {
            url: app.database_url(),
            max_connections: 2,
            pg_schema: None,
        })
        .await
        .expect("a store with two readers");
        let account = app.account.clone();
        let name = UserName::parse("lookup@contoso.com").expect("name");

        // Lookups dropped at different points of their query.
        for i in 0..64 {
            let (store, account, name) = (store.clone(), account.clone(), name.clone());
            let task = tokio::spawn(async move { store.user_by_name(&account, &name).await });
            for _ in 0..i % 8 {
                tokio::task::yield_now().await;
            }
            task.abort();
            if let Ok(result) = task.await {
                result.expect("a lookup that finished before its cancellation");
            }
        }

        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (store, account, name) = (store.clone(), account.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..1_500 {
                    match store.user_by_name(&account, &name).await {
                        Ok(Some(u)) if u.attrs.user_name == name => {}
                        other => failures.push(format!("{other:?}")),
                    }
                }
                failures
            }));
        }
        let mut failures = Vec::new();
        for t in tasks {
            failures.extend(t.await.expect("lookup task"));
        }
        assert!(
            failures.is_empty(),
            "{backend:?}: {} of 24000 lookups failed, e.g. {:?}",
            failures.len(),
            failures.first()
        );
        store.close().await;
        app.finish().await;
    }
}
