//! The operator console over HTTP: sign-in and sessions (redirects, cookie flags, idle and
//! absolute expiry, sign-out ends the session server-side), the sign-in rate limit, CSRF on every
//! state-changing form, account scoping, Privacy Mode (no secret in any page unless revealed,
//! the reveal audit-logged), cycles with their progress endpoint, the log export and the outbox
//! retry.

use std::time::Duration;

use chrono::TimeDelta;
use essentry_sync::domain::Clock;
use essentry_sync::store::LogFilter;
use reqwest::StatusCode;
use serde_json::Value;

use crate::console_support::{ConsoleApp, GRAPH, SCIM, Session, create_admin_token};

async fn audit_actions(app: &ConsoleApp) -> Vec<String> {
    app.store()
        .list_audit(&app.account, true, None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| a.action)
        .collect()
}

/// Waits until the console-started cycle at `run_path` (`/admin/runs/{id}`) has finished and
/// returns its last progress answer.
async fn wait_for_run(app: &ConsoleApp, session: &Session, run_path: &str) -> Value {
    for _ in 0..200 {
        let p = app
            .get(Some(session), &format!("{run_path}/progress"))
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let v: Value = serde_json::from_str(&p.body).expect("progress JSON");
        if v["finished"] == true {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cycle at {run_path} did not finish");
}

async fn run(app: &ConsoleApp, session: &Session, mode: &str) -> (String, Value) {
    let started = app
        .post(
            Some(session),
            &format!("/admin/integrations/{GRAPH}/run"),
            &[("csrf", &session.csrf), ("mode", mode)],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let path = started.location().to_owned();
    assert!(path.starts_with("/admin/runs/"), "{path}");
    let progress = wait_for_run(app, session, &path).await;
    (path, progress)
}

backend_test! {
    /// Without a session every page redirects (303) to the sign-in page; a wrong token gets 401
    /// with the form; the right one a session cookie (HttpOnly, SameSite=Strict, /admin, not
    /// Secure on http) and 303 to the overview; sign-out ends the session on the server.
    async fn sign_in_sign_out_and_redirects(backend) {
        let app = ConsoleApp::spawn(backend).await;
        for path in ["/admin/", "/admin/integrations", "/admin/users", "/admin/logs", "/admin/outbox", "/admin/audit"] {
            let page = app.get(None, path).await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(page.location(), "/admin/login", "{path}");
        }
        let form = app.get(None, "/admin/login").await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(form.body.contains("name=\"token\""));
        assert!(form.header("content-security-policy").contains("default-src 'none'"));

        let wrong = app.sign_in_with("essy_admin_not-a-token").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.body.contains("name=\"token\"") && wrong.body.contains("not a valid admin token"));
        assert!(wrong.header("set-cookie").is_empty());
        // The failed attempt matched no token, so no account: the deployment's (default)
        // account sees it in its trail, another company's operators never do.
        assert!(audit_actions(&app).await.iter().any(|a| a == "sign_in_failed"));
        let other = app
            .store()
            .list_audit(&app.account, false, None, 1000)
            .await
            .expect("audit");
        assert!(other.iter().all(|a| a.action != "sign_in_failed"), "{other:?}");

        let ok = app.sign_in_with(&app.admin_token).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert_eq!(ok.location(), "/admin/");
        let cookie = ok.header("set-cookie");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "{cookie}");

        let session = app.sign_in().await;
        let overview = app.get(Some(&session), "/admin/").await;
        assert!(overview.body.contains(GRAPH) && overview.body.contains(SCIM));
        assert!(overview.body.contains("ops"), "the signed-in token's name is shown");

        let out = app.post(Some(&session), "/admin/logout", &[("csrf", &session.csrf)]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert_eq!(out.location(), "/admin/login");
        let after = app.get(Some(&session), "/admin/").await;
        assert_eq!(after.status, StatusCode::SEE_OTHER, "the cookie is worthless after sign-out");
        let actions = audit_actions(&app).await;
        for a in ["sign_in_failed", "sign_in", "sign_out"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        app.finish().await;
    }
}

backend_test! {
    /// `server.public_url` on https makes the session cookie `Secure`.
    async fn secure_cookie_behind_https(backend) {
        let app = ConsoleApp::spawn_with(backend, |s| {
            s.server.public_url = Some("https://essentry.example.com".to_owned());
        })
        .await;
        let ok = app.sign_in_with(&app.admin_token).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert!(ok.header("set-cookie").contains("; Secure"), "{}", ok.header("set-cookie"));
        app.finish().await;
    }
}

backend_test! {
    /// A session ends 30 minutes after its last request, and 12 hours after sign-in however
    /// active it is.
    async fn sessions_expire_idle_and_absolute(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let session = app.sign_in().await;
        app.clock.advance(TimeDelta::minutes(29));
        assert_eq!(app.get(Some(&session), "/admin/").await.status, StatusCode::OK);
        app.clock.advance(TimeDelta::minutes(29));
        assert_eq!(app.get(Some(&session), "/admin/").await.status, StatusCode::OK, "activity renews the idle expiry");
        app.clock.advance(TimeDelta::minutes(31));
        let idle = app.get(Some(&session), "/admin/").await;
        assert_eq!(idle.status, StatusCode::SEE_OTHER, "idle for 31 minutes");
        assert_eq!(idle.location(), "/admin/login");

        let session = app.sign_in().await;
        for _ in 0..(12 * 60 / 25) {
            app.clock.advance(TimeDelta::minutes(25));
            assert_eq!(app.get(Some(&session), "/admin/users").await.status, StatusCode::OK);
        }
        app.clock.advance(TimeDelta::minutes(25));
        let absolute = app.get(Some(&session), "/admin/users").await;
        assert_eq!(absolute.status, StatusCode::SEE_OTHER, "12 hours after sign-in");
        app.finish().await;
    }
}

backend_test! {
    /// Five failed sign-ins from one client, then 429 (even with the right token) until the
    /// five-minute window has passed.
    async fn sign_in_is_rate_limited(backend) {
        let app = ConsoleApp::spawn(backend).await;
        for _ in 0..5 {
            assert_eq!(app.sign_in_with("essy_admin_wrong").await.status, StatusCode::UNAUTHORIZED);
        }
        let limited = app.sign_in_with(&app.admin_token).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.body.contains("Too many failed sign-ins"));
        assert!(limited.header("set-cookie").is_empty());
        app.clock.advance(TimeDelta::minutes(5));
        assert_eq!(app.sign_in_with(&app.admin_token).await.status, StatusCode::SEE_OTHER);
        assert!(audit_actions(&app).await.iter().any(|a| a == "sign_in_limited"));
        app.finish().await;
    }
}

backend_test! {
    /// Every state-changing form needs the session's CSRF token: without it, or with another
    /// session's, 403 and nothing changes.
    async fn forms_without_the_csrf_token_change_nothing(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let session = app.sign_in().await;
        let other = app.sign_in().await;
        assert_ne!(session.csrf, other.csrf);
        let integrations = || async {
            app.store().list_integrations(Some(&app.account)).await.expect("list").len()
        };
        let before = integrations().await;
        for csrf in [None, Some("forged"), Some(other.csrf.as_str())] {
            let mut form = vec![("kind", "scim"), ("name", "Sneaky")];
            if let Some(c) = csrf {
                form.push(("csrf", c));
            }
            let page = app.post(Some(&session), "/admin/integrations", &form).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
            let page = app
                .post(Some(&session), &format!("/admin/integrations/{SCIM}/disconnect"), &[("confirm", "yes"), ("csrf", csrf.unwrap_or(""))])
                .await;
            assert_eq!(page.status, StatusCode::FORBIDDEN);
            let page = app.post(Some(&session), "/admin/logout", &[("csrf", csrf.unwrap_or(""))]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN);
        }
        assert_eq!(integrations().await, before, "nothing was created or deleted");
        assert_eq!(app.get(Some(&session), "/admin/").await.status, StatusCode::OK, "still signed in");

        let created = app
            .post(Some(&session), "/admin/integrations", &[("csrf", &session.csrf), ("kind", "scim"), ("name", "Legit")])
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        assert_eq!(created.location(), "/admin/integrations/Legit");
        assert_eq!(integrations().await, before + 1);
        app.finish().await;
    }
}

backend_test! {
    /// No page carries a secret — SCIM token, Graph client secret, admin token — unless the
    /// operator reveals a SCIM token on purpose, which is audit-logged. Disconnecting stops the
    /// token at once.
    async fn secrets_stay_off_pages_unless_revealed(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let session = app.sign_in().await;
        let client_secret = "Sup3r-Secret~value.for.the.graph.app";
        let created = app
            .post(Some(&session), "/admin/integrations", &[
                ("csrf", &session.csrf), ("kind", "graph"), ("name", "Second"),
                ("tenant_id", "contoso.onmicrosoft.com"),
                ("client_id", "6731de76-14a6-49ae-97bc-6eba6914391e"),
                ("client_secret", client_secret),
                ("service_principal_id", "00000000-0000-0000-0000-0000000000aa"),
                ("cloud", "global"), ("user_name_from", "mail"), ("transitive", "on"),
                ("schedule", "every 2h"), ("max_deletes", "25"), ("max_delete_percent", ""),
            ])
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let (_, progress) = run(&app, &session, "run").await;
        assert_eq!(progress["outcome"], "success", "{progress}");
        let created = LogFilter { action: Some("create".to_owned()), ..LogFilter::default() };
        let log_rows = app.store().page_log(&app.account, &created, None, 1).await.expect("log");
        let user_id = log_rows[0].row.user_id.clone().expect("a user");
        let mut paths = vec![
            "/admin/".to_owned(), "/admin/integrations".to_owned(),
            format!("/admin/integrations/{SCIM}"), format!("/admin/integrations/{GRAPH}"),
            "/admin/integrations/Second".to_owned(), "/admin/users".to_owned(),
            format!("/admin/users/{user_id}"), "/admin/logs".to_owned(),
            "/admin/logs/export?format=csv".to_owned(), "/admin/logs/export?format=json".to_owned(),
            "/admin/outbox".to_owned(), "/admin/audit".to_owned(),
        ];
        paths.push(progress["id"].as_str().map(|id| format!("/admin/runs/{id}")).expect("run id"));
        let secrets = [app.scim_token.as_str(), client_secret, essentry_sync::entra::simulator::SAMPLE_CLIENT_SECRET, app.admin_token.as_str()];
        for path in &paths {
            let page = app.get(Some(&session), path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            for s in secrets {
                assert!(!page.body.contains(s), "{path} shows a secret");
            }
        }
        let masked = app.get(Some(&session), &format!("/admin/integrations/{SCIM}")).await;
        // minijinja escapes `/` as `&#x2f;` (a browser shows `/`).
        let endpoint_html = app.state.scim_base.replace('/', "&#x2f;");
        assert!(!masked.body.contains(&endpoint_html), "the Endpoint URL is masked too");
        assert!(masked.body.contains("Privacy Mode: ON"));

        let revealed = app
            .post(Some(&session), &format!("/admin/integrations/{SCIM}/reveal"), &[("csrf", &session.csrf)])
            .await;
        assert_eq!(revealed.status, StatusCode::OK);
        assert!(revealed.body.contains(&app.scim_token), "revealed on purpose");
        assert!(revealed.body.contains(&endpoint_html), "{}", revealed.body);
        let not_graph = app
            .post(Some(&session), &format!("/admin/integrations/{GRAPH}/reveal"), &[("csrf", &session.csrf)])
            .await;
        assert_eq!(not_graph.status, StatusCode::BAD_REQUEST, "a client secret is write-only");
        let audit = app.store().list_audit(&app.account, true, None, 100).await.expect("audit");
        assert!(audit.iter().any(|a| a.action == "token_revealed" && a.actor == "ops" && a.target.as_deref() == Some(SCIM)));

        let scim_ok = reqwest::Client::new()
            .get(format!("{}/Users", app.state.scim_base))
            .bearer_auth(&app.scim_token)
            .send().await.expect("scim");
        assert_eq!(scim_ok.status(), StatusCode::OK);
        let gone = app
            .post(Some(&session), &format!("/admin/integrations/{SCIM}/disconnect"), &[("csrf", &session.csrf), ("confirm", "yes")])
            .await;
        assert_eq!(gone.status, StatusCode::SEE_OTHER);
        let scim_after = reqwest::Client::new()
            .get(format!("{}/Users", app.state.scim_base))
            .bearer_auth(&app.scim_token)
            .send().await.expect("scim");
        assert_eq!(scim_after.status(), StatusCode::UNAUTHORIZED, "the token stops working at once");
        app.finish().await;
    }
}

backend_test! {
    /// A session sees its own account only: another account's integrations, users and log
    /// are not listed and their pages are "not found"; a token scoped to an account signs in to
    /// that account; revoking a token ends its sessions.
    async fn pages_are_scoped_to_the_account(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let now = app.clock.now();
        let other = app.store().ensure_account("other", now).await.expect("account");
        let key = app.state.secret_key.clone().expect("key");
        essentry_sync::integrations::create_scim(app.store(), &key, &other, "other", "OtherPush", "http://x/scim/v2", now)
            .await
            .expect("other integration");
        let session = app.sign_in().await;
        let list = app.get(Some(&session), "/admin/integrations").await;
        assert!(list.body.contains(SCIM) && !list.body.contains("OtherPush"));
        let page = app.get(Some(&session), "/admin/integrations/OtherPush").await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        let reveal = app.post(Some(&session), "/admin/integrations/OtherPush/reveal", &[("csrf", &session.csrf)]).await;
        assert_eq!(reveal.status, StatusCode::NOT_FOUND);
        let foreign_id = "00000000-0000-4000-8000-000000000001";
        assert_eq!(app.get(Some(&session), &format!("/admin/users/{foreign_id}")).await.status, StatusCode::NOT_FOUND);

        // A token scoped to the other account signs in to that account only.
        let scoped = create_admin_token(app.store(), "other-ops", Some(&other), app.clock.as_ref()).await;
        let page = app.sign_in_with(&scoped).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let cookie = page.header("set-cookie").split(';').next().expect("cookie").to_owned();
        let theirs = Session { cookie, csrf: String::new() };
        let list = app.get(Some(&theirs), "/admin/integrations").await;
        assert!(list.body.contains("OtherPush") && !list.body.contains(SCIM), "{}", list.body);
        assert_eq!(app.get(Some(&theirs), &format!("/admin/integrations/{GRAPH}")).await.status, StatusCode::NOT_FOUND);

        // Revoking a token ends its sessions at once.
        essentry_sync::admin_tokens::revoke(app.store(), "other-ops").await.expect("revoke");
        assert_eq!(app.get(Some(&theirs), "/admin/").await.status, StatusCode::SEE_OTHER);
        assert_eq!(app.get(Some(&session), "/admin/").await.status, StatusCode::OK, "other sessions stay");
        app.finish().await;
    }
}

backend_test! {
    /// Dry run, then Run now, against the Graph simulator: the progress endpoint goes to
    /// `finished`, the dry run lists the appointment that would be cancelled and its guest and
    /// changes nothing; the real run cancels it; provision on demand shows the step trace; the
    /// log exports as CSV and JSON with the page's filters; a dead email can be retried.
    multi_thread async fn cycles_on_demand_export_and_outbox(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let session = app.sign_in().await;
        let (first, progress) = run(&app, &session, "run").await;
        assert_eq!(progress["progress"]["phase"], "finished");
        assert!(progress["progress"]["users_read"].as_u64().unwrap_or(0) >= 12, "{progress}");
        assert!(progress["progress"]["changes_applied"].as_u64().unwrap_or(0) >= 12, "{progress}");
        let page = app.get(Some(&session), &first).await;
        assert!(page.body.contains("id=\"outcome\">success"), "{}", page.body);

        app.add_appointment("lynne.robbins@contoso.com", "Quarterly review", &[("Pat Guest", "pat@guest.example")]).await;
        app.unassign("lynne.robbins@contoso.com");
        let (dry, progress) = run(&app, &session, "dry_run").await;
        assert_eq!(progress["outcome"], "success");
        let page = app.get(Some(&session), &dry).await;
        assert!(page.body.contains("Appointments that would be cancelled"), "{}", page.body);
        assert!(page.body.contains("Quarterly review") && page.body.contains("pat@guest.example"));
        assert_eq!(app.store().outbox_counts(&app.account).await.expect("counts").values().sum::<i64>(), 0, "a dry run sends nothing");

        let (real, _) = run(&app, &session, "run").await;
        let page = app.get(Some(&session), &real).await;
        assert!(page.body.contains("Appointments cancelled") && page.body.contains("Quarterly review"));

        // Full reconcile: a cycle that reads the whole scope instead of the delta links.
        let (_, progress) = run(&app, &session, "full").await;
        assert_eq!(progress["outcome"], "success", "{progress}");
        let last = app.store().recent_cycles(&app.account, None, 1).await.expect("cycles");
        assert_eq!((last[0].mode.as_deref(), last[0].full_reason.as_deref()), (Some("full"), Some("requested")));
        // The integration page says how cycles read and when the next full reconcile is due.
        let page = app.get(Some(&session), &format!("/admin/integrations/{GRAPH}")).await;
        assert!(page.body.contains("changes since the last cycle (Graph delta) · full reconcile every 24h, next "), "{}", page.body);
        assert!(page.body.contains("sealed (write-only)") && !page.body.contains("(None)"), "{}", page.body);

        let pod = app
            .post(Some(&session), &format!("/admin/integrations/{GRAPH}/provision"), &[("csrf", &session.csrf), ("user", "adele.vance@contoso.com")])
            .await;
        assert_eq!(pod.status, StatusCode::OK, "{}", pod.body);
        for step in ["connection", "import", "scope", "match", "action"] {
            assert!(pod.body.contains(&format!("<strong>{step}</strong>")), "step {step}: {}", pod.body);
        }

        let csv = app.get(Some(&session), &format!("/admin/logs/export?format=csv&integration={GRAPH}&action=create")).await;
        assert_eq!(csv.status, StatusCode::OK);
        assert!(csv.header("content-type").starts_with("text/csv"));
        let lines: Vec<&str> = csv.body.lines().collect();
        assert!(lines[0].starts_with("at,integration,cycle_id"), "{}", lines[0]);
        assert_eq!(lines.len() - 1, 12, "one row per created user: {}", csv.body);
        assert!(lines[1..].iter().all(|l| l.contains(",create,")));
        let json = app.get(Some(&session), "/admin/logs/export?format=json&action=delete").await;
        let rows: Value = serde_json::from_str(&json.body).expect("JSON export");
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
        assert_eq!(rows[0]["user_name"], "lynne.robbins@contoso.com");
        let filtered = app.get(Some(&session), "/admin/logs?action=delete").await;
        assert!(filtered.body.contains("lynne.robbins@contoso.com") && !filtered.body.contains("adele.vance"), "{}", filtered.body);

        app.store()
            .execute_raw("UPDATE outbox SET status = 'dead', attempts = 8, last_error = '550 mailbox unavailable'")
            .await
            .expect("a dead message");
        let dead = app.get(Some(&session), "/admin/outbox?status=dead").await;
        assert!(dead.body.contains("pat@guest.example") && dead.body.contains("550 mailbox unavailable"));
        let id = app.store().page_outbox(&app.account, Some("dead"), None, 10).await.expect("outbox")[0].id.clone();
        let retried = app.post(Some(&session), &format!("/admin/outbox/{id}/retry"), &[("csrf", &session.csrf)]).await;
        assert_eq!(retried.status, StatusCode::SEE_OTHER);
        let counts = app.store().outbox_counts(&app.account).await.expect("counts");
        assert_eq!(counts.get("pending"), Some(&1));
        assert_eq!(counts.get("dead"), None);

        let actions = audit_actions(&app).await;
        for a in ["run_now", "dry_run", "provision_on_demand", "log_exported", "outbox_retried"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        let trail = app.get(Some(&session), "/admin/audit").await;
        assert!(trail.body.contains("outbox_retried") && trail.body.contains("ops"));
        app.finish().await;
    }
}

backend_test! {
    /// Lists page with keyset cursors: 120 users → three pages of at most 50, no user twice;
    /// search by userName prefix or name.
    async fn users_are_paged_and_searchable(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let token = create_admin_token(app.store(), "second", None, app.clock.as_ref()).await;
        assert_ne!(token, app.admin_token);
        let client = reqwest::Client::new();
        for i in 0..120 {
            let r = client
                .post(format!("{}/Users", app.state.scim_base))
                .bearer_auth(&app.scim_token)
                .header("content-type", "application/scim+json")
                .body(serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("user{i:03}@example.com"),
                    "name": {"givenName": if i == 7 { "Zelda" } else { "Sam" }, "familyName": "Doe"},
                }).to_string())
                .send().await.expect("scim");
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        let session = app.sign_in().await;
        let mut seen = std::collections::BTreeSet::new();
        let mut path = "/admin/users".to_owned();
        let mut pages = 0;
        loop {
            pages += 1;
            let page = app.get(Some(&session), &path).await;
            assert_eq!(page.status, StatusCode::OK);
            // Users pushed over SCIM are managed by the SCIM integration that created them.
            assert!(page.body.contains("<th>Managed by</th>"), "{}", page.body);
            assert!(page.body.contains(&format!(">{SCIM}</a></td>")), "{}", page.body);
            let names: Vec<String> = page.body.match_indices("@example.com</a>").map(|(i, _)| {
                let start = page.body[..i].rfind('>').map_or(0, |s| s + 1);
                page.body[start..i].to_owned()
            }).collect();
            assert!(names.len() <= 50);
            for n in names {
                assert!(seen.insert(n.clone()), "{n} twice");
            }
            match page.body.find("id=\"next-page\"") {
                Some(_) => {
                    let marker = "after=";
                    let at = page.body.rfind(marker).expect("cursor") + marker.len();
                    let end = page.body[at..].find('"').expect("end") + at;
                    path = format!("/admin/users?after={}", &page.body[at..end]);
                }
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 120);
        let search = app.get(Some(&session), "/admin/users?q=zel").await;
        assert!(search.body.contains("user007@example.com") && !search.body.contains("user008@example.com"));
        let search = app.get(Some(&session), "/admin/users?q=USER11").await;
        assert_eq!(search.body.matches("@example.com</a>").count(), 10, "user110..user119");
        app.finish().await;
    }
}

backend_test! {
    /// A cycle that would delete more than the threshold holds the deletions; the review page
    /// lists them with their appointment impact; approving one deletes that user (cancelling
    /// their appointment), rejecting the other keeps them; both are audit-logged.
    multi_thread async fn held_deletions_are_reviewed(backend) {
        let app = ConsoleApp::spawn(backend).await;
        let session = app.sign_in().await;
        let (_, first) = run(&app, &session, "run").await;
        assert_eq!(first["outcome"], "success");
        app.add_appointment("lynne.robbins@contoso.com", "Quarterly review", &[("Pat Guest", "pat@guest.example")]).await;
        app.unassign("lynne.robbins@contoso.com");
        app.unassign("nestor.wilke@contoso.com");
        let (_, held) = run(&app, &session, "run").await;
        assert_eq!(held["outcome"], "held", "2 of 12 is over the 10 % threshold: {held}");
        let page = app.get(Some(&session), "/admin/deletions").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("lynne.robbins@contoso.com") && page.body.contains("nestor.wilke@contoso.com"), "{}", page.body);
        let overview = app.get(Some(&session), "/admin/").await;
        assert!(overview.body.contains("deletions awaiting review"));

        let approved = app
            .post(Some(&session), &format!("/admin/deletions/{GRAPH}/approve"), &[("csrf", &session.csrf), ("user", "lynne.robbins@contoso.com")])
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        assert!(approved.body.contains("Approved: lynne.robbins@contoso.com deleted (1 appointments cancelled, 1 guests emailed)"), "{}", approved.body);
        let rejected = app
            .post(Some(&session), &format!("/admin/deletions/{GRAPH}/reject"), &[("csrf", &session.csrf), ("user", "nestor.wilke@contoso.com")])
            .await;
        assert_eq!(rejected.status, StatusCode::OK, "{}", rejected.body);
        assert!(rejected.body.contains("No deletions are waiting for review"));
        let users = app.get(Some(&session), "/admin/users?q=nestor").await;
        assert!(users.body.contains("nestor.wilke@contoso.com"), "kept");
        let users = app.get(Some(&session), "/admin/users?q=lynne").await;
        assert!(!users.body.contains("lynne.robbins@contoso.com"), "deleted");
        let forged = app
            .post(Some(&session), &format!("/admin/deletions/{GRAPH}/approve"), &[("all", "yes")])
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let actions = audit_actions(&app).await;
        assert!(actions.iter().any(|a| a == "deletion_approved") && actions.iter().any(|a| a == "deletion_rejected"));
        app.finish().await;
    }
}
