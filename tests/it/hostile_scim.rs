//! Hostile SCIM requests over real HTTP, on both backends: non-ASCII projections never panic,
//! a group PATCH is refused whole or applied whole, and the request-cost limits (PATCH
//! operations, multi-valued attributes, `attributes` lists) answer SCIM 400s.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::scim_protocol::{GROUP, USER, assert_error, patch_op, pct};
use crate::support::TestApp;

/// A path whose byte `urn.len()` falls inside a two-byte character, one byte longer than `urn`.
fn straddling(urn: &str) -> String {
    format!("{}é", "a".repeat(urn.len() - 1))
}

async fn create_group(app: &TestApp, name: &str) -> String {
    let r = app
        .post("/Groups", &json!({"schemas": [GROUP], "displayName": name}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

backend_test! {
    /// `attributes`/`excludedAttributes` with multi-byte characters where the attribute-path
    /// code used to slice on a byte index: 200, never a dropped connection.
    async fn non_ascii_projections_do_not_panic(backend) {
        let app = TestApp::spawn(backend).await;
        let uid = app.create_user("ann@a.example", "Ann", "Lee").await;
        let gid = create_group(&app, "Team").await;
        let user_path = pct(&straddling(USER));
        let group_path = pct(&straddling(GROUP));
        for url in [
            format!("/Users/{uid}?attributes={user_path}"),
            format!("/Users/{uid}?excludedAttributes={user_path}"),
            format!("/Users?attributes={user_path}"),
            format!("/Groups/{gid}?attributes={group_path}"),
            format!("/Groups/{gid}?excludedAttributes={group_path}"),
            format!("/Groups?excludedAttributes={group_path},{}", pct("ü.ß")),
        ] {
            let r = app.get(&url).await;
            assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.body);
        }
        app.finish().await;
    }
}

backend_test! {
    /// A group PATCH whose `attributes` parameter is refused changes nothing (it used to
    /// commit, then fail); one whose parameter has non-ASCII paths is applied and answered.
    async fn a_group_patch_applies_fully_or_not_at_all(backend) {
        let app = TestApp::spawn(backend).await;
        let gid = create_group(&app, "Before").await;
        let rename = |name: &str| {
            patch_op(json!([{"op": "replace", "path": "displayName", "value": name}]))
        };
        let too_many: Vec<String> = (0..101).map(|i| format!("a{i}")).collect();
        let r = app
            .patch(
                &format!("/Groups/{gid}?attributes={}", too_many.join(",")),
                &rename("After"),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("tooMany"), "101 attributes");
        let g = app.get(&format!("/Groups/{gid}")).await;
        assert_eq!(g.body["displayName"], "Before", "nothing was applied");
        assert_eq!(g.body["meta"]["version"], "W/\"1\"");

        let r = app
            .patch(
                &format!("/Groups/{gid}?excludedAttributes={}", pct(&straddling(GROUP))),
                &rename("After"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["displayName"], "After");
        let g = app.get(&format!("/Groups/{gid}")).await;
        assert_eq!(g.body["displayName"], "After");
        app.finish().await;
    }
}

backend_test! {
    /// `attributes` repeated a thousand times is one attribute (deduplicated, and quick); more
    /// than 100 distinct paths is `400 tooMany` on GET, list and `.search`.
    async fn projection_lists_are_deduplicated_and_capped(backend) {
        let app = TestApp::spawn(backend).await;
        let uid = app.create_user("ann@a.example", "Ann", "Lee").await;
        let repeated = vec!["name.givenName"; 1000].join(",");
        let started = Instant::now();
        let r = app.get(&format!("/Users?attributes={repeated}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["Resources"][0]["name"], json!({"givenName": "Ann"}));
        assert!(started.elapsed() < Duration::from_secs(5));
        let distinct: Vec<String> = (0..101).map(|i| format!("x{i}")).collect();
        let list = distinct.join(",");
        for url in [
            format!("/Users/{uid}?attributes={list}"),
            format!("/Users?excludedAttributes={list}"),
        ] {
            let r = app.get(&url).await;
            assert_error(&r, StatusCode::BAD_REQUEST, Some("tooMany"), &url);
        }
        let search = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "attributes": distinct,
        });
        let r = app.post("/Users/.search", &search).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("tooMany"), ".search");
        app.finish().await;
    }
}

fn emails(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"value": format!("e{i}@a.example"), "type": format!("t{i}")}))
            .collect(),
    )
}

backend_test! {
    /// More than `scim.max_multi_valued` (100) emails is `400 invalidValue` on POST, PUT and
    /// PATCH; more than `scim.max_patch_operations` (1000) operations is `400 tooMany`; a
    /// refused request changes nothing.
    async fn multi_valued_attributes_and_patch_operations_are_capped(backend) {
        let app = TestApp::spawn(backend).await;
        let body = |n: usize| {
            json!({"schemas": [USER], "userName": "bob@a.example", "emails": emails(n)})
        };
        let r = app.post("/Users", &body(101)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "POST 101 emails");
        assert!(r.body["detail"].as_str().unwrap().contains("scim.max_multi_valued"), "{}", r.body);
        let r = app.post("/Users", &body(100)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let uid = r.body["id"].as_str().unwrap().to_owned();
        let path = format!("/Users/{uid}");
        let r = app.put(&path, &body(101)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "PUT 101 emails");

        let one_more = patch_op(json!([
            {"op": "add", "path": "emails", "value": [{"value": "x@a.example", "type": "x"}]}
        ]));
        let r = app.patch(&path, &one_more).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "PATCH to 101 emails");

        let ops: Vec<Value> = (0..1001)
            .map(|i| json!({"op": "replace", "path": "displayName", "value": format!("n{i}")}))
            .collect();
        let r = app.patch(&path, &patch_op(Value::Array(ops))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("tooMany"), "1001 operations");
        let u = app.get(&path).await;
        assert_eq!(u.body["emails"].as_array().map(Vec::len), Some(100));
        assert_eq!(u.body["meta"]["version"], "W/\"1\"", "nothing was applied");

        // At the limits: 1000 operations pass.
        let ops: Vec<Value> = (0..1000)
            .map(|i| json!({"op": "replace", "path": "displayName", "value": format!("n{i}")}))
            .collect();
        let r = app.patch(&path, &patch_op(Value::Array(ops))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["displayName"], "n999");
        app.finish().await;
    }
}

backend_test! {
    /// Names that become a host's name in guest emails refuse control characters.
    async fn user_names_with_control_characters_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        for (given, display) in [("Evil\r\nBcc: x@evil.example", "ok"), ("Ann", "A\u{7}nn")] {
            let r = app
                .post(
                    "/Users",
                    &json!({
                        "schemas": [USER],
                        "userName": "eve@a.example",
                        "name": {"givenName": given, "familyName": "Lee"},
                        "displayName": display,
                    }),
                )
                .await;
            assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), given);
            assert!(
                r.body["detail"].as_str().unwrap().contains("control characters"),
                "{}",
                r.body
            );
        }
        let uid = app.create_user("ann@a.example", "Ann", "Lee").await;
        let r = app
            .patch(
                &format!("/Users/{uid}"),
                &patch_op(json!([{"op": "replace", "path": "name.familyName", "value": "L\nee"}])),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "PATCH familyName");
        app.finish().await;
    }
}
