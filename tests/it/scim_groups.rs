//! `/Groups` over real HTTP on both backends: members on create, PATCH add/remove/replace
//! (including 2,000 members in one request), all-or-nothing refusals, uniqueness of
//! `displayName`, filters, projection, and DELETE.

use std::collections::BTreeSet;

use essentry_sync::domain::directory::{OpContext, create_user};
use essentry_sync::domain::{Clock, DirectoryUser, Source, UserName};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::scim_protocol::{GROUP, assert_error, list_ok, patch_op, pct};
use crate::support::{SCIM_JSON, TestApp};

/// The group's member ids, from a GET (`None` when the group is gone).
async fn members(app: &TestApp, group: &str) -> BTreeSet<String> {
    let r = app.get(&format!("/Groups/{group}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}: {}", app.backend, r.body);
    r.body["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().expect("member value").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

fn member_values(ids: &[&String]) -> Value {
    Value::Array(ids.iter().map(|id| json!({"value": id})).collect())
}

/// Group ids a `/Groups` filter returns.
async fn find_groups(app: &TestApp, filter: &str) -> Vec<String> {
    let r = app.get(&format!("/Groups?filter={}", pct(filter))).await;
    let items = list_ok(&r, &format!("{:?} group filter {filter}", app.backend));
    assert_eq!(r.body["totalResults"], json!(items.len()));
    items
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect()
}

backend_test! {
    async fn group_lifecycle(backend) {
        let app = TestApp::spawn(backend).await;
        let u1 = app.create_user("g1@contoso.com", "G", "One").await;
        let u2 = app.create_user("g2@contoso.com", "G", "Two").await;
        let u3 = app.create_user("g3@contoso.com", "G", "Three").await;

        // Entra's documented Create Group request still lists the pre-2019 ADSCIM schema URI
        // ("Group creation requests contain an invalid schema URI"): it is accepted and ignored,
        // and the response lists the core schema only.
        let r = app
            .post(
                "/Groups",
                &json!({
                    "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                    "displayName": "Sales",
                    "members": member_values(&[&u1, &u2]),
                    "meta": {"resourceType": "Group"}
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{backend:?}: {}", r.body);
        let g = r.body.clone();
        let gid = g["id"].as_str().unwrap().to_owned();
        assert_eq!(g["schemas"], json!([GROUP]), "{backend:?}: {g}");
        assert_eq!(g["displayName"], "Sales");
        assert_eq!(g["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
        assert_eq!(r.header("location"), g["meta"]["location"].as_str());
        assert_eq!(r.header("etag"), g["meta"]["version"].as_str());
        assert_eq!(g["meta"]["resourceType"], "Group");
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with(SCIM_JSON)
        );
        let listed: BTreeSet<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, set(&[&u1, &u2]));
        for m in g["members"].as_array().unwrap() {
            assert_eq!(
                m["$ref"],
                format!("{}/Users/{}", app.base, m["value"].as_str().unwrap())
            );
        }
        let path = format!("/Groups/{gid}");
        let got = app.get(&path).await;
        assert_eq!(got.body, g, "{backend:?}: GET equals the POST response");

        let other = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Marketing"}),
            )
            .await;
        assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
        let other_id = other.body["id"].as_str().unwrap().to_owned();
        assert_eq!(other.body["members"], json!([]));
        for dup in ["Sales", "SALES"] {
            let r = app
                .post("/Groups", &json!({"schemas": [GROUP], "displayName": dup}))
                .await;
            assert_error(
                &r,
                StatusCode::CONFLICT,
                Some("uniqueness"),
                &format!("{backend:?} POST duplicate group {dup}"),
            );
        }
        let r = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Ghosts",
                                     "members": [{"value": uuid::Uuid::new_v4().to_string()}]}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "POST unknown member",
        );
        assert!(
            find_groups(&app, r#"displayName eq "Ghosts""#)
                .await
                .is_empty()
        );

        // PATCH add → 204, GET shows it.
        let r = app
            .patch(
                &path,
                &patch_op(
                    json!([{"op": "Add", "path": "members", "value": member_values(&[&u3])}]),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2, &u3]));
        // Adding an existing member again is harmless.
        let r = app
            .patch(
                &path,
                &patch_op(
                    json!([{"op": "add", "path": "members", "value": member_values(&[&u3])}]),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2, &u3]));

        // Remove by value filter (Entra with aadOptscim062020).
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u2, &u3]));
        // Remove with a value array (Entra without the flag).
        let r = app
            .patch(
                &path,
                &patch_op(
                    json!([{"op": "Remove", "path": "members", "value": member_values(&[&u2])}]),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u3]));
        // Replace all.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "members", "value": member_values(&[&u1, &u2])}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2]));

        // An unknown member refuses the whole PATCH: the rename in it does not happen either.
        let before = app.get(&path).await;
        for ghost in [uuid::Uuid::new_v4().to_string(), "not-a-user".to_owned()] {
            let r = app
                .patch(
                    &path,
                    &patch_op(json!([
                        {"op": "replace", "path": "displayName", "value": "Renamed"},
                        {"op": "add", "path": "members", "value": [{"value": u3}, {"value": ghost}]}
                    ])),
                )
                .await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("{backend:?} unknown member {ghost}"),
            );
            let after = app.get(&path).await;
            assert_eq!(
                after.body, before.body,
                "{backend:?}: refused PATCH changed the group"
            );
        }
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "members",
                                  "value": [{"value": uuid::Uuid::new_v4().to_string()}]}])),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "replace with unknown",
        );
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2]));

        // Rename onto another group's name → 409, nothing changed.
        for taken in ["Marketing", "marketing"] {
            let r = app
                .patch(
                    &path,
                    &patch_op(json!([{"op": "replace", "path": "displayName", "value": taken}])),
                )
                .await;
            assert_error(
                &r,
                StatusCode::CONFLICT,
                Some("uniqueness"),
                &format!("{backend:?} rename to {taken}"),
            );
        }
        assert_eq!(app.get(&path).await.body, before.body);
        // A real rename, path-less (Entra sends that too).
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "Replace", "value": {"displayName": "Sales EMEA"}}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        let renamed = app.get(&path).await;
        assert_eq!(renamed.body["displayName"], "Sales EMEA");
        assert_ne!(renamed.header("etag"), before.header("etag"));

        // Filters and projection.
        assert_eq!(
            find_groups(&app, r#"displayName eq "sales emea""#).await,
            std::slice::from_ref(&gid)
        );
        assert_eq!(
            find_groups(&app, &format!(r#"members[value eq "{u1}"]"#)).await,
            std::slice::from_ref(&gid)
        );
        assert!(
            find_groups(&app, &format!(r#"members[value eq "{u3}"]"#))
                .await
                .is_empty()
        );
        assert_eq!(
            find_groups(&app, &format!(r#"id eq "{gid}" and members eq "{u2}""#)).await,
            std::slice::from_ref(&gid)
        );
        assert_eq!(
            find_groups(
                &app,
                r#"externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159""#
            )
            .await,
            std::slice::from_ref(&gid)
        );
        for bad in [
            r#"userName eq "x@y.z""#,
            r#"members[display eq "x"]"#,
            r#"displayName eq"#,
        ] {
            let r = app.get(&format!("/Groups?filter={}", pct(bad))).await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                &format!("{backend:?} group filter {bad}"),
            );
        }
        let r = app.get("/Groups?excludedAttributes=members").await;
        let items = list_ok(&r, "excludedAttributes=members");
        assert_eq!(items.len(), 2);
        for g in &items {
            assert!(g.get("members").is_none(), "{backend:?}: {g}");
            assert!(g["displayName"].is_string());
        }
        let r = app
            .get(&format!(
                "/Groups?filter={}&excludedAttributes=members",
                pct(r#"displayName eq "Marketing""#)
            ))
            .await;
        let items = list_ok(&r, "Entra's group lookup");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], json!(other_id));
        assert!(items[0].get("members").is_none());
        let r = app.get(&format!("{path}?excludedAttributes=members")).await;
        assert!(r.body.get("members").is_none(), "{backend:?}: {}", r.body);
        let r = app.get(&format!("{path}?attributes=displayName")).await;
        let keys: BTreeSet<&str> = r
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "schemas", "displayName"]));

        // A deleted user leaves the group.
        let r = app.delete(&format!("/Users/{u1}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(members(&app, &gid).await, set(&[&u2]));

        // DELETE → 204, then 404.
        let r = app.delete(&path).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_error(
            &app.get(&path).await,
            StatusCode::NOT_FOUND,
            None,
            "deleted group",
        );
        assert_error(
            &app.delete(&path).await,
            StatusCode::NOT_FOUND,
            None,
            "deleted twice",
        );
        let r = app
            .patch(
                &path,
                &patch_op(
                    json!([{"op": "add", "path": "members", "value": member_values(&[&u2])}]),
                ),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "PATCH deleted group");
        let r = app.get("/Groups").await;
        assert_eq!(r.body["totalResults"], 1);
        app.finish().await;
    }
}

/// Creates `n` users through the library in one transaction; returns their ids in order.
async fn bulk_users(app: &TestApp, n: usize) -> Vec<String> {
    let ctx = OpContext {
        account: app.account.clone(),
        source: Source::Scim,
        integration_id: None,
        cycle_id: None,
        now: app.clock.now(),
    };
    let mut tx = app.store().begin().await.expect("tx");
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("member{i:04}@contoso.com");
        let mut resource = Map::new();
        resource.insert("userName".to_owned(), json!(name));
        resource.insert("active".to_owned(), json!(true));
        let user = DirectoryUser {
            user_name: UserName::parse(&name).expect("email"),
            given_name: None,
            family_name: None,
            display_name: None,
            external_id: None,
            active: true,
            entra_object_id: None,
            resource,
        };
        let record = create_user(&mut tx, &ctx, user).await.expect("create user");
        ids.push(record.id.to_string());
    }
    tx.commit().await.expect("commit");
    ids
}

backend_test! {
    async fn patch_adds_two_thousand_members_at_once(backend) {
        let app = TestApp::spawn(backend).await;
        let ids = bulk_users(&app, 2000).await;
        let r = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Everyone"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let gid = r.body["id"].as_str().unwrap().to_owned();
        let path = format!("/Groups/{gid}");
        let all: Vec<&String> = ids.iter().collect();

        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "add", "path": "members", "value": member_values(&all)}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        let got = members(&app, &gid).await;
        assert_eq!(got.len(), 2000, "{backend:?}");
        assert_eq!(got, set(&all));
        assert_eq!(
            find_groups(&app, &format!(r#"members[value eq "{}"]"#, ids[1999])).await,
            std::slice::from_ref(&gid)
        );

        // 1,999 known ids and one unknown: nothing is added, nothing else changes.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "remove", "path": "members"}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert!(members(&app, &gid).await.is_empty());
        let mut value: Vec<Value> = ids[..1999].iter().map(|id| json!({"value": id})).collect();
        value.push(json!({"value": uuid::Uuid::new_v4().to_string()}));
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "add", "path": "members", "value": value}])),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "one unknown of 2,000",
        );
        assert!(
            members(&app, &gid).await.is_empty(),
            "{backend:?}: all or nothing"
        );
        app.finish().await;
    }
}

backend_test! {
    async fn concurrent_member_changes_to_one_group(backend) {
        let app = TestApp::spawn(backend).await;
        let ids = bulk_users(&app, 10).await;
        let r = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Busy"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let gid = r.body["id"].as_str().unwrap().to_owned();
        let url = format!("{}/Groups/{gid}", app.base);
        let mut tasks = Vec::new();
        for user in &ids {
            let (client, url, token) = (app.client.clone(), url.clone(), app.token.clone());
            let body =
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": user}]}]));
            tasks.push(tokio::spawn(async move {
                let r = client
                    .patch(url)
                    .bearer_auth(token)
                    .header("content-type", SCIM_JSON)
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("send");
                (r.status(), r.text().await.unwrap_or_default())
            }));
        }
        // No If-Match was sent: no change may be refused as a lost race.
        for t in tasks {
            let (status, body) = t.await.expect("task");
            assert_eq!(status, StatusCode::NO_CONTENT, "{backend:?}: {body}");
        }
        let all: Vec<&String> = ids.iter().collect();
        assert_eq!(members(&app, &gid).await, set(&all), "{backend:?}");
        app.finish().await;
    }
}

backend_test! {
    async fn group_patch_details(backend) {
        let app = TestApp::spawn(backend).await;
        let u1 = app.create_user("d1@contoso.com", "D", "One").await;
        let u2 = app.create_user("d2@contoso.com", "D", "Two").await;
        // Duplicate member values in one request are one membership.
        let r = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Dupes",
                                     "members": [{"value": u1}, {"value": u1}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{backend:?}: {}", r.body);
        let gid = r.body["id"].as_str().unwrap().to_owned();
        let path = format!("/Groups/{gid}");
        assert_eq!(members(&app, &gid).await, set(&[&u1]));
        // Entra sends `$ref: null` and `display`; both are ignored.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "Add", "path": "members", "value": [
                    {"$ref": null, "value": u2, "display": "D Two"},
                    {"value": u2},
                    {"value": u1}
                ]}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2]));
        // Removing a non-member is a no-op.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "remove",
                    "path": format!("members[value eq \"{}\"]", uuid::Uuid::new_v4())}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2]));
        // Renaming to its own name in another case is not a conflict.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "DUPES"}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        // Asking for attributes turns the 204 into a 200 with the resource.
        let r = app
            .request_with(
                reqwest::Method::PATCH,
                &format!("{path}?attributes=displayName"),
                Some(&patch_op(
                    json!([{"op": "replace", "path": "displayName", "value": "Dupes 2"}]),
                )),
                |r| r,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["displayName"], "Dupes 2");
        assert!(r.body.get("members").is_none());
        let etag = r.header("etag").expect("etag").to_owned();
        // If-Match on groups.
        let r = app
            .request_with(
                reqwest::Method::PATCH,
                &path,
                Some(&patch_op(json!([{"op": "remove", "path": "members"}]))),
                |r| r.header("if-match", "W/\"1\""),
            )
            .await;
        assert_error(
            &r,
            StatusCode::PRECONDITION_FAILED,
            None,
            "stale If-Match on a group",
        );
        assert_eq!(members(&app, &gid).await, set(&[&u1, &u2]));
        let r = app
            .request_with(
                reqwest::Method::PATCH,
                &path,
                Some(&patch_op(json!([{"op": "remove", "path": "members"}]))),
                |r| r.header("if-match", etag.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert!(members(&app, &gid).await.is_empty());
        // PUT replaces name and members.
        let r = app
            .put(
                &path,
                &json!({"schemas": [GROUP], "displayName": "Put", "members": [{"value": u2}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["displayName"], "Put");
        assert_eq!(members(&app, &gid).await, set(&[&u2]));
        let r = app
            .put(
                &path,
                &json!({"schemas": [GROUP], "displayName": "Put",
                                "members": [{"value": uuid::Uuid::new_v4().to_string()}]}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "PUT unknown member",
        );
        assert_eq!(members(&app, &gid).await, set(&[&u2]));
        // Group PATCH errors carry the same scimTypes as user PATCH.
        let r = app.patch(&path, &patch_op(json!([{"op": "remove"}]))).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("noTarget"),
            "group remove w/o path",
        );
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": ""}])),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "empty displayName",
        );
        let r = app
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "externalId": "no-name"}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "group w/o displayName",
        );
        app.finish().await;
    }
}
