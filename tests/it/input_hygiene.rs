//! Hostile input at the SCIM endpoint, on both backends: NUL characters are refused with
//! `400 invalidValue` (PostgreSQL used to answer 500), a long `or` chain is answered (or refused
//! for its length, never for nesting), NFC and NFD spellings of a userName are one user, and a
//! rejected huge userName writes a bounded provisioning-log row.

use essentry_sync::domain::clip::LOG_VALUE_MAX_BYTES;
use essentry_sync::store::LogQuery;
use reqwest::StatusCode;
use serde_json::json;

use crate::scim_protocol::{GROUP, USER, assert_error, patch_op, pct};
use crate::support::TestApp;

backend_test! {
    /// A NUL character in any string attribute, a PATCH value, a filter value (raw or escaped)
    /// or a query parameter is `400 invalidValue`/`invalidFilter`, and nothing is written.
    async fn nul_characters_are_refused(backend) {
        let app = TestApp::spawn(backend).await;
        let refused = [
            json!({"schemas": [USER], "userName": "a@x.example", "name": {"givenName": "A\u{0}n"}}),
            json!({"schemas": [USER], "userName": "a@x.example", "externalId": "e\u{0}1"}),
            json!({"schemas": [USER], "userName": "a\u{0}@x.example"}),
            json!({"schemas": [USER], "userName": "a@x.example", "urn:x:custom:2.0:User": {"k\u{0}": 1}}),
        ];
        for body in &refused {
            let r = app.post("/Users", body).await;
            assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), &body.to_string());
        }
        let r = app.post("/Groups", &json!({"schemas": [GROUP], "displayName": "Ops\u{0}"})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "group displayName");

        let id = app.create_user("ann@x.example", "Ann", "Lee").await;
        let r = app
            .patch(
                &format!("/Users/{id}"),
                &patch_op(json!([{"op": "replace", "path": "name.familyName", "value": "L\u{0}"}])),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "PATCH value");

        let raw = app
            .get(&format!("/Users?filter={}", pct("externalId eq \"a\u{0}b\"")))
            .await;
        assert_error(&raw, StatusCode::BAD_REQUEST, Some("invalidValue"), "raw NUL in a filter");
        let escaped = app
            .get(&format!("/Users?filter={}", pct(r#"name.givenName eq "a\u0000b""#)))
            .await;
        assert_error(&escaped, StatusCode::BAD_REQUEST, Some("invalidFilter"), "escaped NUL");
        let search = app
            .post(
                "/Users/.search",
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "displayName eq \"x\u{0}\"",
                }),
            )
            .await;
        assert_error(&search, StatusCode::BAD_REQUEST, Some("invalidValue"), ".search filter");

        let list = app.get("/Users").await;
        assert_eq!(list.body["totalResults"], 1, "{}", list.body);
        assert_eq!(list.body["Resources"][0]["name"]["familyName"], "Lee");
        let groups = app.get("/Groups").await;
        assert_eq!(groups.body["totalResults"], 0, "{}", groups.body);
        app.finish().await;
    }
}

backend_test! {
    /// 120 `or` terms (more than the old nesting limit of 64) are answered; a 1,000-term chain
    /// is refused for its length, not its depth.
    async fn long_or_chains_are_answered(backend) {
        let app = TestApp::spawn(backend).await;
        for n in ["u7", "u42", "u119"] {
            app.create_user(&format!("{n}@x.io"), "U", "Ser").await;
        }
        let chain = (0..120)
            .map(|i| format!("userName eq \"u{i}@x.io\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let r = app.get(&format!("/Users?filter={}&count=10", pct(&chain))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["totalResults"], 3, "{}", r.body);

        let mixed = format!("active eq true and ({chain})");
        let r = app.get(&format!("/Users?filter={}", pct(&mixed))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["totalResults"], 3, "{}", r.body);

        let huge = (0..1000)
            .map(|i| format!("userName eq \"u{i}@x.io\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let r = app.get(&format!("/Users?filter={}", pct(&huge))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidFilter"), "1,000 terms");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("bytes long"), "{detail}");
        assert!(!detail.contains("nested"), "{detail}");
        app.finish().await;
    }
}

backend_test! {
    /// `josé` spelled precomposed (NFC) and decomposed (NFD) is one userName: the second POST
    /// is a uniqueness conflict and a filter in either form finds the user.
    async fn nfc_and_nfd_user_names_are_one_user(backend) {
        let app = TestApp::spawn(backend).await;
        let nfc = "jos\u{e9}@a.example";
        let nfd = "Jose\u{301}@a.example";
        let id = app.create_user(nfc, "José", "Nfc").await;
        let r = app
            .post("/Users", &json!({"schemas": [USER], "userName": nfd, "active": true}))
            .await;
        assert_error(&r, StatusCode::CONFLICT, Some("uniqueness"), "NFD duplicate");
        for spelling in [nfc, nfd] {
            let r = app
                .get(&format!("/Users?filter={}", pct(&format!("userName eq \"{spelling}\""))))
                .await;
            assert_eq!(r.body["totalResults"], 1, "{spelling}: {}", r.body);
            assert_eq!(r.body["Resources"][0]["id"], id.as_str());
        }
        let r = app
            .get(&format!("/Users?filter={}", pct("name.givenName eq \"JOSE\u{301}\"")))
            .await;
        assert_eq!(r.body["totalResults"], 1, "givenName folded as NFC: {}", r.body);
        app.finish().await;
    }
}

backend_test! {
    /// A refused 1 MB userName leaves a provisioning-log row of about a kilobyte, not 2 MB, and
    /// the error answer does not echo the megabyte either.
    async fn refused_huge_user_name_is_logged_bounded(backend) {
        let app = TestApp::spawn(backend).await;
        let huge = "x".repeat(1_000_000);
        let r = app
            .post("/Users", &json!({"schemas": [USER], "userName": huge, "active": true}))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"), "huge userName");
        assert!(r.body.to_string().len() < 2_000, "error echoes the value: {} bytes", r.body.to_string().len());
        let rows = app
            .store()
            .list_log(&app.account, &LogQuery { limit: 10, ..LogQuery::default() })
            .await
            .expect("log");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!(row.status, "failure");
        let size = row.user_name.as_deref().map_or(0, str::len)
            + row.error_message.as_deref().map_or(0, str::len)
            + row.modified.to_string().len();
        assert!(size < 3 * (LOG_VALUE_MAX_BYTES + 64), "log row holds {size} bytes");
        app.finish().await;
    }
}
