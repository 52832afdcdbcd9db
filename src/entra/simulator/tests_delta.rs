//! Delta query tests over HTTP: `users/delta` and `groups/delta` rounds (first round, paging
//! with `Prefer: odata.maxpagesize`, delta links, incremental rounds with renames, disables,
//! soft and hard deletes, restores and creations, replays, `$deltatoken=latest`),
//! `members@delta` spread over pages, `$filter` by id (and its limit of 50), token expiry (410),
//! page faults on delta pages, `$batch`, and request statistics.

use std::collections::{HashMap, HashSet};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::tests::Harness;
use super::*;

const USER_SELECT: &str = "$select=userPrincipalName,givenName,surname,mail,accountEnabled";

/// One page: status, headers, body.
async fn get_paged(
    h: &Harness,
    token: &str,
    url: &str,
    max_page: Option<usize>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", h.sim.graph_url())
    };
    let mut req = h.http.get(url).bearer_auth(token);
    if let Some(n) = max_page {
        req = req.header("Prefer", format!("odata.maxpagesize={n}"));
    }
    let r = req.send().await.expect("send");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.expect("json body"))
}

/// A whole round: every page's `value`, and the final delta link.
struct Round {
    pages: Vec<Vec<Value>>,
    delta_link: String,
}

impl Round {
    fn items(&self) -> Vec<Value> {
        self.pages.iter().flatten().cloned().collect()
    }

    /// Items by id (the last one wins for a group repeated over pages).
    fn by_id(&self) -> HashMap<String, Value> {
        self.items()
            .into_iter()
            .map(|v| (v["id"].as_str().expect("id").to_owned(), v))
            .collect()
    }
}

async fn round(h: &Harness, token: &str, url: &str, max_page: Option<usize>) -> Round {
    let mut pages = Vec::new();
    let mut next = url.to_owned();
    loop {
        let (status, _, body) = get_paged(h, token, &next, max_page).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages.push(body["value"].as_array().expect("value").clone());
        assert!(pages.len() < 10_000, "runaway paging");
        match (
            body["@odata.nextLink"].as_str(),
            body["@odata.deltaLink"].as_str(),
        ) {
            (Some(n), None) => {
                assert!(n.contains("/delta?$skiptoken="), "{n}");
                next = n.to_owned();
            }
            (None, Some(d)) => {
                assert!(d.contains("/delta?$deltatoken="), "{d}");
                return Round {
                    pages,
                    delta_link: d.to_owned(),
                };
            }
            other => panic!("a page needs exactly one of nextLink and deltaLink: {other:?}"),
        }
    }
}

fn upn_id(sim: &Simulator, upn: &str) -> String {
    sim.with_tenant(|t| t.user_by_upn(upn).expect("user").id.clone())
}

fn group_named(sim: &Simulator, name: &str) -> String {
    sim.with_tenant(|t| {
        t.groups()
            .find(|g| g.display_name == name)
            .expect("group")
            .id
            .clone()
    })
}

#[tokio::test]
async fn users_delta_first_round_pages_with_opaque_links() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let url = format!("/users/delta?{USER_SELECT}");
    let (status, headers, first) = get_paged(&h, &token, &url, Some(7)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["preference-applied"], "odata.maxpagesize=7");
    assert_eq!(first["value"].as_array().map(Vec::len), Some(7));
    let next = first["@odata.nextLink"].as_str().expect("next link");
    // The options travel inside the token, not beside it.
    assert!(!next.contains("select"), "{next}");
    assert!(first["@odata.context"].as_str().is_some_and(|c| {
        c.ends_with("$metadata#users(userPrincipalName,givenName,surname,mail,accountEnabled)")
    }));

    let r = round(&h, &token, &url, Some(7)).await;
    let sizes: Vec<usize> = r.pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![7, 7, 6]);
    let items = r.items();
    let ids: HashSet<&str> = items.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids.len(), 20);
    let megan = items
        .iter()
        .find(|u| u["givenName"] == "Megan")
        .expect("Megan");
    let keys: HashSet<&str> = megan
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "id",
            "userPrincipalName",
            "givenName",
            "surname",
            "mail",
            "accountEnabled"
        ])
    );
    // Without a preference: Graph's default page of 100 holds the whole sample tenant.
    let (_, headers, whole) = get_paged(&h, &token, &url, None).await;
    assert!(!headers.contains_key("preference-applied"));
    assert_eq!(whole["value"].as_array().map(Vec::len), Some(20));
    assert!(whole["@odata.deltaLink"].is_string());
    assert_eq!(h.sim.stats().route("GET /users/delta"), 5);
    assert_eq!(h.sim.stats().route("GET /users/{id}"), 0);
}

#[tokio::test]
async fn users_delta_reports_changes_since_the_link_and_replays() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let first = round(&h, &token, &format!("/users/delta?{USER_SELECT}"), Some(5)).await;
    // Nothing changed: an empty round.
    let quiet = round(&h, &token, &first.delta_link, None).await;
    assert!(quiet.items().is_empty());

    let adele = upn_id(&h.sim, "adele.vance@contoso.com");
    let lidia = upn_id(&h.sim, "lidia.holloway@contoso.com");
    let lynne = upn_id(&h.sim, "lynne.robbins@contoso.com");
    let nestor = upn_id(&h.sim, "nestor.wilke@contoso.com");
    let alex = upn_id(&h.sim, "alex.wilber@contoso.com");
    let new_id = h.sim.with_tenant(|t| {
        assert!(t.update_user(&adele, |u| u.given_name = Some("Adeline".into())));
        assert!(t.disable_user(&lidia));
        assert!(t.soft_delete_user(&lynne));
        assert!(t.remove_user(&nestor).is_some());
        // Not selected: not tracked.
        assert!(t.update_user(&alex, |u| u.department = Some("Research".into())));
        t.add_user(SimUser::new("new.hire@contoso.com").named("New", "Hire"))
    });
    let r = round(&h, &token, &first.delta_link, None).await;
    let by_id = r.by_id();
    assert_eq!(by_id.len(), 5, "{by_id:?}");
    assert_eq!(by_id[&adele], json!({"id": adele, "givenName": "Adeline"}));
    assert_eq!(by_id[&lidia], json!({"id": lidia, "accountEnabled": false}));
    assert_eq!(
        by_id[&lynne],
        json!({"id": lynne, "@removed": {"reason": "changed"}})
    );
    assert_eq!(
        by_id[&nestor],
        json!({"id": nestor, "@removed": {"reason": "deleted"}})
    );
    assert_eq!(by_id[&new_id]["userPrincipalName"], "new.hire@contoso.com");
    assert_eq!(by_id[&new_id]["accountEnabled"], true);
    assert!(!by_id.contains_key(&alex));

    // A replay of the first link reports the same changes, plus newer ones.
    h.sim.with_tenant(|t| assert!(t.restore_user(&lynne)));
    let replay = round(&h, &token, &first.delta_link, None).await.by_id();
    assert_eq!(replay.len(), 5);
    assert_eq!(
        replay[&lynne]["userPrincipalName"],
        "lynne.robbins@contoso.com"
    );
    assert_eq!(replay[&adele], by_id[&adele]);
    // The second round's own link reports only what came after it.
    let after = round(&h, &token, &r.delta_link, None).await.by_id();
    assert_eq!(after.keys().collect::<Vec<_>>(), vec![&lynne]);
    // The restore gave back Lynne's direct assignment.
    assert!(h.sim.with_tenant(|t| t.is_assigned(&lynne)));
}

#[tokio::test]
async fn users_delta_latest_skips_the_first_round_and_filters_by_id() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let adele = upn_id(&h.sim, "adele.vance@contoso.com");
    let alex = upn_id(&h.sim, "alex.wilber@contoso.com");
    let (status, _, body) = get_paged(
        &h,
        &token,
        &format!("/users/delta?{USER_SELECT}&$deltatoken=latest"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], json!([]));
    assert!(body["@odata.nextLink"].is_null());
    let latest = body["@odata.deltaLink"]
        .as_str()
        .expect("delta link")
        .to_owned();
    h.sim.with_tenant(|t| {
        t.update_user(&adele, |u| u.surname = Some("Vance-Smith".into()));
        t.update_user(&alex, |u| u.surname = Some("Wilber-Jones".into()));
    });
    let changed = round(&h, &token, &latest, None).await.by_id();
    assert_eq!(changed.len(), 2);
    assert_eq!(changed[&adele]["surname"], "Vance-Smith");

    let filtered = format!("/users/delta?$select=surname&$filter=id eq '{alex}'");
    let r = round(&h, &token, &filtered, None).await;
    assert_eq!(
        r.items(),
        vec![json!({"id": alex, "surname": "Wilber-Jones"})]
    );
    h.sim.with_tenant(|t| {
        t.update_user(&adele, |u| u.surname = Some("Vance".into()));
    });
    assert!(
        round(&h, &token, &r.delta_link, None)
            .await
            .items()
            .is_empty()
    );
}

/// A tenant with one group of `n` users (and one small group), for paging members.
fn group_tenant(n: usize) -> (Tenant, String, String, Vec<String>) {
    let mut t = sample_tenant();
    let ids: Vec<String> = (0..n)
        .map(|i| t.add_user(SimUser::new(&format!("member{i:04}@contoso.com"))))
        .collect();
    let big = t.add_group(SimGroup::new("Big").with_members(ids.clone()));
    let small = t.add_group(SimGroup::new("Small").with_members(ids[..3].to_vec()));
    t.assign(&big);
    (t, big, small, ids)
}

#[tokio::test]
async fn groups_delta_spreads_a_large_group_over_pages() {
    let (tenant, big, small, ids) = group_tenant(250);
    let h = Harness::new(tenant).await;
    let token = h.sim.issue_token();
    let url = format!(
        "/groups/delta?$select=displayName,members&$filter=id eq '{big}' or id eq '{small}'"
    );
    let r = round(&h, &token, &url, Some(100)).await;
    assert!(r.pages.len() >= 3, "{} pages", r.pages.len());
    let mut members = Vec::new();
    let mut seen_groups = Vec::new();
    for page in &r.pages {
        let objects: usize = page
            .iter()
            .map(|g| 1 + g["members@delta"].as_array().map_or(0, Vec::len))
            .sum();
        assert!(objects <= 100, "{objects} objects on a page");
        for g in page {
            let id = g["id"].as_str().expect("id");
            if seen_groups.last().map(String::as_str) != Some(id) {
                seen_groups.push(id.to_owned());
            }
            if id == big {
                for m in g["members@delta"].as_array().expect("members@delta") {
                    assert_eq!(m["@odata.type"], "#microsoft.graph.user");
                    assert!(m.get("@removed").is_none());
                    members.push(m["id"].as_str().expect("member id").to_owned());
                }
            }
        }
    }
    // Each group once, its pages consecutive; the big one on several pages.
    assert_eq!(seen_groups.len(), 2, "{seen_groups:?}");
    let pages_with_big = r
        .pages
        .iter()
        .filter(|p| p.iter().any(|g| g["id"] == big.as_str()))
        .count();
    assert!(pages_with_big >= 3);
    assert_eq!(members.len(), 250);
    let distinct: HashSet<&String> = members.iter().collect();
    assert_eq!(distinct, ids.iter().collect());
    let big_head = r.pages[0]
        .iter()
        .find(|g| g["id"] == big.as_str())
        .expect("big first");
    assert_eq!(big_head["displayName"], "Big");
}

#[tokio::test]
async fn groups_delta_reports_only_membership_changes() {
    let (tenant, big, small, ids) = group_tenant(20);
    let h = Harness::new(tenant).await;
    let token = h.sim.issue_token();
    let engineering = group_named(&h.sim, "Engineering");
    let url =
        format!("/groups/delta?$select=members&$filter=id eq '{big}' or id eq '{engineering}'");
    let first = round(&h, &token, &url, None).await;
    let eng = &first.by_id()[&engineering];
    // Engineering has a nested group among its members.
    let kinds: HashSet<&str> = eng["members@delta"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["@odata.type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        HashSet::from(["#microsoft.graph.user", "#microsoft.graph.group"])
    );
    assert!(
        round(&h, &token, &first.delta_link, None)
            .await
            .items()
            .is_empty()
    );

    let outsider = upn_id(&h.sim, "miriam.graham@contoso.com");
    let adele = upn_id(&h.sim, "adele.vance@contoso.com");
    h.sim.with_tenant(|t| {
        assert!(t.add_member(&big, &outsider));
        assert!(t.remove_member(&big, &ids[4]));
        // Soft delete takes the user out of every group.
        assert!(t.soft_delete_user(&adele));
        // Not in the filter: not reported.
        assert!(t.remove_member(&small, &ids[0]));
        // Renaming is not tracked when only members are selected.
        assert!(t.rename_group(&big, "Bigger"));
    });
    let r = round(&h, &token, &first.delta_link, None).await;
    let by_id = r.by_id();
    assert_eq!(by_id.len(), 2, "{by_id:?}");
    let mut big_delta: Vec<Value> = by_id[&big]["members@delta"]
        .as_array()
        .expect("members")
        .clone();
    big_delta.sort_by_key(|m| m["id"].as_str().map(str::to_owned));
    let mut expected = vec![
        json!({"@odata.type": "#microsoft.graph.user", "id": outsider}),
        json!({"@odata.type": "#microsoft.graph.user", "id": ids[4], "@removed": {"reason": "deleted"}}),
    ];
    expected.sort_by_key(|m| m["id"].as_str().map(str::to_owned));
    assert_eq!(big_delta, expected);
    assert_eq!(
        by_id[&engineering]["members@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": adele, "@removed": {"reason": "deleted"}}])
    );
    assert_eq!(
        by_id[&big].as_object().map(|m| m.len()),
        Some(2),
        "id and members@delta only"
    );

    // Deleting the group itself: `@removed` with reason `deleted`.
    h.sim
        .with_tenant(|t| assert!(t.remove_group(&big).is_some()));
    let after = round(&h, &token, &r.delta_link, None).await.by_id();
    assert_eq!(
        after[&big],
        json!({"id": big, "@removed": {"reason": "deleted"}})
    );
    assert_eq!(h.sim.stats().route("GET /groups/delta"), 4);
}

#[tokio::test]
async fn groups_delta_filter_allows_at_most_fifty_ids() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let clause = |n: usize| {
        (0..n)
            .map(|i| format!("id eq '00000000-0000-4000-8000-{i:012}'"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let (status, _, body) = get_paged(
        &h,
        &token,
        &format!("/groups/delta?$select=members&$filter={}", clause(50)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], json!([]));
    let (status, _, body) = get_paged(
        &h,
        &token,
        &format!("/groups/delta?$select=members&$filter={}", clause(51)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_UnsupportedQuery");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let (status, _, body) = get_paged(&h, &token, "/groups/delta?$select=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
}

#[tokio::test]
async fn expired_delta_tokens_answer_410() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let url = format!("/users/delta?{USER_SELECT}");
    let first = round(&h, &token, &url, None).await;
    let (_, _, page) = get_paged(&h, &token, &url, Some(5)).await;
    let skip = page["@odata.nextLink"].as_str().expect("next").to_owned();

    h.sim.expire_delta_tokens(DeltaExpiry::SyncStateNotFound);
    for link in [&first.delta_link, &skip] {
        let (status, _, body) = get_paged(&h, &token, link, None).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(body["error"]["code"], "syncStateNotFound");
        assert!(body["error"]["innerError"]["date"].is_string());
    }
    // A fresh round works, and its link too.
    let fresh = round(&h, &token, &url, None).await;
    assert_eq!(fresh.items().len(), 20);
    assert!(
        round(&h, &token, &fresh.delta_link, None)
            .await
            .items()
            .is_empty()
    );

    // The same through the faults, with the other code.
    h.sim.with_faults(|f| {
        f.expire_delta_tokens = true;
        f.delta_expiry = DeltaExpiry::ResyncRequired;
    });
    let (status, _, body) = get_paged(&h, &token, &fresh.delta_link, None).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(body["error"]["code"], "resyncRequired");
    assert!(!h.sim.faults().expire_delta_tokens);

    // A token from another simulator is unknown here.
    let other = Harness::sample().await;
    let other_token = other.sim.issue_token();
    let theirs = round(&other, &other_token, &url, None).await.delta_link;
    let path = theirs.split_once("/v1.0").expect("graph path").1;
    let (status, _, body) = get_paged(&h, &token, path, None).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}

#[tokio::test]
async fn page_faults_and_throttling_apply_to_delta_pages() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let url = format!("/users/delta?{USER_SELECT}");

    h.sim.with_faults(|f| f.throttle_next = 1);
    let (status, headers, body) = get_paged(&h, &token, &url, Some(5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "TooManyRequests");

    h.sim.with_faults(|f| f.truncate_page = Some(2));
    let (_, _, first) = get_paged(&h, &token, &url, Some(5)).await;
    let next = first["@odata.nextLink"].as_str().expect("next").to_owned();
    let (status, _, truncated) = get_paged(&h, &token, &next, Some(5)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(truncated["@odata.context"].is_string());
    assert!(truncated.get("value").is_none());
    assert!(truncated.get("@odata.nextLink").is_none());
    assert!(truncated.get("@odata.deltaLink").is_none());

    // The last page of a round: the loop fault replaces the delta link with a link to itself.
    let (_, _, whole) = get_paged(&h, &token, &url, None).await;
    let delta = whole["@odata.deltaLink"]
        .as_str()
        .expect("delta")
        .to_owned();
    h.sim.with_faults(|f| f.loop_next_link = true);
    let (_, _, looped) = get_paged(&h, &token, &delta, None).await;
    let again = looped["@odata.nextLink"].as_str().expect("loop").to_owned();
    let (_, _, looped2) = get_paged(&h, &token, &again, None).await;
    assert_eq!(looped2["@odata.nextLink"].as_str(), Some(again.as_str()));
    assert!(looped2.get("@odata.deltaLink").is_none());
    h.sim.with_faults(|f| {
        f.loop_next_link = false;
        f.break_next_link = Some(1);
    });
    let (_, _, broken) = get_paged(&h, &token, &url, Some(5)).await;
    let bad = broken["@odata.nextLink"].as_str().expect("next").to_owned();
    let (status, _, body) = get_paged(&h, &token, &bad, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Directory_ExpiredPageToken");
}

#[tokio::test]
async fn delta_inside_batch_honours_the_sub_request_preference() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let (status, body) = h
        .post(
            &token,
            "/$batch",
            &json!({"requests": [
                {"id": "1", "method": "GET", "url": "/users/delta?$select=mail",
                 "headers": {"Prefer": "odata.maxpagesize=3"}},
                {"id": "2", "method": "GET", "url": "/groups/microsoft.graph.delta()?$select=members&$deltatoken=latest"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let responses = body["responses"].as_array().expect("responses");
    let one = responses.iter().find(|r| r["id"] == "1").expect("1");
    assert_eq!(one["status"], 200);
    assert_eq!(one["body"]["value"].as_array().map(Vec::len), Some(3));
    assert_eq!(one["headers"]["Preference-Applied"], "odata.maxpagesize=3");
    let two = responses.iter().find(|r| r["id"] == "2").expect("2");
    assert_eq!(two["body"]["value"], json!([]));
    assert!(two["body"]["@odata.deltaLink"].is_string());
    let stats = h.sim.stats();
    assert_eq!(stats.route("GET /users/delta"), 1);
    assert_eq!(stats.route("GET /groups/delta"), 1);
}

#[tokio::test]
async fn mutators_record_changes_only_when_something_changes() {
    let h = Harness::sample().await;
    let adele = upn_id(&h.sim, "adele.vance@contoso.com");
    let sales = group_named(&h.sim, "Sales");
    h.sim.with_tenant(|t| {
        let start = t.change_position();
        assert!(t.update_user(&adele, |u| u.given_name = Some("Adele".into())));
        assert!(t.add_member(&sales, &adele));
        let after_noops = t.change_position();
        assert_eq!(after_noops, start + 1, "only the new membership");
        assert!(t.add_member(&sales, &adele));
        assert!(t.assign(&adele));
        assert!(t.unassign(&adele));
        assert!(!t.unassign(&adele));
        assert_eq!(t.change_position(), after_noops + 2);
        assert!(t.soft_delete_user(&adele));
        assert!(t.deleted_user(&adele).is_some());
        assert!(t.user(&adele).is_none());
        assert!(!t.soft_delete_user(&adele));
        assert!(t.restore_user(&adele));
        assert!(
            t.direct_user_members(&sales)
                .expect("sales")
                .iter()
                .any(|u| u.id == adele)
        );
    });
}

#[tokio::test]
async fn a_restored_user_keeps_its_place_in_the_first_round() {
    let h = Harness::sample().await;
    let token = h.sim.issue_token();
    let url = "/users/delta?$select=mail";
    let order = |r: &Round| -> Vec<String> {
        r.items()
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect()
    };
    let before = order(&round(&h, &token, url, Some(3)).await);
    let joni = upn_id(&h.sim, "joni.sherman@contoso.com");
    h.sim.with_tenant(|t| assert!(t.soft_delete_user(&joni)));
    let during = order(&round(&h, &token, url, Some(3)).await);
    assert_eq!(during.len(), before.len() - 1);
    assert!(!during.contains(&joni));
    h.sim.with_tenant(|t| assert!(t.restore_user(&joni)));
    assert_eq!(order(&round(&h, &token, url, Some(3)).await), before);
    // The restore gave back Joni's membership of Sales.
    let sales = group_named(&h.sim, "Sales");
    assert!(h.sim.with_tenant(|t| {
        t.direct_user_members(&sales)
            .expect("sales")
            .iter()
            .any(|u| u.id == joni)
    }));
}
