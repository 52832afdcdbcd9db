//! The HTTP side of the load: what every client shares ([`Shared`]), the random user picker,
//! and one request of each scenario with its check of the answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::load::Scenario;
use crate::seed::{Seeded, user_body, user_name};

const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";

/// SplitMix64: a small, fast, good-enough generator for picking users.
pub struct Rng(u64);

impl Rng {
    pub fn new(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What every client shares.
pub struct Shared {
    client: reqwest::Client,
    base: String,
    /// `http://host:port/healthz`.
    healthz: String,
    auth: String,
    user_ids: Vec<String>,
    group_id: String,
    pub concurrency: usize,
    run_tag: String,
    seq: AtomicU64,
    /// Users created by the `create` scenario, not yet group members.
    created: Mutex<Vec<String>>,
    /// Members successfully added by the `patch group` scenario (warm-up included).
    pub members_added: AtomicU64,
}

impl Shared {
    /// Clients of the server at SCIM `base`, on the `seeded` users and group.
    pub fn new(base: String, seeded: Seeded, concurrency: usize) -> Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let healthz = format!("{}/healthz", base.strip_suffix("/scim/v2").unwrap_or(&base));
        Ok(Self {
            client,
            healthz,
            base,
            auth: format!("Bearer {}", seeded.token),
            user_ids: seeded.user_ids,
            group_id: seeded.group_id,
            concurrency,
            run_tag: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            seq: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
            members_added: AtomicU64::new(0),
        })
    }

    /// The users created by the `create` scenario that are not group members yet.
    pub fn created(&self) -> MutexGuard<'_, Vec<String>> {
        self.created.lock().expect("created-users list poisoned")
    }

    /// A request to `path` under the SCIM base, with the bearer token.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth)
    }

    /// Sends `body` as SCIM JSON to `path`, and returns the status with the body text.
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, String), String> {
        let req = self
            .request(method, path)
            .header("content-type", SCIM_JSON)
            .body(body.to_string());
        send(req).await
    }
}

pub enum Outcome {
    Ok,
    Error(String),
    /// No work left (the `patch group` scenario ran out of non-member users).
    Exhausted,
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    t.replace('\n', " ")
}

/// One request of `scenario` by client number `worker`.
pub async fn one_request(sh: &Shared, scenario: Scenario, worker: usize, rng: &mut Rng) -> Outcome {
    let result = match scenario {
        Scenario::Healthz => healthz_once(sh).await,
        Scenario::Filter => filter_once(sh, rng).await,
        Scenario::Create => create_once(sh).await,
        Scenario::PatchUser => patch_user_once(sh, worker, rng).await,
        Scenario::PatchGroup => {
            let next = sh.created().pop();
            match next {
                None => return Outcome::Exhausted,
                Some(id) => patch_group_once(sh, &id).await,
            }
        }
    };
    match result {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Error(e),
    }
}

/// Sends, and returns the status with the body text (or a transport error).
async fn send(req: RequestBuilder) -> Result<(StatusCode, String), String> {
    let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading body: {e}"))?;
    Ok((status, text))
}

fn expect_status(
    status: StatusCode,
    text: &str,
    ok: impl Fn(StatusCode) -> bool,
) -> Result<(), String> {
    if ok(status) {
        Ok(())
    } else {
        Err(format!("HTTP {}: {}", status.as_u16(), snippet(text)))
    }
}

async fn healthz_once(sh: &Shared) -> Result<(), String> {
    let (status, text) = send(sh.client.get(&sh.healthz)).await?;
    expect_status(status, &text, |s| s.is_success())
}

async fn filter_once(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let name = user_name(rng.below(sh.user_ids.len()));
    let query = serde_urlencoded::to_string([("filter", format!("userName eq \"{name}\""))])
        .map_err(|e| format!("encoding the filter: {e}"))?;
    let (status, text) = send(sh.request(Method::GET, &format!("/Users?{query}"))).await?;
    expect_status(status, &text, |s| s.is_success())?;
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("200 with a non-JSON body: {e}"))?;
    let total = body["totalResults"].as_i64();
    let found = body["Resources"].as_array().map(|r| {
        r.iter()
            .filter_map(|u| u["userName"].as_str())
            .collect::<Vec<_>>()
    });
    match (total, found) {
        (Some(1), Some(names)) if names == [name.as_str()] => Ok(()),
        _ => Err(format!(
            "filter for {name} did not return exactly that user: {}",
            snippet(&text)
        )),
    }
}

async fn create_once(sh: &Shared) -> Result<(), String> {
    let n = sh.seq.fetch_add(1, Ordering::Relaxed);
    let body = user_body(
        &format!("new-{}-{n}@bench.example.com", sh.run_tag),
        &format!("new-{}-{n}", sh.run_tag),
        &format!("New User {n}"),
        &format!("New{n}"),
    );
    let (status, text) = sh.send_json(Method::POST, "/Users", &body).await?;
    expect_status(status, &text, |s| s == StatusCode::CREATED)?;
    let created: Value =
        serde_json::from_str(&text).map_err(|e| format!("201 with a non-JSON body: {e}"))?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| format!("201 without an id: {}", snippet(&text)))?;
    sh.created().push(id.to_owned());
    Ok(())
}

async fn patch_user_once(sh: &Shared, worker: usize, rng: &mut Rng) -> Result<(), String> {
    // Worker w patches only users w, w + c, w + 2c, ... so no two clients race on one user.
    let slice = sh.user_ids.len() / sh.concurrency;
    let id = &sh.user_ids[rng.below(slice) * sh.concurrency + worker];
    let n = sh.seq.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "schemas": [PATCH_OP_URN],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": format!("Patched{n}")}],
    });
    let (status, text) = sh
        .send_json(Method::PATCH, &format!("/Users/{id}"), &body)
        .await?;
    expect_status(status, &text, |s| s.is_success())
}

async fn patch_group_once(sh: &Shared, member: &str) -> Result<(), String> {
    let body = json!({
        "schemas": [PATCH_OP_URN],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}],
    });
    let path = format!("/Groups/{}", sh.group_id);
    let (status, text) = sh.send_json(Method::PATCH, &path, &body).await?;
    expect_status(status, &text, |s| s.is_success())?;
    sh.members_added.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
