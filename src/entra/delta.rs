//! Delta reads for incremental cycles: `users/delta` (`$select` of the mapped attributes) and
//! `groups/delta` (`$select=members`, `$filter=id eq '…' or …` over at most
//! [`GROUPS_PER_QUERY`] assigned groups), through the same pager as the full read
//! ([`GraphReader::walk_pages`]: retries and `Retry-After`, every page checked, loops, page cap,
//! foreign hosts) — an incomplete delta read is an error, never a shorter list of changes.
//!
//! - A full read takes its links first, with `$deltatoken=latest` ([`GraphReader::latest_users_link`],
//!   [`GraphReader::latest_groups_link`]): no change can fall between the read and the link, and
//!   a change seen twice is harmless.
//! - Following a stored link returns the changes since and the next link. A stored link must
//!   point at the Graph host the reader talks to. A listing that does not end in an
//!   `@odata.deltaLink` is broken.
//! - Graph answering 410 Gone, or `syncStateNotFound` / `syncStateInvalid` / `resyncRequired`,
//!   is [`ReadError::DeltaRejected`]: the cycle reads everything again with fresh links.

use std::collections::HashSet;

use graph_rs_sdk::http::Url;
use serde::Deserialize;

use super::dto;
use super::graph::{GET_BY_IDS_MAX, GraphReader, ReadError, USER_SELECT, entra_user};
use crate::domain::EntraObjectId;
use crate::domain::entra::{Assignment, EntraUser};

/// Graph accepts at most this many ids in one `groups/delta` `$filter`.
pub const GROUPS_PER_QUERY: usize = 50;

/// The application's assignments (`appRoleAssignedTo`), deduplicated, ids in lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub direct: Vec<String>,
    pub groups: Vec<(String, Option<String>)>,
    /// Assignment rows read (users, groups and other principals).
    pub rows: usize,
}

/// What `users/delta` reported since a link.
#[derive(Debug, Clone, Default)]
pub struct UsersDelta {
    /// Users created or changed (anywhere in the tenant), with the selected attributes and no
    /// assignments.
    pub changed: Vec<EntraUser>,
    /// Users deleted (`@removed`: soft-deleted, `changed`, or permanently, `deleted`).
    pub removed: Vec<EntraObjectId>,
    /// Where the next round continues.
    pub link: String,
}

/// One membership change of `groups/delta`, in the order Graph reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Added {
        group: String,
        user: String,
    },
    Removed {
        group: String,
        user: String,
    },
    /// The group itself was deleted.
    GroupRemoved {
        group: String,
    },
}

/// What one `groups/delta` query reported since its link.
#[derive(Debug, Clone, Default)]
pub struct GroupsDelta {
    pub changes: Vec<MemberChange>,
    pub link: String,
}

/// A user in a `users/delta` page: the selected attributes, or `@removed`.
#[derive(Debug, Deserialize)]
struct DeltaUser {
    #[serde(flatten)]
    user: dto::User,
    #[serde(rename = "@removed")]
    removed: Option<serde_json::Value>,
}

/// A group in a `groups/delta` page.
#[derive(Debug, Deserialize)]
struct DeltaGroup {
    id: String,
    #[serde(rename = "@removed")]
    removed: Option<serde_json::Value>,
    #[serde(rename = "members@delta", default)]
    members: Vec<DeltaMember>,
}

#[derive(Debug, Deserialize)]
struct DeltaMember {
    id: String,
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<serde_json::Value>,
}

/// Graph's answers that mean "this delta link is no longer usable".
fn rejected(e: ReadError) -> ReadError {
    match e {
        ReadError::Graph {
            what, status, code, ..
        } if status == 410
            || code.as_deref().is_some_and(|c| {
                ["syncStateNotFound", "syncStateInvalid", "resyncRequired"]
                    .iter()
                    .any(|k| c.eq_ignore_ascii_case(k))
            }) =>
        {
            ReadError::DeltaRejected {
                what,
                code: code.unwrap_or_else(|| format!("http_{status}")),
            }
        }
        other => other,
    }
}

/// `$filter=id eq '…' or …` over `groups` (GUIDs only; anything else is refused).
fn id_filter(groups: &[String]) -> Result<String, ReadError> {
    let mut parts = Vec::with_capacity(groups.len());
    for g in groups {
        let id = EntraObjectId::parse(g).map_err(|_| ReadError::BadPage {
            what: "the application's assignments".to_owned(),
            page: 1,
            reason: format!("group id {g:?} is not a GUID"),
        })?;
        parts.push(format!("id eq '{}'", id.as_str()));
    }
    Ok(parts.join(" or "))
}

/// Whether a `members@delta` entry is a user (entries without a type are taken as users).
fn is_user(odata_type: Option<&str>) -> bool {
    odata_type.is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
}

/// The changes of `groups/delta` pages, in page order.
fn member_changes(groups: Vec<DeltaGroup>) -> Vec<MemberChange> {
    let mut out = Vec::new();
    for g in groups {
        let group = g.id.to_ascii_lowercase();
        if g.removed.is_some() {
            out.push(MemberChange::GroupRemoved { group });
            continue;
        }
        for m in g.members {
            if !is_user(m.odata_type.as_deref()) {
                continue;
            }
            let user = m.id.to_ascii_lowercase();
            out.push(if m.removed.is_some() {
                MemberChange::Removed {
                    group: group.clone(),
                    user,
                }
            } else {
                MemberChange::Added {
                    group: group.clone(),
                    user,
                }
            });
        }
    }
    out
}

/// Splits `users/delta` items into changed users and removed ids.
fn user_changes(items: Vec<DeltaUser>) -> (Vec<EntraUser>, Vec<EntraObjectId>) {
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    for item in items {
        if item.removed.is_some() {
            if let Ok(id) = EntraObjectId::parse(&item.user.id) {
                removed.push(id);
            }
        } else if let Some(u) = entra_user(item.user, Vec::new()) {
            changed.push(u);
        }
    }
    (changed, removed)
}

impl GraphReader {
    fn collection_url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ReadError> {
        let base = self.config().endpoints.graph_v1.trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}/{path}"))
            .map_err(|e| ReadError::BadUrl(format!("{base}/{path}: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// The link of `users/delta` as of now (`$deltatoken=latest`: no users listed).
    pub async fn latest_users_link(&self) -> Result<String, ReadError> {
        let url = self.collection_url(
            "users/delta",
            &[
                ("$select", USER_SELECT.join(",")),
                ("$deltatoken", "latest".to_owned()),
            ],
        )?;
        self.delta_link_of::<DeltaUser>("users/delta (latest)", url)
            .await
            .map(|(_, link)| link)
    }

    /// The link of `groups/delta` over `groups` (at most [`GROUPS_PER_QUERY`]) as of now.
    pub async fn latest_groups_link(&self, groups: &[String]) -> Result<String, ReadError> {
        let url = self.collection_url(
            "groups/delta",
            &[
                ("$select", "members".to_owned()),
                ("$filter", id_filter(groups)?),
                ("$deltatoken", "latest".to_owned()),
            ],
        )?;
        self.delta_link_of::<DeltaGroup>("groups/delta (latest)", url)
            .await
            .map(|(_, link)| link)
    }

    /// The users changed and removed since `link`, and the next link.
    pub async fn users_delta(&self, link: &str) -> Result<UsersDelta, ReadError> {
        let what = "users/delta";
        let url = self.next_link(what, 1, link)?;
        let (items, link) = self.delta_link_of::<DeltaUser>(what, url).await?;
        let (changed, removed) = user_changes(items);
        Ok(UsersDelta {
            changed,
            removed,
            link,
        })
    }

    /// The membership changes of a `groups/delta` query since `link`, and the next link.
    pub async fn groups_delta(&self, link: &str) -> Result<GroupsDelta, ReadError> {
        let what = "groups/delta";
        let url = self.next_link(what, 1, link)?;
        let (items, link) = self.delta_link_of::<DeltaGroup>(what, url).await?;
        Ok(GroupsDelta {
            changes: member_changes(items),
            link,
        })
    }

    /// Every page of a delta listing starting at `url`, and its final `@odata.deltaLink`.
    async fn delta_link_of<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: Url,
    ) -> Result<(Vec<T>, String), ReadError> {
        let (items, link) = self
            .walk_pages::<T, _>(what, || self.get_url(&url), true)
            .await
            .map_err(rejected)?;
        let link = link.ok_or_else(|| ReadError::BadPage {
            what: what.to_owned(),
            page: 1,
            reason: "no @odata.deltaLink".to_owned(),
        })?;
        Ok((items, link))
    }

    /// The application's assignments, deduplicated (users and groups).
    pub async fn read_assignments(&self) -> Result<Assigned, ReadError> {
        let rows = self.assignments().await?;
        let mut out = Assigned {
            rows: rows.len(),
            ..Assigned::default()
        };
        let (mut seen_u, mut seen_g) = (HashSet::new(), HashSet::new());
        for a in rows {
            let id = a.principal_id.to_ascii_lowercase();
            match a.principal_type.as_deref() {
                Some("User") if seen_u.insert(id.clone()) => out.direct.push(id),
                Some("Group") if seen_g.insert(id.clone()) => {
                    out.groups.push((id, a.principal_display_name));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The users among `ids` that exist, with the selected attributes and no assignments
    /// (`getByIds`, 1,000 at a time).
    pub async fn users_by_object_ids(&self, ids: &[String]) -> Result<Vec<EntraUser>, ReadError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_BY_IDS_MAX) {
            for mut u in self.users_by_ids(chunk.to_vec()).await? {
                u.assigned_via.clear();
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Every member (user) of group `id`, as the full read reads it.
    pub async fn group_members(
        &self,
        id: &str,
        name: Option<String>,
    ) -> Result<Vec<EntraUser>, ReadError> {
        self.group_users(id.to_owned(), name).await
    }
}

/// The assignment a group gives its members.
pub fn via_group(id: &str, name: Option<String>) -> Option<Assignment> {
    EntraObjectId::parse(id)
        .ok()
        .map(|group_id| Assignment::Group {
            group_id,
            group_name: name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_delta_pages_decode_changes_and_removals() {
        let page: dto::Page<DeltaUser> = serde_json::from_str(
            r##"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users",
                "@odata.deltaLink":"https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc",
                "value":[
                  {"id":"6e7b768e-07e2-4810-8459-485f84f8f204","userPrincipalName":"AdeleV@contoso.com",
                   "displayName":"Adele Vance","accountEnabled":false},
                  {"id":"87d349ed-44d7-43e1-9a83-5f2406dee5bd","@removed":{"reason":"changed"}},
                  {"id":"not-a-guid","userPrincipalName":"x@contoso.com"}
                ]}"##,
        )
        .unwrap();
        assert!(page.next_link.is_none());
        assert!(
            page.delta_link
                .as_deref()
                .unwrap()
                .contains("$deltatoken=abc")
        );
        let (changed, removed) = user_changes(page.value.unwrap());
        assert_eq!(changed.len(), 1, "the id that is not a GUID is dropped");
        assert_eq!(changed[0].account_enabled, Some(false));
        assert!(changed[0].assigned_via.is_empty());
        assert_eq!(removed[0].as_str(), "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
    }

    #[test]
    fn groups_delta_pages_decode_member_changes_in_order() {
        let page: dto::Page<DeltaGroup> = serde_json::from_str(
            r##"{"@odata.nextLink":"https://graph.microsoft.com/v1.0/groups/delta?$skiptoken=p2",
                "value":[
                  {"id":"AAAAAAAA-0000-0000-0000-000000000001","displayName":"Sales",
                   "members@delta":[
                     {"@odata.type":"#microsoft.graph.user","id":"BBBBBBBB-0000-0000-0000-000000000001"},
                     {"@odata.type":"#microsoft.graph.user","id":"bbbbbbbb-0000-0000-0000-000000000002","@removed":{"reason":"deleted"}},
                     {"@odata.type":"#microsoft.graph.group","id":"cccccccc-0000-0000-0000-000000000003"}
                   ]},
                  {"id":"aaaaaaaa-0000-0000-0000-000000000002"},
                  {"id":"aaaaaaaa-0000-0000-0000-000000000003","@removed":{"reason":"changed"}}
                ]}"##,
        )
        .unwrap();
        assert!(page.delta_link.is_none());
        let g1 = "aaaaaaaa-0000-0000-0000-000000000001".to_owned();
        assert_eq!(
            member_changes(page.value.unwrap()),
            vec![
                MemberChange::Added {
                    group: g1.clone(),
                    user: "bbbbbbbb-0000-0000-0000-000000000001".to_owned()
                },
                MemberChange::Removed {
                    group: g1,
                    user: "bbbbbbbb-0000-0000-0000-000000000002".to_owned()
                },
                MemberChange::GroupRemoved {
                    group: "aaaaaaaa-0000-0000-0000-000000000003".to_owned()
                },
            ]
        );
        let truncated: dto::Page<DeltaGroup> =
            serde_json::from_str(r#"{"@odata.deltaLink":"x"}"#).unwrap();
        assert!(
            truncated.value.is_none(),
            "a page without value is detected"
        );
    }

    #[test]
    fn rejected_links_are_their_own_error_and_filters_take_guids_only() {
        let graph = |status: u16, code: Option<&str>| ReadError::Graph {
            what: "users/delta".to_owned(),
            status,
            code: code.map(str::to_owned),
            message: String::new(),
            request_id: None,
        };
        for e in [
            graph(410, None),
            graph(400, Some("syncStateNotFound")),
            graph(400, Some("resyncRequired")),
        ] {
            assert_eq!(rejected(e).code(), "delta_rejected");
        }
        assert_eq!(
            rejected(graph(400, Some("BadRequest"))).code(),
            "BadRequest"
        );
        assert_eq!(
            rejected(graph(503, None)).code(),
            "http_503",
            "other failures stay what they are"
        );
        let ids = vec![
            "AAAAAAAA-0000-0000-0000-000000000001".to_owned(),
            "aaaaaaaa-0000-0000-0000-000000000002".to_owned(),
        ];
        assert_eq!(
            id_filter(&ids).unwrap(),
            "id eq 'aaaaaaaa-0000-0000-0000-000000000001' or id eq 'aaaaaaaa-0000-0000-0000-000000000002'"
        );
        assert!(id_filter(&["x' or 1 eq 1".to_owned()]).is_err());
    }
}
