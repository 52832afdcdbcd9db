//! `/Users` writes over real HTTP on both backends: POST round trips, uniqueness, the PATCH
//! dialects of Entra and Okta, `If-Match`, PUT and DELETE, and concurrent writes.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::scim_protocol::{ENTERPRISE, USER, assert_error, create, find, id, patch_op, send};
use crate::support::{Reply, SCIM_JSON, TestApp};

const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";

// ---------------------------------------------------------------------------------------------
// 4. POST

backend_test! {
    async fn post_user_round_trips(backend) {
        let app = TestApp::spawn(backend).await;
        let r = app
            .post(
                "/Users",
                &json!({
                    "schemas": [USER, ENTERPRISE, CUSTOM],
                    "userName": "Ann.Lee@Contoso.com",
                    "externalId": "0a1b",
                    "active": true,
                    "password": "hunter2!",
                    "nickName": null,
                    "title": null,
                    "name": {"givenName": "Ann", "familyName": "Lee", "middleName": null},
                    "emails": [
                        {"type": "work", "value": "ann.work@mail.contoso.com", "primary": true},
                        {"type": "home", "value": "ann@home.example"}
                    ],
                    ENTERPRISE: {"department": "Sales", "employeeNumber": "701", "costCenter": null},
                    CUSTOM: {"tag": "x"},
                    "meta": {"resourceType": "User"}
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{backend:?}: {}", r.body);
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with(SCIM_JSON), "{ct}");
        let u = r.body.clone();
        let meta = &u["meta"];
        assert_eq!(
            r.header("location"),
            meta["location"].as_str(),
            "{backend:?}"
        );
        assert_eq!(
            meta["location"],
            format!("{}/Users/{}", app.base, id(&u)),
            "{backend:?}"
        );
        assert_eq!(r.header("etag"), meta["version"].as_str(), "{backend:?}");
        assert!(meta["version"].as_str().unwrap().starts_with("W/\""));
        assert_eq!(meta["resourceType"], "User");
        assert_eq!(meta["created"], "2026-11-28T12:00:00.000Z");
        assert_eq!(meta["lastModified"], meta["created"]);
        assert_eq!(u["userName"], "Ann.Lee@Contoso.com", "stored as sent");
        assert_eq!(u["active"], true);
        assert!(
            u.get("password").is_none(),
            "password is never returned: {u}"
        );
        assert!(u.get("nickName").is_none(), "null is unassigned: {u}");
        assert!(u.get("title").is_none(), "null is unassigned: {u}");
        assert_eq!(u["name"], json!({"givenName": "Ann", "familyName": "Lee"}));
        assert_eq!(u["emails"][0]["value"], "ann.work@mail.contoso.com");
        assert_eq!(u["emails"][1]["type"], "home");
        assert_eq!(
            u[ENTERPRISE],
            json!({"department": "Sales", "employeeNumber": "701"}),
            "{backend:?}: {u}"
        );
        assert_eq!(u[CUSTOM], json!({"tag": "x"}), "{backend:?}: {u}");
        let schemas: BTreeSet<&str> = u["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(schemas, BTreeSet::from([USER, ENTERPRISE, CUSTOM]), "{u}");

        // GET returns exactly what POST returned.
        let g = app.get(&format!("/Users/{}", id(&u))).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body, u, "{backend:?}: GET differs from the POST response");
        assert_eq!(g.header("etag"), meta["version"].as_str());
        assert!(
            g.header("content-type")
                .unwrap_or("")
                .starts_with(SCIM_JSON)
        );

        // Projection of extension attributes by their URN.
        let r = app
            .get(&format!(
                "/Users/{}?attributes={ENTERPRISE}:department",
                id(&u)
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(
            r.body[ENTERPRISE],
            json!({"department": "Sales"}),
            "{backend:?}: {}",
            r.body
        );
        assert!(r.body.get("userName").is_none());
        let r = app
            .get(&format!(
                "/Users/{}?excludedAttributes={ENTERPRISE}",
                id(&u)
            ))
            .await;
        assert!(r.body.get(ENTERPRISE).is_none(), "{backend:?}: {}", r.body);
        assert_eq!(r.body[CUSTOM], json!({"tag": "x"}));

        // Found by userName in any case; not by an email that is not the userName.
        assert_eq!(
            find(&app, r#"userName eq "ann.lee@contoso.com""#)
                .await
                .len(),
            1
        );
        assert!(
            find(&app, r#"userName eq "ann.work@mail.contoso.com""#)
                .await
                .is_empty()
        );

        // Unique per account, case-insensitively.
        for dup in ["ANN.LEE@contoso.COM", "ann.lee@contoso.com"] {
            let r = app
                .post("/Users", &json!({"schemas": [USER], "userName": dup}))
                .await;
            assert_error(
                &r,
                StatusCode::CONFLICT,
                Some("uniqueness"),
                &format!("{backend:?} duplicate {dup}"),
            );
        }
        // userName must be an email address.
        for bad in [json!("Test_User_1"), json!(""), json!(42)] {
            let r = app
                .post("/Users", &json!({"schemas": [USER], "userName": bad}))
                .await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                &format!("{backend:?} userName {bad}"),
            );
        }
        let r = app.post("/Users", &json!({"schemas": [USER]})).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "no userName",
        );
        // Nothing but the one user exists.
        let r = app.get("/Users").await;
        assert_eq!(r.body["totalResults"], 1, "{backend:?}: {}", r.body);
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. PATCH users

backend_test! {
    async fn patch_user_operations(backend) {
        let app = TestApp::spawn(backend).await;
        app.create_user("other@contoso.com", "Otto", "Other").await;
        let u = create(
            &app,
            json!({"schemas": [USER], "userName": "pat@contoso.com",
                   "name": {"givenName": "Pat", "familyName": "Ng"},
                   "emails": [{"type": "home", "value": "pat@home.example"}]}),
        )
        .await;
        let path = format!("/Users/{}", id(&u));
        let ok = |r: Reply, what: &str| -> Value {
            assert_eq!(r.status, StatusCode::OK, "{backend:?} {what}: {}", r.body);
            assert_eq!(r.body["id"], json!(id(&u)));
            assert!(
                r.header("content-type")
                    .unwrap_or("")
                    .starts_with(SCIM_JSON)
            );
            r.body
        };

        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "Add", "path": "nickName", "value": "Babs"}])),
            )
            .await,
            "Add",
        );
        assert_eq!(b["nickName"], "Babs");
        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}])),
            )
            .await,
            "active \"True\"",
        );
        assert_eq!(b["active"], true);
        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "REPLACE", "path": "name.givenName", "value": "Patty"}])),
            )
            .await,
            "REPLACE name.givenName",
        );
        assert_eq!(b["name"], json!({"givenName": "Patty", "familyName": "Ng"}));
        let b = ok(
            app.patch(
                &path,
                &patch_op(
                    json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
                                  "value": "pat.work@contoso.com"}]),
                ),
            )
            .await,
            "emails[type eq work].value with no work email",
        );
        let emails = b["emails"].as_array().expect("emails");
        assert_eq!(emails.len(), 2, "{backend:?}: {b}");
        assert!(
            emails
                .iter()
                .any(|e| e["type"] == "home" && e["value"] == "pat@home.example")
        );
        assert!(
            emails
                .iter()
                .any(|e| e["type"] == "work" && e["value"] == "pat.work@contoso.com"),
            "{backend:?}: {b}"
        );
        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "add",
                    "path": format!("{ENTERPRISE}:department"), "value": "Finance"}])),
            )
            .await,
            "URN path",
        );
        assert_eq!(b[ENTERPRISE]["department"], "Finance", "{backend:?}: {b}");
        assert!(
            b["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!(ENTERPRISE))
        );
        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "replace", "value": {
                    "displayName": "Patty Ng",
                    "name.familyName": "Nguyen",
                    format!("{ENTERPRISE}:employeeNumber"): "42",
                }}])),
            )
            .await,
            "path-less replace",
        );
        assert_eq!(b["displayName"], "Patty Ng");
        assert_eq!(
            b["name"],
            json!({"givenName": "Patty", "familyName": "Nguyen"})
        );
        assert_eq!(
            b[ENTERPRISE],
            json!({"department": "Finance", "employeeNumber": "42"}),
            "{backend:?}: {b}"
        );
        let b = ok(
            app.patch(
                &path,
                &patch_op(json!([{"op": "Remove", "path": "nickName"}])),
            )
            .await,
            "Remove",
        );
        assert!(b.get("nickName").is_none(), "{b}");
        // The work email is findable by the Entra filter now.
        assert_eq!(
            find(
                &app,
                r#"emails[type eq "work"].value eq "pat.work@contoso.com""#
            )
            .await,
            ["pat@contoso.com"]
        );
        let good = app.get(&path).await;
        assert_eq!(good.body, b, "{backend:?}: GET shows the last PATCH result");

        // Refusals change nothing.
        let refusals = [
            (
                json!([{"op": "replace", "path": "emails[type eq \"work\"", "value": "x"}]),
                StatusCode::BAD_REQUEST,
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "name..givenName", "value": "x"}]),
                StatusCode::BAD_REQUEST,
                "invalidPath",
            ),
            (
                json!([{"op": "remove"}]),
                StatusCode::BAD_REQUEST,
                "noTarget",
            ),
            (
                json!([{"op": "frobnicate", "path": "nickName", "value": "x"}]),
                StatusCode::BAD_REQUEST,
                "invalidSyntax",
            ),
            (
                json!([{"op": "replace", "path": "userName", "value": "OTHER@Contoso.com"}]),
                StatusCode::CONFLICT,
                "uniqueness",
            ),
            (
                json!([{"op": "replace", "path": "userName", "value": "not-an-email"}]),
                StatusCode::BAD_REQUEST,
                "invalidValue",
            ),
            (
                json!([
                    {"op": "replace", "path": "displayName", "value": "Changed"},
                    {"op": "replace", "path": "active", "value": "maybe"}
                ]),
                StatusCode::BAD_REQUEST,
                "invalidValue",
            ),
        ];
        for (ops, status, scim_type) in refusals {
            let r = app.patch(&path, &patch_op(ops.clone())).await;
            assert_error(
                &r,
                status,
                Some(scim_type),
                &format!("{backend:?} PATCH {ops}"),
            );
            let now = app.get(&path).await;
            assert_eq!(now.body, good.body, "{backend:?}: {ops} changed the user");
        }
        let r = app
            .patch(
                &path,
                &json!({"Operations": [{"op": "add", "path": "nickName", "value": "x"}]}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "no PatchOp schema",
        );

        // userName may change case (it is the same login), and to a free address.
        let b = ok(
            app.patch(
                &path,
                &patch_op(
                    json!([{"op": "replace", "path": "userName", "value": "Pat@Contoso.com"}]),
                ),
            )
            .await,
            "userName case change",
        );
        assert_eq!(b["userName"], "Pat@Contoso.com");

        // If-Match: a stale version is refused and changes nothing; the current one works.
        let current = app.get(&path).await;
        let etag = current.header("etag").expect("etag").to_owned();
        assert_ne!(etag, "W/\"1\"", "the user has been updated");
        let r = app
            .request_with(
                Method::PATCH,
                &path,
                Some(&patch_op(
                    json!([{"op": "replace", "path": "displayName", "value": "Stale"}]),
                )),
                |r| r.header("if-match", "W/\"1\""),
            )
            .await;
        assert_error(&r, StatusCode::PRECONDITION_FAILED, None, "stale If-Match");
        assert_eq!(
            app.get(&path).await.body,
            current.body,
            "{backend:?}: 412 changed the user"
        );
        let r = app
            .request_with(
                Method::PATCH,
                &path,
                Some(&patch_op(
                    json!([{"op": "replace", "path": "displayName", "value": "Fresh"}]),
                )),
                |r| r.header("if-match", etag.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["displayName"], "Fresh");
        assert_ne!(r.header("etag"), Some(etag.as_str()), "the version moved");
        assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
        // PUT honours If-Match too.
        let r = app
            .request_with(
                Method::PUT,
                &path,
                Some(&json!({"schemas": [USER], "userName": "pat@contoso.com"})),
                |r| r.header("if-match", etag.clone()),
            )
            .await;
        assert_error(
            &r,
            StatusCode::PRECONDITION_FAILED,
            None,
            "stale If-Match on PUT",
        );

        // PATCH of a user that does not exist.
        let r = app
            .patch(
                &format!("/Users/{}", uuid::Uuid::new_v4()),
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "PATCH unknown user");
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Concurrency

backend_test! {
    async fn concurrent_creates_of_one_user_name(backend) {
        let app = TestApp::spawn(backend).await;
        let url = format!("{}/Users", app.base);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = app.client.clone();
            let url = url.clone();
            let token = app.token.clone();
            // Same login, different spelling: all name one account.
            let user_name = if i % 2 == 0 {
                "race@contoso.com"
            } else {
                "RACE@Contoso.com"
            };
            tasks.push(tokio::spawn(async move {
                send(
                    client
                        .post(url)
                        .bearer_auth(token)
                        .header("content-type", SCIM_JSON)
                        .body(json!({"schemas": [USER], "userName": user_name}).to_string()),
                )
                .await
            }));
        }
        let mut created = 0;
        let mut conflicts = 0;
        for t in tasks {
            let r = t.await.expect("task");
            if r.status == StatusCode::CREATED {
                created += 1;
            } else {
                assert_error(
                    &r,
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    &format!("{backend:?} race"),
                );
                conflicts += 1;
            }
        }
        assert_eq!((created, conflicts), (1, 19), "{backend:?}");
        assert_eq!(
            find(&app, r#"userName eq "race@contoso.com""#).await.len(),
            1
        );
        let r = app.get("/Users").await;
        assert_eq!(r.body["totalResults"], 1, "{backend:?}: one row stored");
        app.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle: meta and versions, PUT, DELETE, re-create

backend_test! {
    async fn user_lifecycle_versions_put_and_delete(backend) {
        let app = TestApp::spawn(backend).await;
        let u = create(
            &app,
            json!({"schemas": [USER], "id": "client-chosen", "userName": "life@contoso.com",
                   "nickName": "L", "displayName": "Life",
                   "meta": {"created": "1999-01-01T00:00:00Z", "version": "W/\"99\""}}),
        )
        .await;
        assert_ne!(
            u["id"], "client-chosen",
            "{backend:?}: id is server-assigned"
        );
        assert!(uuid::Uuid::parse_str(&id(&u)).is_ok());
        assert_eq!(
            u["meta"]["created"], "2026-11-28T12:00:00.000Z",
            "meta is server-owned"
        );
        let path = format!("/Users/{}", id(&u));

        app.clock.advance(TimeDelta::minutes(1));
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Life 2"}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        let patched = r.body.clone();
        assert_eq!(patched["meta"]["created"], u["meta"]["created"]);
        assert_eq!(patched["meta"]["lastModified"], "2026-11-28T12:01:00.000Z");
        assert_ne!(patched["meta"]["version"], u["meta"]["version"]);

        // A PATCH that changes nothing writes nothing: same version, same lastModified.
        app.clock.advance(TimeDelta::minutes(1));
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Life 2"}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(
            r.body["meta"], patched["meta"],
            "{backend:?}: no-op PATCH moved meta"
        );

        // PUT replaces: what it leaves out is gone.
        let r = app
            .put(
                &path,
                &json!({"schemas": [USER], "userName": "LIFE@contoso.com", "displayName": "Put"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["displayName"], "Put");
        assert_eq!(r.body["userName"], "LIFE@contoso.com");
        assert!(r.body.get("nickName").is_none(), "{backend:?}: {}", r.body);
        assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
        assert_eq!(app.get(&path).await.body, r.body);

        // Creating an inactive user is refused (essentry keeps no inactive accounts).
        let r = app
            .post(
                "/Users",
                &json!({"schemas": [USER], "userName": "off@contoso.com", "active": false}),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "POST active=false",
        );

        // DELETE → 204, then 404 for GET, PATCH, PUT and DELETE.
        let r = app.delete(&path).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert!(r.body.is_null());
        assert_error(
            &app.get(&path).await,
            StatusCode::NOT_FOUND,
            None,
            "GET deleted",
        );
        assert_error(
            &app.delete(&path).await,
            StatusCode::NOT_FOUND,
            None,
            "DELETE deleted",
        );
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "PATCH deleted");
        let r = app
            .put(
                &path,
                &json!({"schemas": [USER], "userName": "life@contoso.com"}),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, None, "PUT deleted");
        assert!(
            find(&app, r#"userName eq "life@contoso.com""#)
                .await
                .is_empty()
        );
        // The login is free again: a new account with a new id.
        let again = create(
            &app,
            json!({"schemas": [USER], "userName": "life@contoso.com"}),
        )
        .await;
        assert_ne!(again["id"], u["id"]);
        app.finish().await;
    }
}

backend_test! {
    async fn patch_multi_valued_and_okta_dialect(backend) {
        let app = TestApp::spawn(backend).await;
        let u = create(
            &app,
            json!({"schemas": [USER], "userName": "mv@contoso.com",
                   "emails": [{"type": "work", "value": "mv@work.example", "primary": true}]}),
        )
        .await;
        let path = format!("/Users/{}", id(&u));
        let patch = |ops: Value| {
            let app = &app;
            let path = path.clone();
            async move {
                let r = app.patch(&path, &patch_op(ops.clone())).await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{:?} {ops}: {}",
                    app.backend,
                    r.body
                );
                r.body
            }
        };
        // Replacing the work email's value updates it in place; it does not add a second one.
        let b = patch(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
                              "value": "mv2@work.example"}]),
        )
        .await;
        assert_eq!(
            b["emails"],
            json!([{"type": "work", "value": "mv2@work.example", "primary": true}]),
            "{backend:?}"
        );
        // add with an array appends.
        let b = patch(json!([{"op": "add", "path": "emails",
                              "value": [{"type": "home", "value": "mv@home.example"}]}]))
        .await;
        assert_eq!(
            b["emails"].as_array().map(Vec::len),
            Some(2),
            "{backend:?}: {b}"
        );
        assert_eq!(
            find(&app, r#"emails[type eq "home"].value eq "MV@home.example""#).await,
            ["mv@contoso.com"]
        );
        // remove by a value filter removes just that element.
        let b = patch(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).await;
        assert_eq!(
            b["emails"],
            json!([{"type": "home", "value": "mv@home.example"}]),
            "{backend:?}"
        );
        assert!(
            find(&app, r#"emails[type eq "work"]"#).await.is_empty(),
            "{backend:?}"
        );

        // Okta: path-less replace with a boolean active=false deletes the account.
        let r = app
            .patch(
                &path,
                &patch_op(json!([{"op": "replace", "value": {"active": false}}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["active"], false);
        assert_error(
            &app.get(&path).await,
            StatusCode::NOT_FOUND,
            None,
            "after active=false",
        );
        app.finish().await;
    }
}

backend_test! {
    async fn concurrent_patches_of_one_user(backend) {
        let app = TestApp::spawn(backend).await;
        let u = create(
            &app,
            json!({"schemas": [USER], "userName": "busy@contoso.com"}),
        )
        .await;
        let url = format!("{}/Users/{}", app.base, id(&u));
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (client, url, token) = (app.client.clone(), url.clone(), app.token.clone());
            tasks.push(tokio::spawn(async move {
                send(
                    client
                        .patch(url)
                        .bearer_auth(token)
                        .header("content-type", SCIM_JSON)
                        .body(
                            patch_op(json!([{"op": "replace", "path": "nickName",
                                             "value": format!("n{i}")}]))
                            .to_string(),
                        ),
                )
                .await
            }));
        }
        // Without If-Match, the client asked for no precondition: every PATCH applies.
        for t in tasks {
            let r = t.await.expect("task");
            assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        }
        let r = app.get(&format!("/Users/{}", id(&u))).await;
        assert!(
            r.body["nickName"]
                .as_str()
                .is_some_and(|n| n.starts_with('n'))
        );
        app.finish().await;
    }
}
