//! The SCIM protocol as a demanding client (Entra, Okta, scim2-tester) relies on it, over real
//! HTTP on both backends: authentication, filters, paging and projection, error bodies,
//! discovery and `.search`. User writes are in `scim_users`, groups in `scim_groups`; the
//! helpers here serve all three.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, SCIM_JSON, TestApp};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// Percent-encodes everything but RFC 3986 unreserved characters (spaces become `%20`).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A request to the SCIM base with no headers set (no bearer token either).
pub fn raw(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client.request(method, format!("{}{}", app.base, path))
}

pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request sent");
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

/// A PatchOp request body.
pub fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": ops})
}

/// Asserts a SCIM error response (RFC 7644 §3.12): status, Error schema, `status` as a string,
/// `scimType` when given, and the SCIM media type.
#[track_caller]
pub fn assert_error(r: &Reply, status: StatusCode, scim_type: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR]), "{what}: {}", r.body);
    assert_eq!(
        r.body["status"],
        json!(status.as_u16().to_string()),
        "{what}: status must be a string: {}",
        r.body
    );
    assert!(r.body["detail"].is_string(), "{what}: {}", r.body);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with(SCIM_JSON), "{what}: content-type {ct:?}");
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{what}: {}", r.body);
    }
}

pub fn resources(r: &Reply) -> Vec<Value> {
    r.body["Resources"].as_array().cloned().unwrap_or_default()
}

/// Asserts a well-formed ListResponse and returns its resources.
#[track_caller]
pub fn list_ok(r: &Reply, what: &str) -> Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);
    assert_eq!(r.body["schemas"], json!([LIST]), "{what}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with(SCIM_JSON), "{what}: content-type {ct:?}");
    let items = resources(r);
    assert_eq!(r.body["itemsPerPage"], json!(items.len()), "{what}");
    items
}

/// The userNames a `/Users` filter returns (checking that `totalResults` agrees).
pub async fn find(app: &TestApp, filter: &str) -> Vec<String> {
    let r = app.get(&format!("/Users?filter={}", pct(filter))).await;
    let what = format!("{:?} filter {filter}", app.backend);
    let items = list_ok(&r, &what);
    assert_eq!(r.body["totalResults"], json!(items.len()), "{what}");
    items
        .iter()
        .map(|u| u["userName"].as_str().expect("userName").to_owned())
        .collect()
}

async fn bad_filter(app: &TestApp, path: &str, filter: &str) {
    let r = app.get(&format!("{path}?filter={}", pct(filter))).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        Some("invalidFilter"),
        &format!("{:?} {path} filter {filter}", app.backend),
    );
}

pub async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.post("/Users", &body).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{:?}: {}",
        app.backend,
        r.body
    );
    r.body
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication

backend_test! {
    async fn auth_is_bearer_only_and_dies_with_the_integration(backend) {
        let app = TestApp::spawn(backend).await;
        let cases = [
            ("no Authorization header", None),
            ("wrong token", Some("Bearer not-the-token".to_owned())),
            ("Basic scheme", Some("Basic dXNlcjpwYXNz".to_owned())),
            (
                "the right token under the Basic scheme",
                Some(format!("Basic {}", app.token)),
            ),
            ("Bearer without a token", Some("Bearer ".to_owned())),
        ];
        for (what, header) in cases {
            let mut req = raw(&app, Method::GET, "/Users");
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let r = send(req).await;
            assert_error(
                &r,
                StatusCode::UNAUTHORIZED,
                None,
                &format!("{backend:?} {what}"),
            );
            let challenge = r.header("www-authenticate").unwrap_or("");
            assert!(
                challenge.starts_with("Bearer"),
                "{backend:?} {what}: WWW-Authenticate {challenge:?}"
            );
        }
        // A bad token is refused on a write too, and nothing is created.
        let r = send(
            raw(&app, Method::POST, "/Users")
                .header("authorization", "Bearer nope")
                .header("content-type", SCIM_JSON)
                .body(json!({"schemas": [USER], "userName": "x@contoso.com"}).to_string()),
        )
        .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, None, "POST with a bad token");
        // The scheme name is case-insensitive (RFC 7235).
        let r = send(
            raw(&app, Method::GET, "/Users")
                .header("authorization", format!("bearer {}", app.token)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["totalResults"], 0, "the bad POST created nothing");

        essentry_sync::integrations::delete(app.store(), &app.account, "default", "EntraID")
            .await
            .expect("delete integration");
        let r = app.get("/Users").await;
        assert_error(
            &r,
            StatusCode::UNAUTHORIZED,
            None,
            &format!("{backend:?}: token of a deleted integration"),
        );
        assert!(r.header("www-authenticate").is_some());
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Filters

struct Five {
    ids: Vec<String>,
}

/// ann, bob, carl, dora, eve — created five minutes apart starting at t0.
async fn five_users(app: &TestApp) -> Five {
    let bodies = [
        json!({"schemas": [USER], "userName": "ann@contoso.com", "externalId": "EXT-ann",
               "displayName": "Ann Lee", "name": {"givenName": "Ann", "familyName": "Lee"},
               "emails": [{"type": "work", "value": "ann.lee@work.example", "primary": true}]}),
        json!({"schemas": [USER], "userName": "bob@contoso.com", "externalId": "ext-bob",
               "displayName": "50% Bob", "name": {"givenName": "Bob", "familyName": "Stone"},
               "emails": [{"type": "home", "value": "bob@home.example"}]}),
        json!({"schemas": [USER], "userName": "carl@fabrikam.com", "displayName": "5000 Carl",
               "emails": [{"type": "work", "value": "carl@fabrikam.com"}]}),
        json!({"schemas": [USER], "userName": "dora@fabrikam.com", "displayName": "x_y Dora"}),
        json!({"schemas": [USER], "userName": "eve@fabrikam.com", "displayName": "xzy Eve"}),
    ];
    let mut ids = Vec::new();
    for (i, b) in bodies.into_iter().enumerate() {
        if i > 0 {
            app.clock.advance(TimeDelta::minutes(5));
        }
        ids.push(id(&create(app, b).await));
    }
    Five { ids }
}

backend_test! {
    async fn user_filters(backend) {
        let app = TestApp::spawn(backend).await;
        let five = five_users(&app).await;
        let all = ["ann", "bob", "carl", "dora", "eve"];
        let names = |list: &[&str]| -> Vec<String> {
            list.iter()
                .map(|n| {
                    let domain = if ["ann", "bob"].contains(n) {
                        "contoso.com"
                    } else {
                        "fabrikam.com"
                    };
                    format!("{n}@{domain}")
                })
                .collect()
        };
        let cases: Vec<(String, Vec<&str>)> = vec![
            (r#"userName eq "ANN@CONTOSO.COM""#.into(), vec!["ann"]),
            (r#"USERNAME EQ "ann@contoso.com""#.into(), vec!["ann"]),
            (format!(r#"{USER}:userName eq "bob@contoso.com""#), vec!["bob"]),
            // emails are kept but are not the login: no user is found by one via userName.
            (r#"userName eq "ann.lee@work.example""#.into(), vec![]),
            (r#"externalId eq "EXT-ann""#.into(), vec!["ann"]),
            (r#"externalId eq "ext-ann""#.into(), vec![]),
            (
                r#"emails[type eq "work"].value eq "ann.lee@work.example""#.into(),
                vec!["ann"],
            ),
            (
                r#"emails[type eq "work"].value eq "bob@home.example""#.into(),
                vec![],
            ),
            (r#"emails[type eq "work"]"#.into(), vec!["ann", "carl"]),
            (r#"emails.value eq "BOB@home.example""#.into(), vec!["bob"]),
            (
                r#"userName ew "@fabrikam.com" and displayName sw "x""#.into(),
                vec!["dora", "eve"],
            ),
            (
                r#"userName eq "ann@contoso.com" or externalId eq "ext-bob""#.into(),
                vec!["ann", "bob"],
            ),
            (
                r#"not (userName ew "@fabrikam.com")"#.into(),
                vec!["ann", "bob"],
            ),
            (
                r#"(userName sw "a" or userName sw "b") and not (externalId eq "ext-bob")"#.into(),
                vec!["ann"],
            ),
            (
                r#"userName ne "ann@contoso.com""#.into(),
                vec!["bob", "carl", "dora", "eve"],
            ),
            (r#"userName co "CONTOSO""#.into(), vec!["ann", "bob"]),
            (r#"userName sw "Car""#.into(), vec!["carl"]),
            (r#"displayName ew "eve""#.into(), vec!["eve"]),
            // `%` and `_` are literal characters, not LIKE wildcards.
            (r#"displayName co "50%""#.into(), vec!["bob"]),
            (r#"displayName sw "x_y""#.into(), vec!["dora"]),
            (r#"displayName co "%""#.into(), vec!["bob"]),
            (r#"displayName co "_""#.into(), vec!["dora"]),
            (r#"externalId pr"#.into(), vec!["ann", "bob"]),
            (r#"not (externalId pr)"#.into(), vec!["carl", "dora", "eve"]),
            (r#"name.givenName eq "bob""#.into(), vec!["bob"]),
            (
                r#"meta.lastModified gt "2026-11-28T12:05:00Z""#.into(),
                vec!["carl", "dora", "eve"],
            ),
            (
                r#"meta.lastModified ge "2026-11-28T12:05:00Z""#.into(),
                vec!["bob", "carl", "dora", "eve"],
            ),
            (
                r#"meta.lastModified lt "2026-11-28T12:05:00Z""#.into(),
                vec!["ann"],
            ),
            (
                r#"meta.lastModified le "2026-11-28T12:05:00.000+00:00""#.into(),
                vec!["ann", "bob"],
            ),
            (
                r#"meta.created gt "2026-11-28T12:04:59Z" and meta.created lt "2026-11-28T12:10:01Z""#
                    .into(),
                vec!["bob", "carl"],
            ),
            (r#"active eq true"#.into(), all.to_vec()),
            (r#"active eq false"#.into(), vec![]),
            (r#"active ne false"#.into(), all.to_vec()),
            (format!(r#"id eq "{}""#, five.ids[1]), vec!["bob"]),
            (
                format!(r#"id eq "{}""#, uuid::Uuid::new_v4()),
                vec![],
            ),
        ];
        for (filter, expected) in cases {
            let got: BTreeSet<String> = find(&app, &filter).await.into_iter().collect();
            let want: BTreeSet<String> = names(&expected).into_iter().collect();
            assert_eq!(got, want, "{backend:?} filter {filter}");
        }

        // `+` in a raw query string is a space (application/x-www-form-urlencoded).
        let r = app
            .get("/Users?filter=userName+eq+%22BOB%40contoso.com%22")
            .await;
        let items = list_ok(&r, "+ as space");
        assert_eq!(items.len(), 1, "{backend:?}: {}", r.body);
        assert_eq!(items[0]["userName"], "bob@contoso.com");
        assert_eq!(r.body["totalResults"], 1);
        // ... and a literal plus is %2B.
        let r = app.get("/Users?filter=displayName%20co%20%22%2B%22").await;
        assert_eq!(list_ok(&r, "%2B").len(), 0, "{backend:?}: {}", r.body);

        // Never an unfiltered list: every filter we cannot answer is a 400 invalidFilter.
        for bad in [
            r#"title eq "x""#,
            r#"active gt true"#,
            r#"active co "x""#,
            r#"active eq "yes""#,
            r#"userName eq"#,
            r#"userName eq "ann@contoso.com" and"#,
            r#"(userName eq "ann@contoso.com""#,
            r#"userName eq ann@contoso.com"#,
            r#"userName zz "x""#,
            r#"emails[type eq "work""#,
            r#"meta.lastModified gt "yesterday""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x""#,
            r#"members[value eq "x"]"#,
        ] {
            bad_filter(&app, "/Users", bad).await;
        }
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Paging and projection

backend_test! {
    async fn paging_and_projection(backend) {
        let app = TestApp::spawn(backend).await;
        five_users(&app).await;
        let page = |r: &Reply| -> Vec<String> {
            resources(r)
                .iter()
                .map(|u| {
                    u["userName"]
                        .as_str()
                        .unwrap()
                        .split('@')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };

        let r = app.get("/Users?startIndex=2&count=2").await;
        list_ok(&r, "page 2");
        assert_eq!(r.body["totalResults"], 5, "{backend:?}: {}", r.body);
        assert_eq!(r.body["startIndex"], 2);
        assert_eq!(r.body["itemsPerPage"], 2);
        assert_eq!(page(&r), ["bob", "carl"]);

        let r = app.get("/Users?startIndex=5&count=2").await;
        list_ok(&r, "last page");
        assert_eq!(r.body["totalResults"], 5);
        assert_eq!(page(&r), ["eve"]);

        let r = app.get("/Users?startIndex=9&count=2").await;
        list_ok(&r, "past the end");
        assert_eq!(r.body["totalResults"], 5);
        assert_eq!(r.body["itemsPerPage"], 0);

        let r = app.get("/Users?startIndex=0&count=2").await;
        list_ok(&r, "startIndex=0");
        assert_eq!(r.body["startIndex"], 1, "startIndex below 1 is 1");
        assert_eq!(page(&r), ["ann", "bob"]);
        assert_eq!(r.body["totalResults"], 5);

        let r = app.get("/Users?startIndex=-3&count=1").await;
        list_ok(&r, "negative startIndex");
        assert_eq!(page(&r), ["ann"]);

        let r = app.get("/Users?count=0").await;
        list_ok(&r, "count=0");
        assert_eq!(r.body["totalResults"], 5);
        assert_eq!(r.body["itemsPerPage"], 0);
        assert!(resources(&r).is_empty());

        let r = app
            .get(&format!(
                "/Users?filter={}&startIndex=2&count=1",
                pct(r#"userName ew "@fabrikam.com""#)
            ))
            .await;
        list_ok(&r, "filtered page");
        assert_eq!(r.body["totalResults"], 3);
        assert_eq!(page(&r), ["dora"]);

        for bad in ["startIndex=abc", "count=1.5", "count=ten", "startIndex="] {
            let r = app.get(&format!("/Users?{bad}")).await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("{backend:?} {bad}"),
            );
        }

        let r = app.get("/Users?attributes=userName").await;
        for u in list_ok(&r, "attributes=userName") {
            let keys: BTreeSet<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["id", "schemas", "userName"]),
                "{backend:?}: {u}"
            );
        }
        let r = app
            .get("/Users?attributes=name.givenName,emails.value&count=1")
            .await;
        let u = &list_ok(&r, "sub-attributes")[0];
        assert_eq!(u["name"], json!({"givenName": "Ann"}), "{backend:?}: {u}");
        assert_eq!(u["emails"], json!([{"value": "ann.lee@work.example"}]));
        assert!(u.get("userName").is_none());

        let r = app.get("/Users?excludedAttributes=name,emails").await;
        let items = list_ok(&r, "excludedAttributes");
        assert_eq!(items.len(), 5);
        for u in items {
            assert!(u.get("name").is_none(), "{backend:?}: {u}");
            assert!(u.get("emails").is_none(), "{backend:?}: {u}");
            assert!(u["userName"].is_string() && u["id"].is_string());
            assert!(u["meta"].is_object());
        }
        // `id` and `schemas` are returned always, even when excluded.
        let r = app
            .get("/Users?excludedAttributes=id,schemas&count=1")
            .await;
        let u = &list_ok(&r, "id excluded")[0];
        assert!(
            u["id"].is_string() && u["schemas"].is_array(),
            "{backend:?}: {u}"
        );

        // Projection on a single GET.
        let ann = &list_ok(&app.get("/Users?count=1").await, "first")[0];
        let r = app
            .get(&format!("/Users/{}?attributes=userName", id(ann)))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let keys: BTreeSet<&str> = r
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "schemas", "userName"]));
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Errors

backend_test! {
    async fn error_responses(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = format!("Bearer {}", app.token);

        let big = json!({"schemas": [USER], "userName": "big@contoso.com",
                         "displayName": "x".repeat(1024 * 1024 + 10)});
        let r = app.post("/Users", &big).await;
        assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, None, "body over 1 MiB");
        let r = app
            .patch(
                &format!("/Users/{}", uuid::Uuid::new_v4()),
                &patch_op(
                    json!([{"op": "add", "path": "displayName", "value": "y".repeat(1 << 21)}]),
                ),
            )
            .await;
        assert_error(
            &r,
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            "PATCH body over 1 MiB",
        );

        let r = send(
            raw(&app, Method::POST, "/Users")
                .header("authorization", &auth)
                .header("content-type", "text/plain")
                .body(json!({"schemas": [USER], "userName": "t@contoso.com"}).to_string()),
        )
        .await;
        assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, None, "text/plain");
        // Both JSON media types are accepted, with parameters.
        for ct in ["application/json", "application/scim+json; charset=utf-8"] {
            let r = send(
                raw(&app, Method::POST, "/Users")
                    .header("authorization", &auth)
                    .header("content-type", ct)
                    .body(
                        json!({"schemas": [USER], "userName": format!("{}@contoso.com", ct.len())})
                            .to_string(),
                    ),
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::CREATED,
                "{backend:?} {ct}: {}",
                r.body
            );
        }

        let r = send(
            raw(&app, Method::POST, "/Users")
                .header("authorization", &auth)
                .header("content-type", SCIM_JSON)
                .body("{\"schemas\": [\"x\",}"),
        )
        .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "malformed JSON",
        );
        let r = send(
            raw(&app, Method::POST, "/Users")
                .header("authorization", &auth)
                .header("content-type", SCIM_JSON),
        )
        .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "empty body",
        );
        let r = app.post("/Users", &json!(["not", "an", "object"])).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "array body",
        );

        let r = app.get("/Foo").await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "unknown endpoint");
        let r = app.get("/Users/x/y").await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "unknown nested endpoint");
        let r = app.delete("/ServiceProviderConfig").await;
        assert_error(
            &r,
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "DELETE /ServiceProviderConfig",
        );
        let r = app.delete("/Users").await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, None, "DELETE /Users");
        let r = app.get("/Users/not-a-uuid").await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "GET /Users/not-a-uuid");
        let r = app.get(&format!("/Users/{}", uuid::Uuid::new_v4())).await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "GET unknown user");
        let r = app
            .delete(&format!("/Users/{}", uuid::Uuid::new_v4()))
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "DELETE unknown user");
        let r = app.get("/Groups/not-a-uuid").await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "GET /Groups/not-a-uuid");
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Discovery and .search

fn find_by_id<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list:?}"))
}

backend_test! {
    async fn discovery_endpoints(backend) {
        let app = TestApp::spawn(backend).await;
        let r = app.get("/ServiceProviderConfig").await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with(SCIM_JSON)
        );
        let spc = &r.body;
        assert_eq!(
            spc["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
        );
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["filter"]["supported"], true);
        assert!(spc["filter"]["maxResults"].as_i64().unwrap() > 0);
        assert_eq!(spc["etag"]["supported"], true);
        assert_eq!(spc["bulk"]["supported"], false);
        assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");

        let r = app.get("/ResourceTypes").await;
        let types = list_ok(&r, "ResourceTypes");
        assert_eq!(r.body["totalResults"], 2);
        let user = find_by_id(&types, "User");
        assert_eq!(user["endpoint"], "/Users");
        assert_eq!(user["schema"], USER);
        assert_eq!(
            user["schemaExtensions"],
            json!([{"schema": ENTERPRISE, "required": false}])
        );
        let group = find_by_id(&types, "Group");
        assert_eq!(group["endpoint"], "/Groups");
        assert_eq!(group["schema"], GROUP);
        let r = app.get("/ResourceTypes/User").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body, user);
        let r = app.get("/ResourceTypes/Printer").await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "unknown resource type");

        let r = app.get("/Schemas").await;
        let schemas = list_ok(&r, "Schemas");
        assert_eq!(r.body["totalResults"], 3);
        let user_schema = find_by_id(&schemas, USER);
        let user_name = user_schema["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "userName")
            .expect("userName attribute");
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["caseExact"], false);
        let password = user_schema["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "password");
        if let Some(p) = password {
            assert_eq!(p["returned"], "never");
        }
        let group_schema = find_by_id(&schemas, GROUP);
        assert!(
            group_schema["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "members")
        );
        let ent = find_by_id(&schemas, ENTERPRISE);
        assert!(
            ent["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "department")
        );
        for urn in [USER, GROUP, ENTERPRISE] {
            let r = app.get(&format!("/Schemas/{urn}")).await;
            assert_eq!(r.status, StatusCode::OK, "{backend:?} {urn}: {}", r.body);
            assert_eq!(&r.body, find_by_id(&schemas, urn));
        }
        let r = app
            .get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Printer")
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "unknown schema");
        app.finish().await;
    }
}

backend_test! {
    async fn search_requests(backend) {
        let app = TestApp::spawn(backend).await;
        five_users(&app).await;
        let g = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Fabrikam staff"}),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);

        let r = app
            .post(
                "/Users/.search",
                &json!({"schemas": [SEARCH], "filter": "userName ew \"@fabrikam.com\"",
                        "attributes": ["userName"], "startIndex": 2, "count": 1}),
            )
            .await;
        let items = list_ok(&r, "/Users/.search");
        assert_eq!(r.body["totalResults"], 3, "{backend:?}: {}", r.body);
        assert_eq!(r.body["startIndex"], 2);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["userName"], "dora@fabrikam.com");
        let keys: BTreeSet<&str> = items[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "schemas", "userName"]));

        let r = app
            .post(
                "/.search",
                &json!({"schemas": [SEARCH], "filter": "userName eq \"ANN@contoso.com\"",
                        "excludedAttributes": ["emails"]}),
            )
            .await;
        let items = list_ok(&r, "/.search by userName");
        assert_eq!(r.body["totalResults"], 1, "{backend:?}: {}", r.body);
        assert_eq!(items[0]["userName"], "ann@contoso.com");
        assert!(items[0].get("emails").is_none());

        // displayName is an attribute of both resource types.
        let r = app
            .post(
                "/.search",
                &json!({"schemas": [SEARCH], "filter": "displayName co \"a\"", "count": 10}),
            )
            .await;
        let items = list_ok(&r, "/.search across types");
        let types: BTreeSet<&str> = items
            .iter()
            .filter_map(|i| i["meta"]["resourceType"].as_str())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from(["User", "Group"]),
            "{backend:?}: {}",
            r.body
        );
        assert_eq!(r.body["totalResults"], json!(items.len()));

        let r = app
            .post(
                "/Users/.search",
                &json!({"schemas": [SEARCH], "filter": "title eq \"x\""}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            "search, bad filter",
        );
        let r = app
            .post(
                "/.search",
                &json!({"schemas": [SEARCH], "filter": "title eq \"x\""}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            "root search, bad filter",
        );
        let r = app
            .post(
                "/Users/.search",
                &json!({"schemas": [SEARCH], "count": "ten"}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "search, bad count",
        );
        let r = app
            .post(
                "/Users/.search",
                &json!({"schemas": [USER], "filter": "userName pr"}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "search, wrong schema",
        );
        app.finish().await;
    }
}

backend_test! {
    async fn filter_edge_cases(backend) {
        let app = TestApp::spawn(backend).await;
        create(
            &app,
            json!({"schemas": [USER], "userName": "Åsa.Öberg@contoso.com", "displayName": "ÅSA ÖBERG",
                   "name": {"givenName": "Åsa", "familyName": "Öberg"}}),
        )
        .await;
        app.clock.advance(TimeDelta::milliseconds(500));
        create(
            &app,
            json!({"schemas": [USER], "userName": "quote@contoso.com",
                   "displayName": "say \"hi\" \\ back"}),
        )
        .await;
        // Case-insensitive comparison is Unicode-aware on both backends.
        assert_eq!(
            find(&app, r#"userName eq "åsa.öberg@CONTOSO.com""#).await,
            ["Åsa.Öberg@contoso.com"],
            "{backend:?}"
        );
        // Escapes inside a filter string.
        assert_eq!(
            find(&app, r#"displayName eq "SAY \"hi\" \\ back""#).await,
            ["quote@contoso.com"],
            "{backend:?}"
        );
        // Sub-second and offset timestamps.
        for (f, n) in [
            (r#"meta.created gt "2026-11-28T12:00:00.400Z""#, 1),
            (r#"meta.created gt "2026-11-28T12:00:00.500Z""#, 0),
            (r#"meta.created ge "2026-11-28T12:00:00.500Z""#, 1),
            (r#"meta.created eq "2026-11-28T12:00:00.5Z""#, 1),
            (r#"meta.created lt "2026-11-28T13:00:00.001+01:00""#, 1),
            (r#"meta.created le "2026-11-28T07:00:00.5-05:00""#, 2),
        ] {
            assert_eq!(find(&app, f).await.len(), n, "{backend:?} filter {f}");
        }
        // count below 0 is 0 (RFC 7644 §3.4.2.4).
        let r = app.get("/Users?count=-1").await;
        assert_eq!(list_ok(&r, "count=-1").len(), 0, "{backend:?}");
        assert_eq!(r.body["totalResults"], 2);
        // A long chain of `or`s is answered or refused, never a server error.
        let long = (0..100)
            .map(|i| format!(r#"userName eq "u{i}@contoso.com""#))
            .collect::<Vec<_>>()
            .join(" or ");
        let r = app.get(&format!("/Users?filter={}", pct(&long))).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::BAD_REQUEST,
            "{backend:?}: {} {}",
            r.status,
            r.body
        );
        if r.status == StatusCode::OK {
            assert_eq!(r.body["totalResults"], 0);
        } else {
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                "long filter",
            );
        }
        app.finish().await;
    }
}

backend_test! {
    async fn root_search_pages_across_types(backend) {
        let app = TestApp::spawn(backend).await;
        five_users(&app).await;
        for name in ["G1", "G2"] {
            let r = app
                .post("/Groups", &json!({"schemas": [GROUP], "displayName": name}))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        let label = |v: &Value| -> String {
            v["userName"]
                .as_str()
                .or(v["displayName"].as_str())
                .map(|s| s.split('@').next().unwrap().to_owned())
                .unwrap_or_default()
        };
        for (start, count, want) in [
            (1, 3, vec!["ann", "bob", "carl"]),
            (5, 2, vec!["eve", "G1"]),
            (6, 5, vec!["G1", "G2"]),
            (7, 5, vec!["G2"]),
            (8, 5, vec![]),
        ] {
            let r = app
                .post(
                    "/.search",
                    &json!({"schemas": [SEARCH], "startIndex": start, "count": count,
                            "attributes": ["userName", "displayName"]}),
                )
                .await;
            let items = list_ok(&r, "root search");
            assert_eq!(r.body["totalResults"], 7, "{backend:?}: {}", r.body);
            assert_eq!(r.body["startIndex"], start);
            let got: Vec<String> = items.iter().map(label).collect();
            assert_eq!(got, want, "{backend:?} startIndex={start} count={count}");
        }
        app.finish().await;
    }
}

backend_test! {
    /// SQLite's `lower()` folds ASCII only, so every case-insensitive column is folded in Rust into
    /// a `*_lower` column; non-ASCII case variants must match on both backends.
    async fn unicode_case_folding_in_user_filters(backend) {
        let app = TestApp::spawn(backend).await;
        create(
            &app,
            json!({"schemas": [USER], "userName": "asa@contoso.com", "displayName": "ÅSA ÖBERG",
                   "name": {"givenName": "ÅSA", "familyName": "ÖBERG"}}),
        )
        .await;
        for f in [
            r#"displayName eq "åsa öberg""#,
            r#"displayName sw "åsa""#,
            r#"name.givenName eq "åsa""#,
            r#"name.familyName co "öber""#,
        ] {
            assert_eq!(find(&app, f).await.len(), 1, "{backend:?} filter {f}");
        }
        app.finish().await;
    }
}
