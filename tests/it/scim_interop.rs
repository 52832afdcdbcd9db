//! The interoperability tail from public SCIM test collections (Microsoft's SCIMReferenceCode
//! Postman collection, Okta's SCIM spec test): path spellings, trailing slashes, member
//! `display`, and one rule for unknown attributes worded for the request that was sent.

use reqwest::StatusCode;
use serde_json::json;

use crate::scim_protocol::{GROUP, USER, assert_error, list_ok, patch_op, pct};
use crate::support::TestApp;

backend_test! {
    /// Resource-type and discovery segments are case-insensitive, a trailing slash is ignored,
    /// and `/serviceConfiguration` answers as `/ServiceProviderConfig`.
    async fn paths_are_case_insensitive_and_trailing_slashes_ignored(backend) {
        let app = TestApp::spawn(backend).await;
        let id = app.create_user("adele@contoso.example", "Adele", "Vance").await;
        let filter = pct("userName eq \"adele@contoso.example\"");
        for path in [
            format!("/users?filter={filter}"),
            format!("/Users/?filter={filter}"),
            format!("/USERS/?filter={filter}"),
        ] {
            let found = list_ok(&app.get(&path).await, &format!("{backend:?} GET {path}"));
            assert_eq!(found.len(), 1, "{backend:?} GET {path}");
            assert_eq!(found[0]["id"], json!(id));
        }
        let r = app.get(&format!("/users/{id}/")).await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["id"], json!(id), "the id is kept as sent");

        let search = app
            .post(
                "/users/.SEARCH",
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "userName eq \"adele@contoso.example\"",
                }),
            )
            .await;
        assert_eq!(list_ok(&search, "POST /users/.SEARCH").len(), 1);

        let spc = app.get("/ServiceProviderConfig").await;
        assert_eq!(spc.status, StatusCode::OK);
        for path in ["/serviceConfiguration", "/serviceproviderconfig", "/ServiceProviderConfig/"] {
            let r = app.get(path).await;
            assert_eq!(r.status, StatusCode::OK, "{backend:?} GET {path}: {}", r.body);
            assert_eq!(r.body, spc.body, "{backend:?} GET {path}");
        }
        for path in ["/schemas", "/resourcetypes", "/groups", "/Schemas/"] {
            let r = app.get(path).await;
            assert_eq!(r.status, StatusCode::OK, "{backend:?} GET {path}: {}", r.body);
        }
        // An unknown endpoint is still a SCIM 404, and auth still applies to the new spellings.
        assert_error(&app.get("/nothing/").await, StatusCode::NOT_FOUND, None, "GET /nothing/");
        let anonymous = app
            .client
            .get(format!("{}/users", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        app.finish().await;
    }
}

backend_test! {
    /// Each group member carries `display`: the user's displayName, else their userName.
    async fn group_members_carry_display(backend) {
        let app = TestApp::spawn(backend).await;
        let with_display = app
            .post(
                "/Users",
                &json!({
                    "schemas": [USER],
                    "userName": "lidia@contoso.example",
                    "displayName": "Lidia Holloway",
                }),
            )
            .await;
        assert_eq!(with_display.status, StatusCode::CREATED, "{}", with_display.body);
        let lidia = with_display.body["id"].as_str().expect("id").to_owned();
        let alex = app.create_user("alex@contoso.example", "Alex", "Wilber").await;
        let g = app
            .post(
                "/Groups",
                &json!({
                    "schemas": [GROUP],
                    "displayName": "Sales",
                    "members": [{"value": lidia}, {"value": alex}],
                }),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{backend:?}: {}", g.body);
        let group = g.body["id"].as_str().expect("id").to_owned();
        let r = app.get(&format!("/Groups/{group}")).await;
        assert_eq!(r.status, StatusCode::OK);
        let members = r.body["members"].as_array().expect("members").clone();
        let display = |id: &str| {
            members
                .iter()
                .find(|m| m["value"] == json!(id))
                .map(|m| m["display"].clone())
        };
        assert_eq!(display(&lidia), Some(json!("Lidia Holloway")), "{backend:?}");
        assert_eq!(display(&alex), Some(json!("alex@contoso.example")), "{backend:?}");
        // /Schemas declares it, filled in by the server.
        let schema = app.get(&format!("/Schemas/{GROUP}")).await;
        assert_eq!(schema.status, StatusCode::OK);
        let members = schema.body["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "members"))
            .cloned()
            .expect("members attribute");
        let display_def = members["subAttributes"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["name"] == "display"))
            .cloned()
            .expect("members.display");
        assert_eq!(display_def["mutability"], json!("readOnly"));
        app.finish().await;
    }
}

backend_test! {
    /// One rule for unknown core attributes: refused with 400, the message names the attribute
    /// and is worded for the request that was sent (a PUT or POST has no `Operations`).
    async fn unknown_attributes_are_refused_in_the_words_of_the_request(backend) {
        let app = TestApp::spawn(backend).await;
        let id = app.create_user("megan@contoso.example", "Megan", "Bowen").await;
        let body = json!({
            "schemas": [USER],
            "userName": "megan@contoso.example",
            "adreses": [{"streetAddress": "1 Main St"}],
        });
        for (what, r) in [
            ("PUT", app.put(&format!("/Users/{id}"), &body).await),
            ("POST", app.post("/Users", &body).await),
        ] {
            assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), what);
            let detail = r.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("'adreses'"), "{backend:?} {what}: {detail}");
            assert!(!detail.contains("Operations"), "{backend:?} {what}: {detail}");
        }
        let r = app
            .patch(
                &format!("/Users/{id}"),
                &patch_op(json!([{"op": "replace", "path": "adreses", "value": "x"}])),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidPath"), "PATCH");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Operations[0]:") && detail.contains("'adreses'"),
            "{backend:?} PATCH: {detail}"
        );
        // Attributes of an extension schema the server does not know are kept as sent.
        let custom = "urn:example:params:scim:schemas:extension:custom:2.0:User";
        let kept = app
            .put(
                &format!("/Users/{id}"),
                &json!({
                    "schemas": [USER, custom],
                    "userName": "megan@contoso.example",
                    custom: {"costCenter": "42"},
                }),
            )
            .await;
        assert_eq!(kept.status, StatusCode::OK, "{backend:?}: {}", kept.body);
        assert_eq!(kept.body[custom]["costCenter"], json!("42"));
        app.finish().await;
    }
}

backend_test! {
    /// `attributes` takes attribute names: a value filter is refused with 400 `invalidValue`
    /// naming the parameter, instead of silently returning only `id`.
    async fn attribute_lists_with_value_filters_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        let id = app.create_user("adele@contoso.example", "Adele", "Vance").await;
        for (param, value) in [
            ("attributes", "emails[type eq \"work\"]"),
            ("excludedAttributes", "userName,emails[type eq \"work\"].value"),
        ] {
            let r = app.get(&format!("/Users/{id}?{param}={}", pct(value))).await;
            assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), param);
            let detail = r.body["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with(param), "{backend:?}: {detail}");
            let list = app.get(&format!("/Users?{param}={}", pct(value))).await;
            assert_error(&list, StatusCode::BAD_REQUEST, Some("invalidValue"), param);
        }
        let ok = app.get(&format!("/Users/{id}?attributes=emails.value,name.givenName")).await;
        assert_eq!(ok.status, StatusCode::OK, "{backend:?}: {}", ok.body);
        assert_eq!(ok.body["name"]["givenName"], json!("Adele"));
        app.finish().await;
    }
}
