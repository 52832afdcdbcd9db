//! Replays Microsoft's "Develop and plan provisioning for a SCIM endpoint" tutorial (and the
//! aadOptscim062020 request shapes of the SCIM compatibility page) from
//! `tests/fixtures/entra_scim_tutorial.json` against a real server on both backends, then checks
//! what the run left in the store: live users and groups, provisioning-log rows, the outbox.
//!
//! Fixture format: `scenarios[]` of `{name, steps[]}`; a step has `name`, `method`, `path`, an
//! optional unencoded `query` (`k=v&k=v`, each value percent-encoded here), optional `body`,
//! `expect_status`, optional `expect_body` (a subset; `"{any}"` means present with any value;
//! arrays match element-wise in any order and must have the same length), optional
//! `expect_absent` (JSON pointers) and optional `capture` (`{placeholder: pointer}`). Captured
//! `{placeholder}`s are substituted in path, query, body and expect_body.

use std::collections::{BTreeMap, BTreeSet};

use essentry_sync::domain::UserId;
use essentry_sync::store::{LogQuery, LogRow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Backend, Reply, TestApp};

const FIXTURE: &str = include_str!("../fixtures/entra_scim_tutorial.json");
const DEFAULT_SCENARIO: &str = "tutorial (default, pre-aadOptscim062020)";
const FLAG_SCENARIO: &str = "aadOptscim062020";
const ANY: &str = "{any}";

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("tests/fixtures/entra_scim_tutorial.json is valid JSON")
}

fn scenario(name: &str) -> Value {
    fixture()["scenarios"]
        .as_array()
        .expect("fixture has a scenarios array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("fixture has no scenario named {name:?}"))
        .clone()
}

/// Replaces every captured `{name}` in `s`.
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn substitute_json(v: &Value, vars: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| substitute_json(i, vars)).collect())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (substitute(k, vars), substitute_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `{name}` placeholders still unresolved in `s` (other than `{any}`): a fixture mistake, such
/// as using a capture before the step that makes it.
fn unresolved(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty()
            && name != "any"
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            found.push(format!("{{{name}}}"));
        }
        rest = &after[close + 1..];
    }
    found
}

fn unresolved_json(v: &Value, exempt_any: bool) -> Vec<String> {
    match v {
        Value::String(s) if exempt_any && s == ANY => Vec::new(),
        Value::String(s) => unresolved(s),
        Value::Array(items) => items
            .iter()
            .flat_map(|i| unresolved_json(i, exempt_any))
            .collect(),
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| {
                let mut u = unresolved(k);
                u.extend(unresolved_json(v, exempt_any));
                u
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `actual` contains `expected` as a subset (see the module docs); on a mismatch, the
/// JSON pointer where it happened and why.
fn subset(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), a) if s == ANY => {
            if a.is_null() {
                Err(format!("{at}: expected a value, found null"))
            } else {
                Ok(())
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let here = format!("{at}/{k}");
                let av = a
                    .get(k)
                    .ok_or_else(|| format!("{here}: missing (expected {ev})"))?;
                subset(ev, av, &here)?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{at}: expected {} element(s), found {}: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            let mut used = vec![false; a.len()];
            if assign(e, a, &mut used, at) {
                Ok(())
            } else {
                Err(format!(
                    "{at}: no one-to-one match of the expected elements {expected} in {actual}"
                ))
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => Ok(()),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: expected {e}, found {a}")),
    }
}

/// Backtracking assignment of each expected element to a distinct matching actual element.
fn assign(expected: &[Value], actual: &[Value], used: &mut [bool], at: &str) -> bool {
    let Some((first, rest)) = expected.split_first() else {
        return true;
    };
    for i in 0..actual.len() {
        if !used[i] && subset(first, &actual[i], at).is_ok() {
            used[i] = true;
            if assign(rest, actual, used, at) {
                return true;
            }
            used[i] = false;
        }
    }
    false
}

/// What the run did, as seen in the responses: the oracle for the final store checks.
#[derive(Default)]
struct Observed {
    /// Users created and not (yet) deleted or deactivated, id -> last userName seen.
    live_users: BTreeMap<String, String>,
    /// Users the scenario deleted (DELETE 204, or PATCH/PUT answering `active: false`),
    /// id -> userName at that moment.
    removed_users: BTreeMap<String, String>,
    /// Users created (201), id -> userName at creation.
    created_users: BTreeMap<String, String>,
    live_groups: BTreeSet<String>,
    removed_groups: BTreeSet<String>,
    /// `scimType` of every refused POST /Users.
    refused_creates: Vec<String>,
}

impl Observed {
    fn record(&mut self, method: &Method, path: &str, reply: &Reply) {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body_id = reply.body["id"].as_str().map(str::to_owned);
        let user_name = reply.body["userName"].as_str().unwrap_or("").to_owned();
        match (method.as_str(), segments.as_slice(), reply.status.as_u16()) {
            ("POST", ["Users"], 201) => {
                let id = body_id.expect("a created user has an id");
                self.created_users.insert(id.clone(), user_name.clone());
                self.live_users.insert(id, user_name);
            }
            ("POST", ["Users"], s) if s >= 400 => self.refused_creates.push(
                reply.body["scimType"]
                    .as_str()
                    .unwrap_or(reply.status.as_str())
                    .to_owned(),
            ),
            ("PATCH" | "PUT", ["Users", id], 200) => {
                if reply.body["active"] == false {
                    self.live_users.remove(*id);
                    self.removed_users.insert((*id).to_owned(), user_name);
                } else {
                    self.live_users.insert((*id).to_owned(), user_name);
                }
            }
            ("DELETE", ["Users", id], 204) => {
                let name = self.live_users.remove(*id).unwrap_or_default();
                self.removed_users.insert((*id).to_owned(), name);
            }
            ("POST", ["Groups"], 201) => {
                self.live_groups
                    .insert(body_id.expect("a created group has an id"));
            }
            ("DELETE", ["Groups", id], 204) => {
                self.live_groups.remove(*id);
                self.removed_groups.insert((*id).to_owned());
            }
            _ => {}
        }
    }
}

fn describe_request(
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> String {
    let mut s = format!("{method} {path}");
    if !query.is_empty() {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let wire = serde_urlencoded::to_string(query).unwrap_or_default();
        s.push_str(&format!("?{}\n  (on the wire: ?{wire})", q.join("&")));
    }
    if let Some(b) = body {
        s.push_str(&format!(
            "\n{}",
            serde_json::to_string_pretty(b).unwrap_or_default()
        ));
    }
    s
}

fn describe_reply(reply: &Reply) -> String {
    let mut headers: Vec<String> = reply
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>")))
        .collect();
    headers.sort();
    format!(
        "{}\n{}\n\n{}",
        reply.status,
        headers.join("\n"),
        serde_json::to_string_pretty(&reply.body).unwrap_or_default()
    )
}

/// Runs every step of `scenario` against `app`; panics naming the backend, scenario and step.
async fn replay(app: &TestApp, scenario: &Value) -> Observed {
    let scenario_name = scenario["name"].as_str().expect("scenario name");
    let steps = scenario["steps"].as_array().expect("scenario steps");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut observed = Observed::default();
    for (n, step) in steps.iter().enumerate() {
        let step_name = step["name"].as_str().expect("step name");
        let here = format!(
            "{:?} backend, scenario {scenario_name:?}, step {} {step_name:?}",
            app.backend,
            n + 1
        );
        let fixture_bug = |what: String| -> ! { panic!("fixture error at {here}: {what}") };

        let method = Method::from_bytes(step["method"].as_str().expect("method").as_bytes())
            .unwrap_or_else(|e| fixture_bug(format!("bad method: {e}")));
        let path = substitute(step["path"].as_str().expect("path"), &vars);
        let query: Vec<(String, String)> = step["query"]
            .as_str()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (k.to_owned(), substitute(v, &vars))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = step.get("body").map(|b| substitute_json(b, &vars));
        let expect_body = step.get("expect_body").map(|b| substitute_json(b, &vars));
        let mut left: Vec<String> = unresolved(&path);
        left.extend(query.iter().flat_map(|(_, v)| unresolved(v)));
        left.extend(body.iter().flat_map(|b| unresolved_json(b, false)));
        left.extend(expect_body.iter().flat_map(|b| unresolved_json(b, true)));
        if !left.is_empty() {
            fixture_bug(format!("placeholders never captured: {left:?}"));
        }
        let expect_status = step["expect_status"]
            .as_u64()
            .and_then(|s| StatusCode::from_u16(s as u16).ok())
            .unwrap_or_else(|| fixture_bug("expect_status must be an HTTP status".to_owned()));

        let reply = app
            .request_with(method.clone(), &path, body.as_ref(), |r| r.query(&query))
            .await;

        let mut problems = Vec::new();
        if reply.status != expect_status {
            problems.push(format!(
                "status: expected {expect_status}, got {}",
                reply.status
            ));
        }
        if let Some(expected) = &expect_body
            && let Err(e) = subset(expected, &reply.body, "")
        {
            problems.push(format!("body: {e}"));
        }
        for pointer in step["expect_absent"].as_array().into_iter().flatten() {
            let pointer = pointer.as_str().expect("expect_absent holds JSON pointers");
            if let Some(v) = reply.body.pointer(pointer).filter(|v| !v.is_null()) {
                problems.push(format!("body: {pointer} must be absent, found {v}"));
            }
        }
        if problems.is_empty()
            && let Some(Value::Object(capture)) = step.get("capture")
        {
            for (name, pointer) in capture {
                let pointer = pointer.as_str().expect("capture pointers are strings");
                match reply.body.pointer(pointer) {
                    Some(Value::String(s)) => {
                        vars.insert(name.clone(), s.clone());
                    }
                    Some(v) if !v.is_null() => {
                        vars.insert(name.clone(), v.to_string());
                    }
                    _ => problems.push(format!("capture {name}: nothing at {pointer}")),
                }
            }
        }
        if !problems.is_empty() {
            panic!(
                "Entra tutorial step failed\n  at: {here}\n  {}\n\nrequest:\n{}\n\nresponse:\n{}\n",
                problems.join("\n  "),
                describe_request(&method, &path, &query, body.as_ref()),
                describe_reply(&reply),
            );
        }
        observed.record(&method, &path, &reply);
    }
    observed
}

/// After the replay: the store holds exactly the users and groups the responses left alive, and
/// the provisioning log tells the same story as the responses.
async fn assert_store(app: &TestApp, scenario_name: &str, seen: &Observed) {
    let here = format!("{:?} backend, scenario {scenario_name:?}", app.backend);
    let store = app.store();

    let (users, total) = store
        .list_users(&app.account, None, 0, 10_000, true)
        .await
        .expect("list users");
    let stored: BTreeMap<String, String> = users
        .iter()
        .map(|u| (u.id.to_string(), u.attrs.user_name.as_str().to_owned()))
        .collect();
    assert_eq!(total, Some(stored.len() as i64), "{here}: user count");
    assert_eq!(
        stored, seen.live_users,
        "{here}: the store must hold exactly the users the run left alive"
    );
    for id in seen.removed_users.keys() {
        let parsed = UserId::parse(id).expect("a server-issued user id");
        assert!(
            store
                .user_by_id(&app.account, &parsed)
                .await
                .expect("user by id")
                .is_none(),
            "{here}: deleted/deactivated user {id} is still stored"
        );
    }

    let (groups, _) = store
        .list_groups(&app.account, None, 0, 10_000, true)
        .await
        .expect("list groups");
    let stored: BTreeSet<String> = groups.iter().map(|g| g.id.to_string()).collect();
    assert_eq!(
        stored, seen.live_groups,
        "{here}: the store must hold exactly the groups the run left alive"
    );

    // No appointments were hosted, so deprovisioning had nothing to cancel or announce.
    let outbox = store.list_outbox(&app.account).await.expect("outbox");
    assert!(
        outbox.is_empty(),
        "{here}: unexpected outbox rows: {outbox:?}"
    );

    let log = store
        .list_log(
            &app.account,
            &LogQuery {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("provisioning log");
    let rows = |action: &str, status: &str| -> Vec<&LogRow> {
        log.iter()
            .filter(|l| l.action == action && l.status == status)
            .collect()
    };
    let by_user = |rows: &[&LogRow], id: &str| -> usize {
        rows.iter()
            .filter(|l| l.user_id.as_deref() == Some(id))
            .count()
    };
    for l in &log {
        assert_eq!(l.source, "scim", "{here}: {l:?}");
        assert_eq!(l.integration.as_deref(), Some("EntraID"), "{here}: {l:?}");
    }

    let created = rows("create", "success");
    assert_eq!(
        created.len(),
        seen.created_users.len(),
        "{here}: one create row per created user: {created:#?}"
    );
    for (id, name) in &seen.created_users {
        assert_eq!(by_user(&created, id), 1, "{here}: create row of {id}");
        let row = created
            .iter()
            .find(|l| l.user_id.as_deref() == Some(id.as_str()))
            .expect("create row");
        assert_eq!(row.user_name.as_deref(), Some(name.as_str()), "{here}");
    }

    let deleted = rows("delete", "success");
    assert_eq!(
        deleted.len(),
        seen.removed_users.len(),
        "{here}: one delete row per user deleted or deactivated: {deleted:#?}"
    );
    for (id, name) in &seen.removed_users {
        let row = deleted
            .iter()
            .find(|l| l.user_id.as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{here}: no delete row for {id}"));
        assert!(
            row.user_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name)),
            "{here}: the delete row names the user as last provisioned ({name}): {row:?}"
        );
    }

    let mut refused: Vec<String> = rows("create", "failure")
        .iter()
        .map(|l| l.error_code.clone().unwrap_or_default())
        .collect();
    refused.sort();
    let mut expected = seen.refused_creates.clone();
    expected.sort();
    assert_eq!(
        refused, expected,
        "{here}: each refused create is logged as a failure with its scimType"
    );
    assert!(
        rows("update", "failure").is_empty() && rows("delete", "failure").is_empty(),
        "{here}: no failed updates or deletes expected: {log:#?}"
    );
}

async fn run(backend: Backend, name: &str) {
    let scenario = scenario(name);
    let app = TestApp::spawn(backend).await;
    let seen = replay(&app, &scenario).await;
    assert_store(&app, name, &seen).await;
    app.finish().await;
}

backend_test! {
    async fn tutorial_default_behaviour(backend) {
        run(backend, DEFAULT_SCENARIO).await;
    }
}

backend_test! {
    async fn tutorial_with_aad_opt_scim_062020(backend) {
        run(backend, FLAG_SCENARIO).await;
    }
}

/// Every scenario of the fixture is replayed by one of the tests above.
#[test]
fn every_fixture_scenario_is_replayed() {
    let names: Vec<String> = fixture()["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, [DEFAULT_SCENARIO, FLAG_SCENARIO]);
}

#[test]
fn subset_matching_rules() {
    let actual =
        serde_json::json!({"a": 1, "b": [{"v": "x", "t": 1}, {"v": "y"}], "c": [], "d": null});
    assert!(
        subset(
            &serde_json::json!({"a": ANY, "b": [{"v": "y"}, {"v": "x"}], "c": []}),
            &actual,
            ""
        )
        .is_ok()
    );
    assert!(
        subset(&serde_json::json!({"b": [{"v": "x"}]}), &actual, "").is_err(),
        "lengths differ"
    );
    assert!(
        subset(
            &serde_json::json!({"b": [{"v": "x"}, {"v": "x"}]}),
            &actual,
            ""
        )
        .is_err(),
        "distinct elements"
    );
    assert!(subset(&serde_json::json!({"d": ANY}), &actual, "").is_err());
    assert!(subset(&serde_json::json!({"e": ANY}), &actual, "").is_err());
    assert!(subset(&serde_json::json!({"a": 1.0}), &actual, "").is_ok());
    assert_eq!(
        unresolved("members[value eq \"{member_id}\"] {any}"),
        ["{member_id}"]
    );
}
