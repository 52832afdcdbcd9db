//! The delta queries, as Microsoft Graph v1.0 serves them:
//!
//! - `GET /users/delta` with `$select` (only selected properties are tracked) and optionally
//!   `$filter=id eq '…' or id eq '…'`. The first round lists every current user; later rounds
//!   list users created or restored since (every selected property), users whose selected
//!   properties changed (`id` and the changed properties only: Graph promises "at least the
//!   properties that have been updated"), and removed users as `{"id", "@removed": {"reason"}}`
//!   with `changed` for a soft delete (recycle bin) and `deleted` for a permanent one.
//! - `GET /groups/delta` with `$select=members,...` and `$filter=id eq '…' or …` (at most 50 ids;
//!   more answer 400). Each group comes with `members@delta`: on the first round its current
//!   members, later only members added (`{"@odata.type", "id"}`) and removed (with
//!   `"@removed": {"reason": "deleted"}`). A large group's members are spread over consecutive
//!   pages, the group's id repeated on each with the next part of `members@delta`. Deleted groups
//!   come as `{"id", "@removed": {"reason": "deleted"}}`.
//!
//! Paging: `Prefer: odata.maxpagesize=N` (1..=999, default 100, echoed in
//! `Preference-Applied`) bounds the objects on a page; for groups each member counts too. Every
//! page but the last carries `@odata.nextLink` (`$skiptoken`), the last `@odata.deltaLink`
//! (`$deltatoken`); the query options live inside the tokens, which are opaque to clients.
//! `$deltatoken=latest` answers an empty `value` and a delta link at the current position. A
//! delta link can be used any number of times (a replay reports the same changes plus newer
//! ones). Tokens from before [`super::Simulator::expire_delta_tokens`] (or the
//! `expire_delta_tokens` fault), or from another simulator, answer `410 Gone` with
//! `syncStateNotFound` (or `resyncRequired`). The page faults (truncated page, broken or looping
//! next link) apply to delta pages; on a last page they replace the delta link.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Shared;
use super::changes::{Change, PropSet, prop_set};
use super::graph::{GROUP_PROPS, USER_DEFAULT, USER_PROPS, group_json, select_suffix, user_json};
use super::odata::{
    GraphError, Query, Reply, RequestCtx, broken_skiptoken, expired_page_token, project,
};
use super::state::{SimGroup, SimUser, Tenant};

/// Objects per delta page without `Prefer: odata.maxpagesize`.
pub(super) const DEFAULT_PAGE: usize = 100;
/// The largest page a client may ask for.
pub(super) const MAX_PAGE: usize = 999;
/// Most ids one `$filter=id eq … or …` may name.
pub(super) const MAX_FILTER_IDS: usize = 50;
/// Marks our tokens (the rest is base64url JSON only this module reads).
const TOKEN_PREFIX: &str = "c2ltZGx0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Resource {
    #[serde(rename = "u")]
    Users,
    #[serde(rename = "g")]
    Groups,
}

impl Resource {
    fn path(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
        }
    }
}

/// Where a page starts: the first object whose ordinal is at least `o`; for groups, when `m`
/// is set, the group with ordinal `o` continues after member `m` (members are sorted by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    o: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
}

impl Cursor {
    fn start() -> Self {
        Self { o: 0, m: None }
    }
}

/// What a token stands for: a round of a delta query, and (skip tokens) where its next page
/// starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    r: Resource,
    /// The simulator instance that issued it.
    i: u64,
    /// The delta epoch it was issued in.
    e: u64,
    /// Report changes after this change-log position; `None`: the first round (everything).
    s: Option<u64>,
    /// The change-log position when the round started: the next round's `s`.
    u: u64,
    /// Skip tokens: the next page. Delta tokens have none.
    c: Option<Cursor>,
    sel: Option<Vec<String>>,
    ids: Option<Vec<String>>,
}

fn encode(state: &State) -> String {
    let json = serde_json::to_vec(state).unwrap_or_default();
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}

fn decode(token: &str) -> Option<State> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.strip_prefix(TOKEN_PREFIX)?)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Parses `id eq '…' or id eq '…'` (at most [`MAX_FILTER_IDS`] ids).
fn parse_id_filter(filter: &str) -> Result<Vec<String>, GraphError> {
    let invalid = || GraphError::unsupported_query(format!("Invalid filter clause: '{filter}'."));
    let words: Vec<&str> = filter.split_whitespace().collect();
    let mut ids = Vec::new();
    for (i, clause) in words.split(|w| w.eq_ignore_ascii_case("or")).enumerate() {
        let [prop, op, value] = clause else {
            return Err(invalid());
        };
        if !prop.eq_ignore_ascii_case("id") || !op.eq_ignore_ascii_case("eq") {
            return Err(GraphError::unsupported_query(format!(
                "Unsupported query: delta supports only 'id eq' clauses joined by 'or' in $filter (clause {}).",
                i + 1
            )));
        }
        let id = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(invalid)?;
        ids.push(id.replace("''", "'"));
    }
    if ids.len() > MAX_FILTER_IDS {
        return Err(GraphError::unsupported_query(format!(
            "Too many id clauses in $filter: {}. A delta query may filter on at most {MAX_FILTER_IDS} ids.",
            ids.len()
        )));
    }
    Ok(ids)
}

/// What a request asks for.
enum Resolved {
    /// `$deltatoken=latest`: no objects, a delta link at this state.
    Latest(State),
    /// A page of the round `state`, from `cursor`.
    Page { state: State, cursor: Cursor },
}

fn resolve(
    shared: &Shared,
    q: &Query,
    resource: Resource,
    known: &[&'static str],
    type_name: &str,
) -> Result<Resolved, GraphError> {
    let epoch = shared.delta_epoch();
    let expiry = shared.faults().delta_expiry;
    let check = |st: &State| {
        if st.i != shared.instance || st.e != epoch {
            Err(GraphError::new(
                StatusCode::GONE,
                expiry.code(),
                "The delta token has expired or is no longer valid. Start again with a fresh delta request (a full synchronization).",
            ))
        } else {
            Ok(())
        }
    };
    let position = || shared.tenant().log.position();
    if let Some(token) = &q.skiptoken {
        let st = decode(token)
            .filter(|st| st.r == resource)
            .ok_or_else(expired_page_token)?;
        let cursor = st.c.clone().ok_or_else(expired_page_token)?;
        check(&st)?;
        return Ok(Resolved::Page { state: st, cursor });
    }
    let fresh = |s: Option<u64>, u: u64| -> Result<State, GraphError> {
        let sel = q
            .selected(known, type_name)?
            .map(|v| v.into_iter().map(str::to_owned).collect());
        let ids = q.filter.as_deref().map(parse_id_filter).transpose()?;
        Ok(State {
            r: resource,
            i: shared.instance,
            e: epoch,
            s,
            u,
            c: None,
            sel,
            ids,
        })
    };
    match q.deltatoken.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("latest") => {
            let at = position();
            Ok(Resolved::Latest(fresh(Some(at), at)?))
        }
        Some(t) => {
            let st = decode(t)
                .filter(|st| st.r == resource && st.c.is_none())
                .ok_or_else(|| GraphError::bad_request("The delta token is not valid."))?;
            check(&st)?;
            let state = State {
                u: position(),
                ..st
            };
            Ok(Resolved::Page {
                state,
                cursor: Cursor::start(),
            })
        }
        None => {
            let at = position();
            Ok(Resolved::Page {
                state: fresh(None, at)?,
                cursor: Cursor::start(),
            })
        }
    }
}

fn page_size(ctx: &RequestCtx) -> usize {
    ctx.max_page_size
        .map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE))
}

/// The reply for one delta page (or the `latest` answer), with any page fault that is due.
fn finish(
    shared: &Shared,
    ctx: &RequestCtx,
    round: &State,
    requested: &Cursor,
    items: Vec<Value>,
    next: Option<Cursor>,
) -> Reply {
    let graph = shared.graph_url();
    let path = round.r.path();
    let select: Option<Vec<&str>> = round
        .sel
        .as_ref()
        .map(|s| s.iter().map(String::as_str).collect());
    let mut body = Map::new();
    body.insert(
        "@odata.context".to_owned(),
        Value::String(format!(
            "{graph}/$metadata#{path}{}",
            select_suffix(&select)
        )),
    );
    let faults = shared.faults().take_page_faults();
    if !faults.truncate {
        let skip = |c: Cursor| {
            let token = encode(&State {
                c: Some(c),
                ..round.clone()
            });
            format!("{graph}/{path}/delta?$skiptoken={token}")
        };
        let (name, link) = if faults.loop_link {
            ("@odata.nextLink", skip(requested.clone()))
        } else if faults.break_link {
            (
                "@odata.nextLink",
                format!("{graph}/{path}/delta?$skiptoken={}", broken_skiptoken()),
            )
        } else if let Some(c) = next {
            ("@odata.nextLink", skip(c))
        } else {
            let token = encode(&State {
                s: Some(round.u),
                c: None,
                ..round.clone()
            });
            (
                "@odata.deltaLink",
                format!("{graph}/{path}/delta?$deltatoken={token}"),
            )
        };
        body.insert(name.to_owned(), Value::String(link));
        body.insert("value".to_owned(), Value::Array(items));
    }
    let mut reply = Reply::ok(Value::Object(body));
    if ctx.max_page_size.is_some() {
        reply.headers.push((
            "Preference-Applied",
            format!("odata.maxpagesize={}", page_size(ctx)),
        ));
    }
    reply
}

fn removed(id: &str, reason: &str) -> Value {
    json!({"id": id, "@removed": {"reason": reason}})
}

/// `GET /users/delta`.
pub(super) fn users_delta(
    shared: &Shared,
    ctx: &RequestCtx,
    q: &Query,
) -> Result<Reply, GraphError> {
    let (round, cursor) = match resolve(shared, q, Resource::Users, USER_PROPS, "user")? {
        Resolved::Latest(st) => {
            return Ok(finish(shared, ctx, &st, &Cursor::start(), vec![], None));
        }
        Resolved::Page { state, cursor } => (state, cursor),
    };
    let (items, next) = users_page(&shared.tenant(), &round, &cursor, page_size(ctx));
    Ok(finish(shared, ctx, &round, &cursor, items, next))
}

/// What happened to one user in the changes of a round.
#[derive(Default, Clone, Copy)]
struct UserSeen {
    created: bool,
    props: PropSet,
}

fn users_page(
    t: &Tenant,
    round: &State,
    cursor: &Cursor,
    size: usize,
) -> (Vec<Value>, Option<Cursor>) {
    let select: Vec<&str> = match &round.sel {
        Some(s) => s.iter().map(String::as_str).collect(),
        None => USER_DEFAULT.to_vec(),
    };
    // Only selected properties are tracked; without $select, all are.
    let tracked: PropSet = match &round.sel {
        Some(s) => prop_set(s.iter().map(String::as_str)),
        None => PropSet::MAX,
    };
    let wanted: Option<HashSet<&str>> = round
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(String::as_str).collect());
    let wanted = |id: &str| wanted.as_ref().is_none_or(|w| w.contains(id));
    let full = |u: &SimUser| {
        let mut m = project(&user_json(u), &select);
        m.remove("@odata.type");
        Value::Object(m)
    };
    let mut items = Vec::new();
    let Some(since) = round.s else {
        let mut users = t.users_from(cursor.o).filter(|(_, u)| wanted(&u.id));
        for (_, u) in users.by_ref().take(size) {
            items.push(full(u));
        }
        let next = users.next().map(|(o, _)| Cursor { o, m: None });
        return (items, next);
    };
    let mut seen: HashMap<&str, UserSeen> = HashMap::new();
    for change in t.log.since(since) {
        match change {
            Change::UserCreated(id) | Change::UserRestored(id) => {
                seen.entry(id).or_default().created = true;
            }
            Change::UserUpdated { id, props } => seen.entry(id).or_default().props |= props,
            Change::UserSoftDeleted(id) | Change::UserPurged(id) => {
                seen.entry(id).or_default();
            }
            _ => {}
        }
    }
    let mut changed: Vec<(u64, &str, UserSeen)> = seen
        .into_iter()
        .filter(|(id, _)| wanted(id))
        .filter_map(|(id, s)| Some((t.ordinal(id)?, id, s)))
        .filter(|(o, _, _)| *o >= cursor.o)
        .collect();
    changed.sort_unstable_by_key(|(o, _, _)| *o);
    let mut rest = changed.into_iter().peekable();
    while items.len() < size {
        let Some((_, id, seen)) = rest.next() else {
            break;
        };
        let item = match t.user(id) {
            Some(u) if seen.created => Some(full(u)),
            Some(u) => {
                let props = seen.props & tracked;
                (props != 0).then(|| {
                    let names: Vec<&str> = USER_PROPS
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| props & (1 << i) != 0)
                        .map(|(_, p)| *p)
                        .collect();
                    let mut m = project(&user_json(u), &names);
                    m.remove("@odata.type");
                    Value::Object(m)
                })
            }
            None if t.is_soft_deleted(id) => Some(removed(id, "changed")),
            None => Some(removed(id, "deleted")),
        };
        items.extend(item);
    }
    let next = rest.peek().map(|(o, _, _)| Cursor { o: *o, m: None });
    (items, next)
}

/// `GET /groups/delta`.
pub(super) fn groups_delta(
    shared: &Shared,
    ctx: &RequestCtx,
    q: &Query,
) -> Result<Reply, GraphError> {
    let mut known = GROUP_PROPS.to_vec();
    known.push("members");
    let (round, cursor) = match resolve(shared, q, Resource::Groups, &known, "group")? {
        Resolved::Latest(st) => {
            return Ok(finish(shared, ctx, &st, &Cursor::start(), vec![], None));
        }
        Resolved::Page { state, cursor } => (state, cursor),
    };
    let (items, next) = groups_page(&shared.tenant(), &round, &cursor, page_size(ctx));
    Ok(finish(shared, ctx, &round, &cursor, items, next))
}

/// One member in `members@delta`.
struct MemberDelta {
    id: String,
    is_group: bool,
    removed: bool,
}

impl MemberDelta {
    fn to_json(&self) -> Value {
        let kind = if self.is_group {
            "#microsoft.graph.group"
        } else {
            "#microsoft.graph.user"
        };
        let mut m = json!({"@odata.type": kind, "id": self.id});
        if self.removed {
            m["@removed"] = json!({"reason": "deleted"});
        }
        m
    }
}

/// One group of a round: its own entry and the (id-sorted) members to report.
struct GroupItem {
    ordinal: u64,
    head: Map<String, Value>,
    /// `None` for a deleted group or when `members` is not selected.
    members: Option<Vec<MemberDelta>>,
}

/// What happened to one group in the changes of a round.
#[derive(Default)]
struct GroupSeen<'a> {
    created: bool,
    renamed: bool,
    members: BTreeMap<&'a str, (bool, bool)>,
}

fn groups_page(
    t: &Tenant,
    round: &State,
    cursor: &Cursor,
    size: usize,
) -> (Vec<Value>, Option<Cursor>) {
    let with_members = round
        .sel
        .as_ref()
        .is_some_and(|s| s.iter().any(|p| p == "members"));
    let props: Vec<&str> = match &round.sel {
        Some(s) => s
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "members")
            .collect(),
        None => GROUP_PROPS.to_vec(),
    };
    let head = |g: &SimGroup, props: &[&str]| {
        let mut m = project(&group_json(g), props);
        m.remove("@odata.type");
        m
    };
    let wanted: Option<HashSet<&str>> = round
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(String::as_str).collect());
    let wanted = |id: &str| wanted.as_ref().is_none_or(|w| w.contains(id));
    let Some(since) = round.s else {
        let mut groups: Vec<(u64, &SimGroup)> = t
            .groups()
            .filter(|g| wanted(&g.id))
            .filter_map(|g| Some((t.ordinal(&g.id)?, g)))
            .filter(|(o, _)| *o >= cursor.o)
            .collect();
        groups.sort_unstable_by_key(|(o, _)| *o);
        let items = groups.into_iter().map(|(ordinal, g)| GroupItem {
            ordinal,
            head: head(g, &props),
            members: with_members.then(|| {
                let mut members: Vec<MemberDelta> = g
                    .members
                    .iter()
                    .filter_map(|m| {
                        let is_group = if t.user(m).is_some() {
                            false
                        } else if t.group(m).is_some() {
                            true
                        } else {
                            return None;
                        };
                        Some(MemberDelta {
                            id: m.clone(),
                            is_group,
                            removed: false,
                        })
                    })
                    .collect();
                members.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                members
            }),
        });
        return fill_groups(items, cursor, size);
    };
    let mut seen: HashMap<&str, GroupSeen<'_>> = HashMap::new();
    for change in t.log.since(since) {
        match change {
            Change::GroupCreated(id) => seen.entry(id).or_default().created = true,
            Change::GroupRenamed(id) => seen.entry(id).or_default().renamed = true,
            Change::GroupDeleted(id) => {
                seen.entry(id).or_default();
            }
            Change::Member {
                group,
                member,
                is_group,
                added,
            } if with_members => {
                seen.entry(group)
                    .or_default()
                    .members
                    .insert(member, (*is_group, *added));
            }
            _ => {}
        }
    }
    let renamed_props: Vec<&str> = props
        .iter()
        .copied()
        .filter(|p| matches!(*p, "displayName" | "mailNickname"))
        .collect();
    let mut items: Vec<GroupItem> = seen
        .into_iter()
        .filter(|(id, _)| wanted(id))
        .filter_map(|(id, seen)| {
            let ordinal = t.ordinal(id)?;
            if ordinal < cursor.o {
                return None;
            }
            let Some(g) = t.group(id) else {
                let Value::Object(head) = removed(id, "deleted") else {
                    return None;
                };
                return Some(GroupItem {
                    ordinal,
                    head,
                    members: None,
                });
            };
            let head = if seen.created {
                head(g, &props)
            } else if seen.renamed {
                head(g, &renamed_props)
            } else {
                head(g, &[])
            };
            let members: Vec<MemberDelta> = seen
                .members
                .into_iter()
                .map(|(id, (is_group, added))| MemberDelta {
                    id: id.to_owned(),
                    is_group,
                    removed: !added,
                })
                .collect();
            if head.len() <= 1 && members.is_empty() && !seen.created {
                return None;
            }
            Some(GroupItem {
                ordinal,
                head,
                members: with_members.then_some(members),
            })
        })
        .collect();
    items.sort_unstable_by_key(|i| i.ordinal);
    fill_groups(items.into_iter(), cursor, size)
}

/// Fills a page of at most `size` objects (a group counts one, each member one) from `items`,
/// continuing a group that the previous page cut.
fn fill_groups(
    items: impl Iterator<Item = GroupItem>,
    cursor: &Cursor,
    size: usize,
) -> (Vec<Value>, Option<Cursor>) {
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut items = items.peekable();
    while let Some(item) = items.next() {
        let resume = if item.ordinal == cursor.o {
            cursor.m.as_deref()
        } else {
            None
        };
        let mut entry = match resume {
            // The rest of a group cut by the previous page: its id and more members.
            Some(_) => {
                let mut m = Map::new();
                if let Some(id) = item.head.get("id") {
                    m.insert("id".to_owned(), id.clone());
                }
                m
            }
            None => item.head,
        };
        used += 1;
        let mut cut = None;
        if let Some(members) = item.members {
            let start = resume.map_or(0, |after| {
                members.partition_point(|m| m.id.as_str() <= after)
            });
            let rest = &members[start..];
            // Always make progress: at least one member per page.
            let room = size.saturating_sub(used).max(1);
            let take = rest.len().min(room);
            entry.insert(
                "members@delta".to_owned(),
                Value::Array(rest[..take].iter().map(MemberDelta::to_json).collect()),
            );
            used += take;
            if take < rest.len() {
                cut = rest[..take].last().map(|m| Cursor {
                    o: item.ordinal,
                    m: Some(m.id.clone()),
                });
            }
        }
        out.push(Value::Object(entry));
        if cut.is_some() {
            return (out, cut);
        }
        if used >= size {
            let next = items.peek().map(|i| Cursor {
                o: i.ordinal,
                m: None,
            });
            return (out, next);
        }
    }
    (out, None)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let st = State {
            r: Resource::Groups,
            i: 7,
            e: 1,
            s: Some(3),
            u: 9,
            c: Some(Cursor {
                o: 4,
                m: Some("x".into()),
            }),
            sel: Some(vec!["members".into()]),
            ids: None,
        };
        let token = encode(&st);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode(&token), Some(st));
        assert_eq!(decode("c2ltZGx0!!"), None);
        assert_eq!(decode(&broken_skiptoken()), None);
    }

    #[test]
    fn id_filters() {
        assert_eq!(
            parse_id_filter("id eq 'a' or ID eq 'b''c'").unwrap(),
            vec!["a".to_owned(), "b'c".to_owned()]
        );
        assert!(parse_id_filter("displayName eq 'a'").is_err());
        assert!(parse_id_filter("id eq a").is_err());
        assert!(parse_id_filter("id eq 'a' and id eq 'b'").is_err());
        let many = (0..51)
            .map(|i| format!("id eq '{i}'"))
            .collect::<Vec<_>>()
            .join(" or ");
        assert!(parse_id_filter(&many).is_err());
    }
}
