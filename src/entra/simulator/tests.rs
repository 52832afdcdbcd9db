//! Protocol tests against a started simulator, over HTTP with reqwest: the token endpoint and
//! its AADSTS errors, bearer checks, paging, `$top` bounds, `getByIds` with `$select`, direct
//! and transitive members, users by id and filter, `$batch`, and directory changes between
//! reads. Fault injection is tested in `tests_faults`.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

/// A reqwest client and the simulator it talks to.
pub(super) struct Harness {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn new(tenant: Tenant) -> Self {
        let sim = Simulator::start(tenant).await.expect("simulator starts");
        Self {
            sim,
            http: reqwest::Client::new(),
        }
    }

    pub async fn sample() -> Self {
        Self::new(sample_tenant()).await
    }

    /// A token request with these form fields, sent to `tenant`'s endpoint.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.sim.authority_url());
        let r = self.http.post(url).form(form).send().await.expect("send");
        let status = r.status();
        (status, r.json().await.expect("json body"))
    }

    /// A token by the client-credentials grant with the tenant's own credentials.
    pub async fn token(&self) -> String {
        let (tenant, client, secret) = self.sim.with_tenant(|t| {
            (
                t.tenant_id.clone(),
                t.client_id.clone(),
                t.client_secret.clone(),
            )
        });
        let (status, body) = self
            .token_request(
                &tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &client),
                    ("client_secret", &secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// GET an absolute URL, or a path under the Graph root.
    pub async fn get(
        &self,
        token: &str,
        url: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = self.absolute(url);
        let r = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.json().await.expect("json body"))
    }

    pub async fn post(&self, token: &str, url: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.absolute(url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        (status, r.json().await.expect("json body"))
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.sim.graph_url())
        }
    }

    /// Follows `@odata.nextLink` from `url`; returns the items and the number of pages.
    pub async fn collect(&self, token: &str, url: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = Some(url.to_owned());
        while let Some(url) = next {
            let (status, _, body) = self.get(token, &url).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            pages += 1;
            items.extend(body["value"].as_array().expect("value").iter().cloned());
            next = body["@odata.nextLink"].as_str().map(str::to_owned);
        }
        (items, pages)
    }
}

fn credentials_form<'a>(client: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
}

fn ids(items: &[Value], field: &str) -> HashSet<String> {
    items
        .iter()
        .filter_map(|v| v[field].as_str().map(str::to_owned))
        .collect()
}

fn sample_user_id(sim: &Simulator, upn: &str) -> String {
    sim.with_tenant(|t| t.user_by_upn(upn).expect("sample user").id.clone())
}

fn group_id(sim: &Simulator, name: &str) -> String {
    sim.with_tenant(|t| {
        t.groups()
            .find(|g| g.display_name == name)
            .expect("sample group")
            .id
            .clone()
    })
}

#[tokio::test]
async fn token_success_by_tenant_id_or_domain_and_national_scope() {
    let h = Harness::sample().await;
    let (status, body) = h
        .token_request(
            SAMPLE_TENANT_ID,
            &credentials_form(SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().expect("token");
    let (status, _, _) = h.get(token, "/users?$top=1").await;
    assert_eq!(status, StatusCode::OK);

    let mut form = credentials_form(SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET);
    form[3] = ("scope", "https://microsoftgraph.chinacloudapi.cn/.default");
    let (status, _) = h.token_request("contoso.onmicrosoft.com", &form).await;
    assert_eq!(status, StatusCode::OK);
    let stats = h.sim.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued), (2, 2));
    assert_eq!(stats.route("POST /{tenant}/oauth2/v2.0/token"), 2);
}

/// Tenant segment, form, expected status, OAuth error and AADSTS code.
type ErrorCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, &'a str, u64);

#[tokio::test]
async fn token_errors_carry_aadsts_codes_and_statuses() {
    let h = Harness::sample().await;
    let good = credentials_form(SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET);
    let with = |name: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        good.iter()
            .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let cases: Vec<ErrorCase> = vec![
        (
            "nope.onmicrosoft.com",
            good.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
        ),
        (
            SAMPLE_TENANT_ID,
            with("client_secret", "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        (
            SAMPLE_TENANT_ID,
            with("client_secret", ""),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
        ),
        (
            SAMPLE_TENANT_ID,
            with("client_id", "11111111-2222-3333-4444-555555555555"),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
        (
            SAMPLE_TENANT_ID,
            with("grant_type", "password"),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
        ),
        (
            SAMPLE_TENANT_ID,
            with("scope", "User.Read.All"),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
        ),
        (
            SAMPLE_TENANT_ID,
            with("scope", "https://management.azure.com/.default"),
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
        ),
        (
            SAMPLE_TENANT_ID,
            with("scope", ""),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
    ];
    for (tenant, form, status, error, code) in cases {
        let (got, body) = h.token_request(tenant, &form).await;
        assert_eq!(got, status, "AADSTS{code}: {body}");
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_codes"], json!([code]));
        let description = body["error_description"].as_str().expect("description");
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{description}"
        );
        assert!(description.contains("\r\nTrace ID: "));
        for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
    }
    h.sim.with_tenant(|t| t.client_secret_expired = true);
    let (got, body) = h.token_request(SAMPLE_TENANT_ID, &good).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_codes"], json!([7000222]));
    assert_eq!(h.sim.stats().tokens_issued, 0);
}

#[tokio::test]
async fn graph_requires_a_valid_bearer_token() {
    let h = Harness::sample().await;
    let url = format!("{}/users", h.sim.graph_url());
    let r = h.http.get(&url).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    assert!(r.headers().contains_key("request-id"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token is empty.");
    for field in ["date", "request-id", "client-request-id"] {
        assert!(body["error"]["innerError"][field].is_string(), "{body}");
    }

    let (status, _, body) = h.get("not-a-token-we-issued", "/users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    h.sim.with_faults(|f| f.token_lifetime_secs = 0);
    let expired = h.token().await;
    let (status, _, body) = h.get(&expired, "/users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    assert_eq!(h.sim.stats().unauthorized, 3);

    // The client's correlation id comes back.
    h.sim.with_faults(|f| f.token_lifetime_secs = 3599);
    let token = h.token().await;
    let r = h
        .http
        .get(&url)
        .bearer_auth(&token)
        .header("client-request-id", "c0ffee00-0000-4000-8000-000000000001")
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()["client-request-id"],
        "c0ffee00-0000-4000-8000-000000000001"
    );
}

/// A tenant with `n` users, each assigned directly.
fn directly_assigned(n: usize) -> Tenant {
    let mut t = Tenant::new("t-1", "c-1", "s-1");
    for i in 0..n {
        let id = t.add_user(SimUser::new(&format!("u{i}@example.com")).named("U", &i.to_string()));
        t.assign(&id);
    }
    t
}

#[tokio::test]
async fn assignments_page_with_next_links_until_complete() {
    let h = Harness::new(directly_assigned(2_500)).await;
    let token = h.sim.issue_token();
    let sp = h.sim.with_tenant(|t| t.service_principal_id.clone());
    let first = format!("/servicePrincipals/{sp}/appRoleAssignedTo?$top=999");
    let (status, _, body) = h.get(&token, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"].as_array().map(Vec::len), Some(999));
    let next = body["@odata.nextLink"].as_str().expect("next link");
    assert!(next.starts_with(&h.sim.graph_url()), "{next}");
    assert!(
        next.contains("$top=999") && next.contains("$skiptoken="),
        "{next}"
    );
    assert!(
        body["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!("servicePrincipals('{sp}')/appRoleAssignedTo")))
    );
    let item = &body["value"][0];
    for field in [
        "id",
        "appRoleId",
        "principalId",
        "principalDisplayName",
        "resourceId",
        "createdDateTime",
    ] {
        assert!(item[field].is_string(), "{field} in {item}");
    }
    assert_eq!(item["principalType"], "User");
    assert_eq!(item["resourceId"], sp.as_str());

    h.sim.reset_stats();
    let (items, pages) = h.collect(&token, &first).await;
    assert_eq!((items.len(), pages), (2_500, 3));
    assert_eq!(ids(&items, "principalId").len(), 2_500);
    let stats = h.sim.stats();
    assert_eq!(
        stats.route("GET /servicePrincipals/{id}/appRoleAssignedTo"),
        3
    );
    assert_eq!(stats.graph_requests, 3);

    // Default page size is 100.
    let (_, _, body) = h
        .get(
            &token,
            &format!("/servicePrincipals/{sp}/appRoleAssignedTo"),
        )
        .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(100));
}

#[tokio::test]
async fn top_above_999_and_unknown_service_principal_are_errors() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let (status, _, body) = h
        .get(
            &token,
            &format!(
                "/servicePrincipals/{SAMPLE_SERVICE_PRINCIPAL_ID}/appRoleAssignedTo?$top=1000"
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_UnsupportedQuery");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'1000'"))
    );

    let g = group_id(&h.sim, "Sales");
    let (status, _, _) = h
        .get(
            &token,
            &format!("/groups/{g}/members/microsoft.graph.user?$top=1000"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = h
        .get(
            &token,
            "/servicePrincipals/00000000-0000-0000-0000-000000000000/appRoleAssignedTo",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");

    let (status, _, body) = h.get(&token, "/nothingHere").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    let r = h
        .http
        .delete(format!("{}/users", h.sim.graph_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn get_by_ids_honours_types_and_select() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let megan = sample_user_id(&h.sim, "megan.bowen@contoso.onmicrosoft.com");
    let lee = sample_user_id(&h.sim, "lee.gu@contoso.com");
    let sales = group_id(&h.sim, "Sales");
    let body = json!({
        "ids": [megan, lee, sales, "99999999-0000-4000-8000-000000000000", megan],
        "types": ["user"],
    });
    let (status, reply) = h
        .post(
            &token,
            "/directoryObjects/getByIds?$select=id,userPrincipalName,mail,accountEnabled",
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let value = reply["value"].as_array().expect("value");
    assert_eq!(value.len(), 2, "{reply}");
    let m = &value[0];
    let keys: HashSet<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "@odata.type",
            "id",
            "userPrincipalName",
            "mail",
            "accountEnabled"
        ])
    );
    assert_eq!(m["@odata.type"], "#microsoft.graph.user");
    assert_eq!(m["mail"], "megan.bowen@contoso.com");
    assert_eq!(value[1]["accountEnabled"], false);

    // Without $select and types: whole objects, groups included.
    let (_, reply) = h
        .post(
            &token,
            "/directoryObjects/getByIds",
            &json!({ "ids": [megan, sales] }),
        )
        .await;
    assert_eq!(reply["value"][0]["mailNickname"], "megan.bowen");
    assert_eq!(reply["value"][0]["accountEnabled"], true);
    assert_eq!(reply["value"][1]["@odata.type"], "#microsoft.graph.group");

    let many: Vec<String> = (0..1001)
        .map(|i| format!("{i:08x}-0000-4000-8000-000000000000"))
        .collect();
    let (status, reply) = h
        .post(
            &token,
            "/directoryObjects/getByIds",
            &json!({ "ids": many }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, reply) = h
        .post(
            &token,
            "/directoryObjects/getByIds?$select=shoeSize",
            &json!({ "ids": [megan] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["error"]["code"], "Request_BadRequest");
}

#[tokio::test]
async fn direct_and_transitive_members_with_nested_groups() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let eng = group_id(&h.sim, "Engineering");
    let platform = group_id(&h.sim, "Platform Team");
    let select = "$select=id,userPrincipalName,accountEnabled";

    let direct_url = format!("/groups/{eng}/members/microsoft.graph.user?{select}");
    let (direct, _) = h.collect(&token, &direct_url).await;
    assert_eq!(direct.len(), 4);
    assert!(direct.iter().all(|u| u.get("@odata.type").is_none()));
    assert!(direct.iter().all(|u| u["accountEnabled"].is_boolean()));

    let transitive_url =
        format!("/groups/{eng}/transitiveMembers/microsoft.graph.user?{select}&$top=2");
    let (transitive, pages) = h.collect(&token, &transitive_url).await;
    assert_eq!((transitive.len(), pages), (6, 3));
    let diego = sample_user_id(&h.sim, "diego.siciliani@contoso.com");
    assert!(ids(&transitive, "id").contains(&diego));

    // Without the cast, the nested group itself is a member.
    let (all, _) = h.collect(&token, &format!("/groups/{eng}/members")).await;
    assert_eq!(all.len(), 5);
    assert!(
        all.iter()
            .any(|o| o["@odata.type"] == "#microsoft.graph.group" && o["id"] == platform.as_str())
    );
    let (all, _) = h
        .collect(&token, &format!("/groups/{eng}/transitiveMembers"))
        .await;
    assert_eq!(all.len(), 7);

    // A user in two nested paths appears once; a cycle does not loop.
    h.sim.with_tenant(|t| {
        t.add_member(&eng, &diego);
        t.add_member(&platform, &eng);
    });
    let (transitive, _) = h.collect(&token, &transitive_url).await;
    assert_eq!(transitive.len(), 6);

    // Default properties have no accountEnabled.
    let (_, _, body) = h
        .get(
            &token,
            &format!("/groups/{platform}/members/microsoft.graph.user"),
        )
        .await;
    assert!(body["value"][0].get("accountEnabled").is_none());
    assert!(body["value"][0]["userPrincipalName"].is_string());

    let (status, _, body) = h
        .get(
            &token,
            "/groups/00000000-0000-0000-0000-000000000000/transitiveMembers/microsoft.graph.user",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
}

#[tokio::test]
async fn users_by_id_upn_and_filter() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let megan = sample_user_id(&h.sim, "megan.bowen@contoso.onmicrosoft.com");
    let (status, _, u) = h
        .get(
            &token,
            &format!("/users/{megan}?$select=id,displayName,accountEnabled"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(u["displayName"], "Megan Bowen");
    assert_eq!(u["accountEnabled"], true);
    assert!(u.get("mail").is_none());
    assert!(
        u["@odata.context"]
            .as_str()
            .is_some_and(|c| c.ends_with("/$entity"))
    );

    let (status, _, u) = h
        .get(&token, "/users/Megan.Bowen@contoso.onmicrosoft.com")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(u["id"], megan.as_str());
    assert!(u.get("accountEnabled").is_none(), "not in the default set");

    let url = format!("{}/users", h.sim.graph_url());
    let r = h
        .http
        .get(&url)
        .bearer_auth(&token)
        .query(&[
            (
                "$filter",
                "userPrincipalName eq 'MEGAN.BOWEN@contoso.onmicrosoft.com'",
            ),
            ("$select", "id,mail"),
        ])
        .send()
        .await
        .expect("send");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["value"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["value"][0]["mail"], "megan.bowen@contoso.com");

    let (_, _, body) = h
        .get(&token, "/users?$filter=mail eq 'o''brien@contoso.com'")
        .await;
    assert_eq!(body["value"], json!([]));
    let (_, _, body) = h
        .get(&token, "/users?$filter=accountEnabled eq false&$select=id")
        .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(3));
    let (status, _, body) = h.get(&token, "/users?$filter=startswith(mail,'a')").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_UnsupportedQuery");
    let (status, _, _) = h.get(&token, "/users/nobody@contoso.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn batch_routes_sub_requests_and_enforces_limits() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let megan = sample_user_id(&h.sim, "megan.bowen@contoso.onmicrosoft.com");
    let eng = group_id(&h.sim, "Engineering");
    let body = json!({ "requests": [
        { "id": "1", "method": "GET", "url": format!("/users/{megan}?$select=id,mail") },
        { "id": "2", "method": "GET", "url": format!("groups/{eng}/transitiveMembers/microsoft.graph.user?$select=id&$top=4") },
        { "id": "3", "method": "POST", "url": "/directoryObjects/getByIds",
          "headers": { "Content-Type": "application/json" },
          "body": { "ids": [megan], "types": ["user"] } },
        { "id": "4", "method": "GET", "url": "/users/00000000-0000-0000-0000-000000000000" },
    ]});
    let (status, reply) = h.post(&token, "/$batch", &body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let responses = reply["responses"].as_array().expect("responses");
    let by_id = |id: &str| responses.iter().find(|r| r["id"] == id).expect("response");
    assert_eq!(by_id("1")["status"], 200);
    assert_eq!(by_id("1")["body"]["mail"], "megan.bowen@contoso.com");
    assert_eq!(
        by_id("2")["body"]["value"].as_array().map(Vec::len),
        Some(4)
    );
    let next = by_id("2")["body"]["@odata.nextLink"]
        .as_str()
        .expect("next link");
    assert!(next.starts_with(&h.sim.graph_url()));
    assert_eq!(by_id("3")["body"]["value"][0]["id"], megan.as_str());
    assert_eq!(by_id("4")["status"], 404);
    assert_eq!(
        by_id("4")["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(by_id("1")["headers"]["Content-Type"], "application/json");
    let stats = h.sim.stats();
    assert_eq!((stats.graph_requests, stats.batch_subrequests), (1, 4));
    assert_eq!(stats.route("POST /$batch"), 1);
    assert_eq!(stats.route("GET /users/{id}"), 2);

    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({ "id": i.to_string(), "method": "GET", "url": "/users?$top=1" }))
        .collect();
    let (status, reply) = h
        .post(&token, "/$batch", &json!({ "requests": too_many }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["error"]["code"], "BadRequest");
    let twenty: Vec<Value> = (0..20)
        .map(|i| json!({ "id": i.to_string(), "method": "GET", "url": "/users?$top=1" }))
        .collect();
    let (status, _) = h
        .post(&token, "/$batch", &json!({ "requests": twenty }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let dup = json!({ "requests": [
        { "id": "a", "method": "GET", "url": "/users" },
        { "id": "a", "method": "GET", "url": "/users" },
    ]});
    let (status, _) = h.post(&token, "/$batch", &dup).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let absolute = json!({ "requests": [
        { "id": "x", "method": "GET", "url": format!("{}/users", h.sim.graph_url()) },
    ]});
    let (_, reply) = h.post(&token, "/$batch", &absolute).await;
    assert_eq!(reply["responses"][0]["status"], 400);
}

#[tokio::test]
async fn directory_changes_show_in_the_next_read() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let sp = SAMPLE_SERVICE_PRINCIPAL_ID;
    let lidia = sample_user_id(&h.sim, "lidia.holloway@contoso.com");
    let adele = sample_user_id(&h.sim, "adele.vance@contoso.com");
    let eng = group_id(&h.sim, "Engineering");
    let assignments_url = format!("/servicePrincipals/{sp}/appRoleAssignedTo?$top=999");
    let members_url = format!("/groups/{eng}/transitiveMembers/microsoft.graph.user?$select=id");
    let (before, _) = h.collect(&token, &assignments_url).await;
    assert_eq!(before.len(), 9);

    h.sim.with_tenant(|t| {
        assert!(t.update_user(&lidia, |u| {
            u.display_name = Some("Lidia Holloway-Smith".into());
            u.surname = Some("Holloway-Smith".into());
            u.account_enabled = false;
        }));
    });
    let (_, _, u) = h
        .get(
            &token,
            &format!("/users/{lidia}?$select=displayName,surname,accountEnabled"),
        )
        .await;
    assert_eq!(u["displayName"], "Lidia Holloway-Smith");
    assert_eq!(u["accountEnabled"], false);
    let (items, _) = h.collect(&token, &assignments_url).await;
    assert!(items.iter().any(|a| a["principalId"] == lidia.as_str()
        && a["principalDisplayName"] == "Lidia Holloway-Smith"));

    assert!(h.sim.with_tenant(|t| t.unassign(&lidia)));
    let (items, _) = h.collect(&token, &assignments_url).await;
    assert_eq!(items.len(), 8);
    assert!(!ids(&items, "principalId").contains(&lidia));

    assert!(h.sim.with_tenant(|t| t.remove_member(&eng, &adele)));
    let (members, _) = h.collect(&token, &members_url).await;
    assert_eq!(members.len(), 5);
    assert!(!ids(&members, "id").contains(&adele));
    h.sim.with_tenant(|t| t.set_members(&eng, [adele.clone()]));
    let (members, _) = h.collect(&token, &members_url).await;
    assert_eq!(ids(&members, "id"), HashSet::from([adele.clone()]));

    // Deleting a user drops its memberships and assignments.
    let megan = sample_user_id(&h.sim, "megan.bowen@contoso.onmicrosoft.com");
    assert!(h.sim.with_tenant(|t| t.remove_user(&megan)).is_some());
    let (items, _) = h.collect(&token, &assignments_url).await;
    assert_eq!(items.len(), 7);
    let (status, _, _) = h.get(&token, &format!("/users/{megan}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn sample_and_large_tenants_have_the_promised_shape() {
    let t = sample_tenant();
    assert_eq!(t.user_count(), 20);
    assert_eq!(t.groups().count(), 3);
    assert_eq!(t.users().filter(|u| !u.account_enabled).count(), 3);
    assert!(t.users().any(
        |u| u.user_principal_name.ends_with("@contoso.onmicrosoft.com")
            && u.mail.as_deref() == Some("megan.bowen@contoso.com")
    ));
    // 4 Engineering + 5 Sales + 6 direct others (Pradeep counted once); + 2 via Platform Team.
    assert_eq!(t.effective_assigned_users(false).len(), 15);
    assert_eq!(t.effective_assigned_users(true).len(), 17);

    let big = large_tenant(12_000);
    assert_eq!(big.user_count(), 12_000);
    assert_eq!(big.groups().count(), 3);
    assert_eq!(
        big.groups().map(|g| g.members.len()).max(),
        Some(LARGE_GROUP_SIZE)
    );
    let direct = big
        .assignments()
        .iter()
        .filter(|a| a.principal_type == PrincipalType::User)
        .count();
    assert_eq!(direct, 1_200);
    assert_eq!(big.effective_assigned_users(false).len(), 12_000);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let h = Harness::sample().await;
    let url = h.sim.graph_url();
    h.sim.shutdown().await;
    assert!(h.http.get(format!("{url}/users")).send().await.is_err());
}
