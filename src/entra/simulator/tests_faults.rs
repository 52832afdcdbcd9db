//! Fault injection tests: throttling with `Retry-After` (also inside `$batch`), 503/504,
//! truncated pages, broken next links, token expiry, token endpoint outages, missing admin
//! consent, latency, and the statistics that record them.

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::tests::Harness;
use super::*;

fn assignments_url() -> String {
    format!("/servicePrincipals/{SAMPLE_SERVICE_PRINCIPAL_ID}/appRoleAssignedTo?$top=4")
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_then_recovers() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| {
        f.throttle_next = 2;
        f.retry_after = "2.128".into();
    });
    for _ in 0..2 {
        let (status, headers, body) = h.get(&token, &assignments_url()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "2.128");
        assert_eq!(body["error"]["code"], "TooManyRequests");
        assert!(body["error"]["innerError"]["request-id"].is_string());
    }
    let (status, _, _) = h.get(&token, &assignments_url()).await;
    assert_eq!(status, StatusCode::OK);

    h.sim.with_faults(|f| {
        f.throttle_next = 1;
        f.retry_after = "Wed, 21 Oct 2015 07:28:00 GMT".into();
    });
    let (status, headers, _) = h.get(&token, "/users").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "Wed, 21 Oct 2015 07:28:00 GMT");
    h.sim.with_faults(|f| {
        f.throttle_next = 1;
        f.retry_after = String::new();
    });
    let (status, headers, _) = h.get(&token, "/users").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!headers.contains_key("retry-after"));

    let stats = h.sim.stats();
    assert_eq!((stats.throttled, stats.graph_requests), (4, 5));
    assert_eq!(h.sim.faults().throttle_next, 0);
}

#[tokio::test]
async fn server_errors_503_and_504() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| f.server_error_next = 1);
    let (status, headers, body) = h.get(&token, "/users").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    h.sim.with_faults(|f| {
        f.server_error_next = 1;
        f.server_error_status = 504;
    });
    let (status, _, body) = h.get(&token, "/users").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"]["code"], "UnknownError");
    let (status, _, _) = h.get(&token, "/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.sim.stats().server_errors, 2);
}

#[tokio::test]
async fn a_truncated_page_has_context_but_no_value() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| f.truncate_page = Some(2));
    let (status, _, first) = h.get(&token, &assignments_url()).await;
    assert_eq!(status, StatusCode::OK);
    let next = first["@odata.nextLink"]
        .as_str()
        .expect("next link")
        .to_owned();
    let (status, _, second) = h.get(&token, &next).await;
    assert_eq!(status, StatusCode::OK);
    assert!(second["@odata.context"].is_string());
    assert!(second.get("value").is_none(), "{second}");
    assert!(second.get("@odata.nextLink").is_none());
    // Consumed: the same page now comes whole.
    let (_, _, again) = h.get(&token, &next).await;
    assert_eq!(again["value"].as_array().map(Vec::len), Some(4));
    assert_eq!(h.sim.faults().truncate_page, None);
}

#[tokio::test]
async fn a_broken_next_link_is_rejected() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| f.break_next_link = Some(1));
    let (_, _, first) = h.get(&token, &assignments_url()).await;
    assert_eq!(first["value"].as_array().map(Vec::len), Some(4));
    let broken = first["@odata.nextLink"].as_str().expect("next link");
    assert!(broken.starts_with(&h.sim.graph_url()));
    let (status, _, body) = h.get(&token, broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Directory_ExpiredPageToken");
    // From the start again, paging completes.
    let (items, pages) = h.collect(&token, &assignments_url()).await;
    assert_eq!((items.len(), pages), (9, 3));

    // Even a single-page answer gets a link that leads nowhere.
    let eng = h
        .sim
        .with_tenant(|t| {
            t.groups()
                .find(|g| g.display_name == "Platform Team")
                .map(|g| g.id.clone())
        })
        .expect("group");
    h.sim.with_faults(|f| f.break_next_link = Some(1));
    let (_, _, body) = h
        .get(
            &token,
            &format!("/groups/{eng}/members/microsoft.graph.user"),
        )
        .await;
    let link = body["@odata.nextLink"].as_str().expect("broken link");
    let (status, _, _) = h.get(&token, link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expired_tokens_answer_401_until_a_new_token_is_used() {
    let h = Harness::sample().await;
    let old = h.token().await;
    let (status, _, _) = h.get(&old, "/users?$top=1").await;
    assert_eq!(status, StatusCode::OK);
    h.sim.with_faults(|f| f.expire_tokens = true);
    for _ in 0..2 {
        let (status, _, body) = h.get(&old, "/users?$top=1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
        assert_eq!(
            body["error"]["message"],
            "Access token has expired or is not yet valid."
        );
    }
    let fresh = h.token().await;
    let (status, _, _) = h.get(&fresh, "/users?$top=1").await;
    assert_eq!(status, StatusCode::OK);
    let stats = h.sim.stats();
    assert_eq!((stats.unauthorized, stats.token_requests), (2, 2));
    assert!(!h.sim.faults().expire_tokens);
}

#[tokio::test]
async fn batch_sub_requests_are_throttled_one_by_one() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| {
        f.throttle_next = 1;
        f.retry_after = "3".into();
        f.reorder_batch = true;
    });
    let requests: Vec<Value> = (1..=3)
        .map(|i| json!({ "id": i.to_string(), "method": "GET", "url": "/users?$top=1&$select=id" }))
        .collect();
    let (status, reply) = h
        .post(&token, "/$batch", &json!({ "requests": requests }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let responses = reply["responses"].as_array().expect("responses");
    assert_eq!(responses[0]["id"], "3", "reordered");
    let one = responses
        .iter()
        .find(|r| r["id"] == "1")
        .expect("response 1");
    assert_eq!(one["status"], 429);
    assert_eq!(one["headers"]["Retry-After"], "3");
    assert_eq!(one["body"]["error"]["code"], "TooManyRequests");
    assert!(responses.iter().filter(|r| r["status"] == 200).count() == 2);
    assert_eq!(h.sim.stats().throttled, 1);
}

#[tokio::test]
async fn token_endpoint_outage_then_success() {
    let h = Harness::sample().await;
    h.sim.with_faults(|f| f.token_unavailable_next = 1);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", SAMPLE_CLIENT_ID),
        ("client_secret", SAMPLE_CLIENT_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (status, body) = h.token_request(SAMPLE_TENANT_ID, &form).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "temporarily_unavailable");
    let (status, _) = h.token_request(SAMPLE_TENANT_ID, &form).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn missing_admin_consent_is_403_on_graph() {
    let h = Harness::sample().await;
    h.sim.with_tenant(|t| t.admin_consent = false);
    let token = h.token().await;
    let (status, _, body) = h.get(&token, &assignments_url()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    h.sim.with_tenant(|t| t.admin_consent = true);
    let (status, _, _) = h.get(&token, &assignments_url()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn latency_and_stats_by_route() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    h.sim.with_faults(|f| f.delay_ms = 120);
    let started = Instant::now();
    let (status, _, _) = h.get(&token, "/users?$top=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed().as_millis() >= 120);
    h.sim.set_faults(Faults::default());
    let (_, _, _) = h
        .get(&token, "/groups/x/members/microsoft.graph.user")
        .await;
    let (_, _, _) = h.get(&token, "/bogus/path").await;
    let stats = h.sim.stats();
    assert_eq!(stats.route("GET /users"), 1);
    assert_eq!(
        stats.route("GET /groups/{id}/members/microsoft.graph.user"),
        1
    );
    assert_eq!(stats.route("GET (unknown)"), 1);
    assert_eq!(stats.graph_requests, 3);
    h.sim.reset_stats();
    assert_eq!(h.sim.stats(), Stats::default());
}
