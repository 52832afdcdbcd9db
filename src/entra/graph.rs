//! The Graph reader: everything the pull sync asks Microsoft Graph, through `graph-rs-sdk`.
//!
//! - **Tokens.** graph-rs-sdk's own login only talks to Microsoft's hosts, so the client gets our
//!   [`TokenSource`] through its `ClientApplication` trait ([`SdkToken`]). Each request first
//!   asks the token source itself, so AADSTS errors surface with their fix; a 401 from Graph
//!   refreshes the token once and repeats the request.
//! - **Hosts.** A cloud's own Graph root goes through `use_endpoint` (graph-rs-sdk checks it is a
//!   Microsoft host); an explicit `--graph-url` (proxy, simulator) through `use_test_endpoint`
//!   (cargo feature `test-util`) with `https_only(false)`.
//! - **One pager, every page checked.** graph-rs-sdk's paging does not retry a throttled page
//!   and hands a 429 back as data, so [`GraphReader`] walks `@odata.nextLink` itself: every page
//!   is a request through [`retry::run`] (429/503/504 honour `Retry-After`, a bounded budget per
//!   cycle); a page without `value`, a `nextLink` to another host, a `nextLink` (or skip token)
//!   seen before in the same listing, a page past `sync.max_pages`, more users than
//!   `sync.max_users` or a request that failed after its retries is an error — never a shorter
//!   list, and never an endless one.
//! - **Scope, fetched in bulk.** `appRoleAssignedTo` (`$top=999`, every page); users assigned
//!   directly through `POST /directoryObjects/getByIds` (1,000 ids per request, `$select`);
//!   users assigned through a group from the group's members cast to users (`$select`,
//!   `$top=999`; `transitiveMembers` when the integration is `transitive`). Groups and id chunks
//!   are read a few at a time. The result is a [`Snapshot`], built only after the last page.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use graph_core::identity::{ClientApplication, ForceTokenRefresh};
use graph_http::api_impl::RequestHandler;
use graph_rs_sdk::error::{AuthExecutionError, AuthExecutionResult, AuthorizationFailure};
use graph_rs_sdk::http::{Method, Url};
use graph_rs_sdk::{GraphClient, GraphClientConfiguration, GraphFailure, ODataQuery};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::auth::{AuthError, TokenSource};
use super::cloud::Endpoints;
use super::delta::Assigned;
use super::dto;
use super::read_error::short_failure;
pub use super::read_error::{CallError, ReadError};
use super::retry::{self, RetryBudget, RetryError, RetryPolicy, Verdict};
use crate::domain::EntraObjectId;
use crate::domain::entra::Snapshot;
use crate::domain::entra::{Assignment, EntraUser};

/// The user properties every read selects.
pub const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "givenName",
    "surname",
    "displayName",
    "mailNickname",
    "accountEnabled",
];

/// Graph's page size limit for these collections.
pub const PAGE_SIZE: u32 = 999;
/// `getByIds` takes at most 1,000 ids.
pub const GET_BY_IDS_MAX: usize = 1_000;

/// How one integration reads Graph.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub endpoints: Endpoints,
    /// `--graph-url` was given: a proxy or simulator, not a Microsoft host.
    pub custom_graph_url: bool,
    pub service_principal_id: String,
    /// Also read members of groups nested in assigned groups.
    pub transitive: bool,
    /// A listing longer than this many pages is an error (never a silent cut).
    pub max_pages: u32,
    /// More users than this in one listing, or in the whole scope, is an error.
    pub max_users: usize,
    /// Requests in flight at once (groups and id chunks).
    pub concurrency: usize,
    pub timeout: Duration,
    pub policy: RetryPolicy,
}

impl ReaderConfig {
    pub fn new(endpoints: Endpoints, service_principal_id: &str, custom_graph_url: bool) -> Self {
        Self {
            endpoints,
            custom_graph_url,
            service_principal_id: service_principal_id.to_owned(),
            transitive: false,
            max_pages: 10_000,
            max_users: 1_000_000,
            concurrency: 4,
            timeout: Duration::from_secs(60),
            policy: RetryPolicy::default(),
        }
    }
}

/// Counters of one reader (one cycle).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// HTTP requests sent to Graph, retries included.
    pub requests: u64,
    /// Of which answered 429.
    pub throttled: u64,
    pub retries: u64,
    pub token_requests: u64,
}

/// What one complete read of the application's scope found.
#[derive(Debug, Clone)]
pub struct ScopeRead {
    pub snapshot: Snapshot,
    pub assignments: usize,
    pub direct_users: usize,
    pub groups: usize,
}

/// One user, with what decides its scope (for on-demand provisioning).
#[derive(Debug, Clone)]
pub struct UserRead {
    pub user: EntraUser,
    /// Every group the user belongs to that is assigned to the application (empty when only
    /// assigned directly or not at all).
    pub groups: Vec<(EntraObjectId, Option<String>)>,
    pub assigned_directly: bool,
}

type UsersFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<EntraUser>, ReadError>> + Send + 'a>,
>;

/// graph-rs-sdk's view of our token source.
#[derive(Clone)]
struct SdkToken(Arc<TokenSource>);

#[async_trait]
impl ClientApplication for SdkToken {
    fn get_token_silent(&mut self) -> AuthExecutionResult<String> {
        Err(AuthExecutionError::Authorization(
            AuthorizationFailure::msg_err("token", "essentry-sync only uses the async client"),
        ))
    }

    async fn get_token_silent_async(&mut self) -> AuthExecutionResult<String> {
        match self.0.token().await {
            Ok(token) => Ok(token.expose().to_owned()),
            Err(e) => Err(AuthExecutionError::Authorization(
                AuthorizationFailure::msg_err("token", e.to_string().as_str()),
            )),
        }
    }

    /// The reader refreshes through [`TokenSource::refresh`] on a 401, before the retried
    /// request asks for a token again, so there is nothing to force here.
    fn with_force_token_refresh(&mut self, _force: ForceTokenRefresh) {}
}

struct Inner {
    client: GraphClient,
    tokens: Arc<TokenSource>,
    /// Scheme, host and port every `nextLink` must keep (a bearer token never leaves Graph).
    origin: String,
    config: ReaderConfig,
    budget: RetryBudget,
    requests: AtomicU64,
    throttled: AtomicU64,
}

/// Reads one integration's scope. Cheap to clone; create one per cycle (the retry budget is
/// per cycle).
#[derive(Clone)]
pub struct GraphReader(Arc<Inner>);

impl GraphReader {
    pub fn new(
        config: ReaderConfig,
        tokens: Arc<TokenSource>,
        budget: RetryBudget,
    ) -> Result<Self, ReadError> {
        let url = Url::parse(&config.endpoints.graph_v1)
            .map_err(|e| ReadError::BadUrl(format!("{}: {e}", config.endpoints.graph_v1)))?;
        if url.query().is_some() || url.host_str().is_none() {
            return Err(ReadError::BadUrl(format!(
                "{} must be a scheme, host and path only",
                config.endpoints.graph_v1
            )));
        }
        let mut builder = GraphClientConfiguration::new()
            .client_application(SdkToken(tokens.clone()))
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10));
        if config.custom_graph_url {
            builder = builder.https_only(false);
        }
        let mut client = GraphClient::from(builder);
        if config.custom_graph_url {
            client.use_test_endpoint(&url);
        } else {
            let host = url.host_str().unwrap_or_default();
            if !MICROSOFT_GRAPH_HOSTS.contains(&host) || url.scheme() != "https" {
                return Err(ReadError::BadUrl(format!(
                    "{host} is not a Microsoft Graph host; give it as --graph-url"
                )));
            }
            client.use_endpoint(&url);
        }
        Ok(Self(Arc::new(Inner {
            client,
            tokens,
            origin: url.origin().ascii_serialization(),
            config,
            budget,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })))
    }

    pub(super) fn config(&self) -> &ReaderConfig {
        &self.0.config
    }

    pub fn stats(&self) -> ReadStats {
        ReadStats {
            requests: self.0.requests.load(Ordering::Relaxed),
            throttled: self.0.throttled.load(Ordering::Relaxed),
            retries: u64::from(self.0.budget.retries()),
            token_requests: self.0.tokens.token_requests(),
        }
    }

    /// Checks that the credentials work (the "connection" step of on-demand provisioning).
    pub async fn check_connection(&self) -> Result<(), ReadError> {
        self.token().await
    }

    /// A token, retrying what is transient at the token endpoint (Entra's
    /// `temporarily_unavailable`, a connection error) with the same policy and budget as Graph.
    async fn token(&self) -> Result<(), ReadError> {
        let result = retry::run(&self.0.config.policy, &self.0.budget, |_| async {
            match self.0.tokens.token().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let transient = match &e {
                        AuthError::Transport(_) => true,
                        AuthError::Rejected { error, code, .. } => {
                            error == "temporarily_unavailable" || code == "AADSTS90033"
                        }
                        _ => false,
                    };
                    let verdict = if transient {
                        Verdict::transient()
                    } else {
                        Verdict::Fail
                    };
                    Err((verdict, e))
                }
            }
        })
        .await;
        result.map_err(|e| ReadError::Auth(e.into_inner()))
    }

    /// Reads everything in the application's scope. Only a complete read returns.
    pub async fn read_scope(&self) -> Result<ScopeRead, ReadError> {
        let assigned = self.read_assignments().await?;
        self.read_scope_of(&assigned).await
    }

    /// Reads the users `assigned` puts in scope (directly, and as members of the groups).
    pub async fn read_scope_of(&self, assigned: &Assigned) -> Result<ScopeRead, ReadError> {
        let direct = &assigned.direct;
        let groups = &assigned.groups;
        let concurrency = self.0.config.concurrency.max(1);
        // Boxed with an explicit `Send` bound: spawned cycles need the future to be `Send`,
        // which the compiler cannot prove through the closures of a lazily mapped iterator.
        let mut reads: Vec<UsersFuture<'_>> = Vec::new();
        for chunk in direct.chunks(GET_BY_IDS_MAX) {
            reads.push(Box::pin(self.users_by_ids(chunk.to_vec())));
        }
        for (id, name) in groups {
            reads.push(Box::pin(self.group_users(id.clone(), name.clone())));
        }
        let read: Vec<Vec<EntraUser>> = stream::iter(reads)
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let direct_count = direct.len();
        // Sized up front: collected by doubling, 100,000 users would be copied and briefly held
        // twice (the read's peak memory).
        let mut users: Vec<EntraUser> = Vec::with_capacity(read.iter().map(Vec::len).sum());
        for part in read {
            users.extend(part);
        }
        // A user in several groups counts once (the snapshot keeps each once).
        let snapshot = Snapshot::complete(users);
        if snapshot.len() > self.0.config.max_users {
            return Err(ReadError::UserCap {
                what: "the application's scope".to_owned(),
                cap: self.0.config.max_users,
            });
        }
        Ok(ScopeRead {
            snapshot,
            assignments: assigned.rows,
            direct_users: direct_count,
            groups: groups.len(),
        })
    }

    /// Reads one user by object id or userPrincipalName, with what puts it in scope.
    pub async fn read_user(&self, key: &str) -> Result<UserRead, ReadError> {
        let key = key.trim().to_owned();
        let what = format!("user {key}");
        let user: dto::User = match self
            .send_json(&what, || {
                self.0.client.user(&key).get_user().select(USER_SELECT)
            })
            .await
        {
            Err(ReadError::Graph { status: 404, .. }) => {
                return Err(ReadError::NotFound(format!(
                    "no user {key} in the tenant (object id or userPrincipalName)"
                )));
            }
            other => other?,
        };
        let assignments = self.assignments().await?;
        let assigned_directly = assignments.iter().any(|a| {
            a.principal_type.as_deref() == Some("User")
                && a.principal_id.eq_ignore_ascii_case(&user.id)
        });
        let assigned_groups: HashMap<String, Option<String>> = assignments
            .iter()
            .filter(|a| a.principal_type.as_deref() == Some("Group"))
            .map(|a| {
                (
                    a.principal_id.to_ascii_lowercase(),
                    a.principal_display_name.clone(),
                )
            })
            .collect();
        let relation = if self.0.config.transitive {
            "transitiveMemberOf"
        } else {
            "memberOf"
        };
        let member_of: Vec<dto::Group> = if assigned_groups.is_empty() {
            Vec::new()
        } else {
            let uid = user.id.clone();
            self.collect_pages(&format!("groups of user {key}"), || {
                self.0
                    .client
                    .custom(Method::GET, None)
                    .extend_path(&["users", uid.as_str(), relation, "microsoft.graph.group"])
                    .select(&["id", "displayName"])
                    .top(PAGE_SIZE.to_string())
            })
            .await?
        };
        let groups: Vec<(EntraObjectId, Option<String>)> = member_of
            .into_iter()
            .filter_map(|g| {
                let name = assigned_groups.get(&g.id.to_ascii_lowercase())?;
                let id = EntraObjectId::parse(&g.id).ok()?;
                Some((id, g.display_name.or_else(|| name.clone())))
            })
            .collect();
        let mut assigned_via: Vec<Assignment> = Vec::new();
        if assigned_directly {
            assigned_via.push(Assignment::Direct);
        }
        for (id, name) in &groups {
            assigned_via.push(Assignment::Group {
                group_id: id.clone(),
                group_name: name.clone(),
            });
        }
        let user = entra_user(user, assigned_via).ok_or_else(|| ReadError::BadPage {
            what,
            page: 1,
            reason: "the user's id is not a GUID".to_owned(),
        })?;
        Ok(UserRead {
            user,
            groups,
            assigned_directly,
        })
    }

    /// Which of `ids` are users that still exist in the tenant (`directoryObjects/getByIds`,
    /// 1,000 at a time): ids of deleted accounts are simply not returned.
    pub async fn existing_users(&self, ids: &[String]) -> Result<HashSet<String>, ReadError> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(GET_BY_IDS_MAX) {
            for u in self.users_by_ids(chunk.to_vec()).await? {
                out.insert(u.object_id.as_str().to_owned());
            }
        }
        Ok(out)
    }

    pub(super) async fn assignments(&self) -> Result<Vec<dto::AppRoleAssignment>, ReadError> {
        let sp = self.0.config.service_principal_id.clone();
        self.collect_pages("the application's assignments (appRoleAssignedTo)", || {
            self.0
                .client
                .service_principal(&sp)
                .list_app_role_assigned_to()
                .select(&["id", "principalId", "principalType", "principalDisplayName"])
                .top(PAGE_SIZE.to_string())
        })
        .await
    }

    pub(super) async fn users_by_ids(&self, ids: Vec<String>) -> Result<Vec<EntraUser>, ReadError> {
        let body = json!({ "ids": ids, "types": ["user"] });
        let what = format!("{} directly assigned users (getByIds)", ids.len());
        let page: dto::Page<dto::User> = self
            .send_json(&what, || {
                self.0
                    .client
                    .directory_objects()
                    .get_by_ids(&body)
                    .select(USER_SELECT)
            })
            .await?;
        let users = page.value.ok_or_else(|| ReadError::BadPage {
            what: what.clone(),
            page: 1,
            reason: "no `value`".to_owned(),
        })?;
        Ok(users
            .into_iter()
            .filter(|u| {
                u.odata_type
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
            })
            .filter_map(|u| entra_user(u, vec![Assignment::Direct]))
            .collect())
    }

    pub(super) async fn group_users(
        &self,
        group: String,
        name: Option<String>,
    ) -> Result<Vec<EntraUser>, ReadError> {
        let Ok(group_id) = EntraObjectId::parse(&group) else {
            return Err(ReadError::BadPage {
                what: "the application's assignments".to_owned(),
                page: 1,
                reason: format!("group id {group:?} is not a GUID"),
            });
        };
        let what = format!(
            "members of group {}",
            name.as_deref().unwrap_or(group.as_str())
        );
        let transitive = self.0.config.transitive;
        let members: Vec<dto::User> = self
            .collect_pages(&what, || {
                let g = self.0.client.group(&group);
                if transitive {
                    g.transitive_members()
                        .get_directory_object_items_as_user_type()
                        .select(USER_SELECT)
                        .top(PAGE_SIZE.to_string())
                } else {
                    g.get_directory_object_items_as_user_type()
                        .select(USER_SELECT)
                        .top(PAGE_SIZE.to_string())
                }
            })
            .await?;
        let via = Assignment::Group {
            group_id,
            group_name: name,
        };
        Ok(members
            .into_iter()
            .filter_map(|u| entra_user(u, vec![via.clone()]))
            .collect())
    }

    /// Every page of a collection, starting with the request `first` builds.
    async fn collect_pages<T, F>(&self, what: &str, first: F) -> Result<Vec<T>, ReadError>
    where
        T: DeserializeOwned,
        F: Fn() -> RequestHandler,
    {
        Ok(self.walk_pages(what, first, false).await?.0)
    }

    /// Every page of a listing, each checked (see the module documentation). A delta listing
    /// (`delta`) must end with an `@odata.deltaLink`, returned with the items; a page with
    /// neither link is a broken listing.
    pub(super) async fn walk_pages<T, F>(
        &self,
        what: &str,
        first: F,
        delta: bool,
    ) -> Result<(Vec<T>, Option<String>), ReadError>
    where
        T: DeserializeOwned,
        F: Fn() -> RequestHandler,
    {
        let mut out: Vec<T> = Vec::new();
        let mut page: dto::Page<T> = self.send_json(what, &first).await?;
        let mut number = 1u32;
        // Every nextLink and skip token of this listing: one seen twice is a loop.
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let Some(items) = page.value else {
                return Err(ReadError::BadPage {
                    what: what.to_owned(),
                    page: number,
                    reason: "no `value`".to_owned(),
                });
            };
            out.extend(items);
            if out.len() > self.0.config.max_users {
                return Err(ReadError::UserCap {
                    what: what.to_owned(),
                    cap: self.0.config.max_users,
                });
            }
            let Some(next) = page.next_link else {
                return match (delta, page.delta_link) {
                    (false, _) => Ok((out, None)),
                    (true, Some(link)) => {
                        self.next_link(what, number + 1, &link)?;
                        Ok((out, Some(link)))
                    }
                    (true, None) => Err(ReadError::BadPage {
                        what: what.to_owned(),
                        page: number,
                        reason: "neither @odata.nextLink nor @odata.deltaLink".to_owned(),
                    }),
                };
            };
            number += 1;
            if number > self.0.config.max_pages {
                return Err(ReadError::PageCap {
                    what: what.to_owned(),
                    cap: self.0.config.max_pages,
                });
            }
            let next = self.next_link(what, number, &next)?;
            for key in page_keys(&next) {
                if !seen.insert(key.clone()) {
                    return Err(ReadError::RepeatedPage {
                        what: what.to_owned(),
                        page: number - 1,
                        token: shorten(&key),
                    });
                }
            }
            page = self.send_json(what, || self.get_url(&next)).await?;
        }
    }

    /// A GET of an absolute URL (a `nextLink`, a stored `deltaLink`).
    pub(super) fn get_url(&self, url: &Url) -> RequestHandler {
        let mut h = self.0.client.custom(Method::GET, None);
        *AsMut::<Url>::as_mut(&mut h) = url.clone();
        h
    }

    /// A `nextLink` must be an absolute URL on the Graph host we talk to.
    pub(super) fn next_link(&self, what: &str, page: u32, link: &str) -> Result<Url, ReadError> {
        let bad = |reason: String| ReadError::BadPage {
            what: what.to_owned(),
            page: page - 1,
            reason,
        };
        let url =
            Url::parse(link).map_err(|e| bad(format!("@odata.nextLink is not a URL: {e}")))?;
        if url.origin().ascii_serialization() != self.0.origin {
            return Err(bad(format!(
                "@odata.nextLink points to another host ({})",
                url.host_str().unwrap_or("?")
            )));
        }
        Ok(url)
    }

    /// One request with retries, and one token refresh on a 401.
    pub(super) async fn send_json<T, F>(&self, what: &str, make: F) -> Result<T, ReadError>
    where
        T: DeserializeOwned,
        F: Fn() -> RequestHandler,
    {
        self.token().await?;
        let mut refreshed = false;
        loop {
            let result = retry::run(&self.0.config.policy, &self.0.budget, |_| {
                let handler = make();
                async move { self.attempt::<T>(handler).await }
            })
            .await;
            match result {
                Ok(value) => return Ok(value),
                Err(RetryError::RefreshToken(_)) if !refreshed => {
                    refreshed = true;
                    tracing::info!("Graph rejected the access token (401); requesting a new one");
                    self.0.tokens.refresh().await?;
                }
                Err(RetryError::Fatal(CallError::Status {
                    status,
                    code,
                    message,
                    request_id,
                }))
                | Err(RetryError::RefreshToken(CallError::Status {
                    status,
                    code,
                    message,
                    request_id,
                })) => {
                    return Err(ReadError::Graph {
                        what: what.to_owned(),
                        status,
                        code,
                        message,
                        request_id,
                    });
                }
                Err(RetryError::Fatal(CallError::Transport(message))) => {
                    return Err(ReadError::Transport {
                        what: what.to_owned(),
                        message,
                    });
                }
                Err(e) => {
                    return Err(ReadError::Retry {
                        what: what.to_owned(),
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        handler: RequestHandler,
    ) -> Result<T, (Verdict, CallError)> {
        if let Some(e) = handler.err() {
            return Err((Verdict::Fail, CallError::Client(short_failure(e))));
        }
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        crate::metrics::graph_request();
        let response = handler.send().await.map_err(|e| match &e {
            GraphFailure::ReqwestError(r) if r.is_timeout() || r.is_connect() || r.is_body() => (
                Verdict::transient(),
                CallError::Transport(short_failure(&e)),
            ),
            _ => (Verdict::Fail, CallError::Client(short_failure(&e))),
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let verdict = retry::classify_response(status, retry_after.as_deref(), SystemTime::now());
        if status == 429 {
            self.0.throttled.fetch_add(1, Ordering::Relaxed);
            crate::metrics::graph_throttled();
        }
        let bytes = response.bytes().await.map_err(|e| {
            (
                Verdict::transient(),
                CallError::Transport(e.without_url().to_string()),
            )
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice::<T>(&bytes)
                .map_err(|e| (Verdict::Fail, CallError::Decode(e.to_string())));
        }
        let (code, message, request_id) = match serde_json::from_slice::<dto::ErrorBody>(&bytes) {
            Ok(body) => {
                let request_id = body.error.request_id();
                (
                    body.error.code,
                    body.error.message.unwrap_or_default(),
                    request_id,
                )
            }
            Err(_) => (
                None,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                None,
            ),
        };
        let error = CallError::Status {
            status,
            code,
            message,
            request_id,
        };
        Err((
            match verdict {
                Verdict::Done => Verdict::Fail,
                v => v,
            },
            error,
        ))
    }
}

/// graph-rs-sdk's errors print with `{:#?}`; keep one line, and no URL for transport errors.
/// What identifies the page a `nextLink` asks for: the link itself, and its skip token
/// (`$skiptoken` or `$skip`, any case) when it has one, so that a loop is caught even when the
/// rest of the link changes.
fn page_keys(link: &Url) -> Vec<String> {
    let mut keys = vec![format!("link:{link}")];
    for (k, v) in link.query_pairs() {
        let name = k.trim_start_matches('$');
        if name.eq_ignore_ascii_case("skiptoken") || name.eq_ignore_ascii_case("skip") {
            keys.push(format!("{}:{v}", name.to_ascii_lowercase()));
        }
    }
    keys
}

/// At most 64 characters of a page key, for an error message.
fn shorten(key: &str) -> String {
    match key.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &key[..i]),
        None => key.to_owned(),
    }
}

/// Graph hosts graph-rs-sdk accepts through `use_endpoint`.
const MICROSOFT_GRAPH_HOSTS: &[&str] = &[
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
    "canary.graph.microsoft.com",
];

pub(super) fn entra_user(u: dto::User, assigned_via: Vec<Assignment>) -> Option<EntraUser> {
    let object_id = match EntraObjectId::parse(&u.id) {
        Ok(id) => id,
        Err(_) => {
            tracing::warn!(id = %u.id, "Graph returned a user whose id is not a GUID; ignored");
            return None;
        }
    };
    Some(EntraUser {
        object_id,
        user_principal_name: u.user_principal_name,
        mail: u.mail,
        given_name: u.given_name,
        surname: u.surname,
        display_name: u.display_name,
        mail_nickname: u.mail_nickname,
        account_enabled: u.account_enabled,
        assigned_via,
    })
}
