//! Translates a parsed SCIM filter into a SQL `WHERE` fragment over our tables, with numbered
//! (`$n`) parameters that both SQLite and PostgreSQL accept. Every attribute we can filter on is
//! listed here; anything else is refused (`invalidFilter`), never silently dropped — an
//! unsupported filter must not turn into an unfiltered list.

use chrono::{DateTime, Utc};

use crate::domain::query::{AttrPath, CompValue, CompareOp, Filter};

/// A bound value of a translated filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// `sql` refers to the users table as `u` or the groups table as `g`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Where {
    pub sql: String,
    pub params: Vec<Param>,
    /// The filter is one `eq` comparison of a string with a column that an index of its table
    /// leads with (after the account): it matches a handful of rows found without a scan, and may
    /// be run as a point read on the caller's thread (`point_read.rs`).
    pub point: bool,
}

/// The columns that a unique index or an index leading with `account_id` then the column
/// serves (the schema of `migrations/`).
const POINT_COLUMNS: [&str; 6] = [
    "u.id",
    "u.user_name_lower",
    "u.external_id",
    "u.entra_object_id",
    "g.id",
    "g.display_name_lower",
];

/// Whether `filter` is a point look-up (see [`Where::point`]).
fn is_point(filter: &Filter, target: Target) -> bool {
    let Filter::Compare {
        path,
        op: CompareOp::Eq,
        value: CompValue::String(_),
    } = filter
    else {
        return false;
    };
    matches!(
        resolve(target, path),
        Ok(Attr::Column(Column { expr, .. })) if POINT_COLUMNS.contains(&expr)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    User,
    Group,
}

/// Why a filter cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[derive(Clone, Copy)]
enum Kind {
    /// Compared case-insensitively: the column expression is already lower-cased.
    TextFolded,
    /// Compared exactly.
    TextExact,
    Bool,
    Time,
}

#[derive(Clone, Copy)]
struct Column {
    expr: &'static str,
    kind: Kind,
}

/// A multi-valued attribute kept in a side table.
struct Multi {
    /// `EXISTS (SELECT 1 FROM ... WHERE <link> AND (` ... `))`
    from: &'static str,
    sub: fn(&str) -> Option<Column>,
    default_sub: &'static str,
}

fn email_sub(name: &str) -> Option<Column> {
    match name.to_ascii_lowercase().as_str() {
        "value" => Some(Column {
            expr: "e.value_lower",
            kind: Kind::TextFolded,
        }),
        "type" => Some(Column {
            expr: "e.type_lower",
            kind: Kind::TextFolded,
        }),
        "primary" => Some(Column {
            expr: "e.is_primary",
            kind: Kind::Bool,
        }),
        _ => None,
    }
}

fn member_sub(name: &str) -> Option<Column> {
    match name.to_ascii_lowercase().as_str() {
        "value" => Some(Column {
            expr: "m.user_id",
            kind: Kind::TextExact,
        }),
        _ => None,
    }
}

const EMAILS: Multi = Multi {
    from: "SELECT 1 FROM user_emails e WHERE e.user_id = u.id",
    sub: email_sub,
    default_sub: "value",
};
const MEMBERS: Multi = Multi {
    from: "SELECT 1 FROM group_members m WHERE m.group_id = g.id",
    sub: member_sub,
    default_sub: "value",
};

enum Attr {
    Column(Column),
    Multi(&'static Multi, Option<String>),
}

fn resolve(target: Target, path: &AttrPath) -> Result<Attr, Unsupported> {
    let core = match target {
        Target::User => USER_URN,
        Target::Group => GROUP_URN,
    };
    if let Some(schema) = &path.schema
        && !schema.eq_ignore_ascii_case(core)
    {
        return Err(Unsupported(format!(
            "filtering on extension attributes ({schema}) is not supported"
        )));
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
    let col = |expr, kind| Ok(Attr::Column(Column { expr, kind }));
    let (u, g) = (target == Target::User, target == Target::Group);
    match (name.as_str(), sub.as_deref()) {
        ("id", None) => col(if u { "u.id" } else { "g.id" }, Kind::TextExact),
        ("externalid", None) => col(
            if u { "u.external_id" } else { "g.external_id" },
            Kind::TextExact,
        ),
        ("meta", Some("created")) => {
            col(if u { "u.created_at" } else { "g.created_at" }, Kind::Time)
        }
        ("meta", Some("lastmodified")) => {
            col(if u { "u.updated_at" } else { "g.updated_at" }, Kind::Time)
        }
        ("displayname", None) if g => col("g.display_name_lower", Kind::TextFolded),
        ("displayname", None) => col("u.display_name_lower", Kind::TextFolded),
        ("username", None) if u => col("u.user_name_lower", Kind::TextFolded),
        ("name", Some("givenname")) if u => col("u.given_name_lower", Kind::TextFolded),
        ("name", Some("familyname")) if u => col("u.family_name_lower", Kind::TextFolded),
        ("active", None) if u => col("u.active", Kind::Bool),
        ("emails", sub) if u => Ok(Attr::Multi(&EMAILS, sub.map(str::to_owned))),
        ("members", sub) if g => Ok(Attr::Multi(&MEMBERS, sub.map(str::to_owned))),
        _ => Err(Unsupported(format!(
            "filtering on attribute {:?} is not supported; supported: {}",
            path.dotted(),
            match target {
                Target::User =>
                    "id, userName, externalId, displayName, name.givenName, name.familyName, active, emails[.value|.type|.primary], meta.created, meta.lastModified",
                Target::Group =>
                    "id, displayName, externalId, members[.value], meta.created, meta.lastModified",
            }
        ))),
    }
}

struct Builder {
    target: Target,
    next: usize,
    params: Vec<Param>,
}

impl Builder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        let n = self.next;
        self.next += 1;
        format!("${n}")
    }

    fn node(
        &mut self,
        f: &Filter,
        element: Option<&Multi>,
        depth: usize,
    ) -> Result<String, Unsupported> {
        if depth > 64 {
            return Err(Unsupported("filter is nested too deeply".to_owned()));
        }
        match f {
            // A chain of one operator is one flat SQL list, however long: only real nesting
            // (mixed operators, `not`, value filters) adds depth.
            Filter::And(..) | Filter::Or(..) => {
                let joiner = if matches!(f, Filter::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                let parts = f
                    .operands()
                    .into_iter()
                    .map(|t| self.node(t, element, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(joiner)))
            }
            Filter::Not(a) => Ok(format!(
                "(NOT COALESCE({}, FALSE))",
                self.node(a, element, depth + 1)?
            )),
            Filter::Present(path) => self.leaf(path, None, element),
            Filter::Compare { path, op, value } => self.leaf(path, Some((*op, value)), element),
            Filter::ValuePath { path, filter } => {
                if element.is_some() {
                    return Err(Unsupported(
                        "nested value filters are not supported".to_owned(),
                    ));
                }
                match resolve(self.target, path)? {
                    Attr::Multi(multi, None) => {
                        let inner = self.node(filter, Some(multi), depth + 1)?;
                        Ok(format!("EXISTS ({} AND {inner})", multi.from))
                    }
                    _ => Err(Unsupported(format!(
                        "{:?} is not a multi-valued attribute that takes a [filter]",
                        path.dotted()
                    ))),
                }
            }
        }
    }

    fn leaf(
        &mut self,
        path: &AttrPath,
        cmp: Option<(CompareOp, &CompValue)>,
        element: Option<&Multi>,
    ) -> Result<String, Unsupported> {
        if let Some(multi) = element {
            // Inside `attr[...]`: paths name sub-attributes of the element.
            if path.sub_attr.is_some() || path.schema.is_some() {
                return Err(Unsupported(format!(
                    "{:?} is not a sub-attribute",
                    path.dotted()
                )));
            }
            let column = (multi.sub)(&path.name).ok_or_else(|| {
                Unsupported(format!(
                    "unknown sub-attribute {:?} in value filter",
                    path.name
                ))
            })?;
            return self.compare(column, cmp);
        }
        match resolve(self.target, path)? {
            Attr::Column(column) => self.compare(column, cmp),
            Attr::Multi(multi, sub) => {
                let sub = sub.as_deref().unwrap_or(multi.default_sub);
                let column = (multi.sub)(sub).ok_or_else(|| {
                    Unsupported(format!(
                        "unknown sub-attribute {:?} of {:?}",
                        sub, path.name
                    ))
                })?;
                let inner = self.compare(column, cmp)?;
                Ok(format!("EXISTS ({} AND {inner})", multi.from))
            }
        }
    }

    fn compare(
        &mut self,
        column: Column,
        cmp: Option<(CompareOp, &CompValue)>,
    ) -> Result<String, Unsupported> {
        let c = column.expr;
        let Some((op, value)) = cmp else {
            return Ok(match column.kind {
                Kind::TextExact | Kind::TextFolded => format!("({c} IS NOT NULL AND {c} <> '')"),
                Kind::Bool | Kind::Time => format!("({c} IS NOT NULL)"),
            });
        };
        if matches!(value, CompValue::Null) {
            return match op {
                CompareOp::Eq => Ok(format!("({c} IS NULL)")),
                CompareOp::Ne => Ok(format!("({c} IS NOT NULL)")),
                _ => Err(Unsupported(
                    "null can only be compared with eq or ne".to_owned(),
                )),
            };
        }
        match column.kind {
            Kind::Bool => {
                let CompValue::Bool(b) = value else {
                    return Err(Unsupported(
                        "a boolean attribute is compared with true or false".to_owned(),
                    ));
                };
                let p = self.bind(Param::Bool(*b));
                match op {
                    CompareOp::Eq => Ok(format!("({c} = {p})")),
                    CompareOp::Ne => Ok(format!("({c} <> {p})")),
                    _ => Err(Unsupported(
                        "a boolean attribute only supports eq, ne and pr".to_owned(),
                    )),
                }
            }
            Kind::Time => {
                let CompValue::String(s) = value else {
                    return Err(Unsupported(
                        "a dateTime attribute is compared with an RFC 3339 string".to_owned(),
                    ));
                };
                let t = DateTime::parse_from_rfc3339(s)
                    .map_err(|_| Unsupported(format!("{s:?} is not an RFC 3339 date-time")))?
                    .with_timezone(&Utc);
                let p = self.bind(Param::Time(t));
                let sym = match op {
                    CompareOp::Eq => "=",
                    CompareOp::Ne => "<>",
                    CompareOp::Gt => ">",
                    CompareOp::Ge => ">=",
                    CompareOp::Lt => "<",
                    CompareOp::Le => "<=",
                    _ => {
                        return Err(Unsupported(
                            "co, sw and ew do not apply to dateTime attributes".to_owned(),
                        ));
                    }
                };
                Ok(format!("({c} {sym} {p})"))
            }
            Kind::TextExact | Kind::TextFolded => {
                let raw = match value {
                    CompValue::String(s) => s.clone(),
                    CompValue::Number(n) => n.to_string(),
                    CompValue::Bool(b) => b.to_string(),
                    CompValue::Null => String::new(),
                };
                let v = if matches!(column.kind, Kind::TextFolded) {
                    crate::domain::fold_key(&raw)
                } else {
                    raw
                };
                let like = |pat: String| format!("({c} LIKE {pat} ESCAPE '\\')");
                Ok(match op {
                    CompareOp::Eq => format!("({c} = {})", self.bind(Param::Text(v))),
                    CompareOp::Ne => {
                        format!("({c} IS NULL OR {c} <> {})", self.bind(Param::Text(v)))
                    }
                    CompareOp::Co => like(self.bind(Param::Text(format!("%{}%", escape_like(&v))))),
                    CompareOp::Sw => like(self.bind(Param::Text(format!("{}%", escape_like(&v))))),
                    CompareOp::Ew => like(self.bind(Param::Text(format!("%{}", escape_like(&v))))),
                    CompareOp::Gt => format!("({c} > {})", self.bind(Param::Text(v))),
                    CompareOp::Ge => format!("({c} >= {})", self.bind(Param::Text(v))),
                    CompareOp::Lt => format!("({c} < {})", self.bind(Param::Text(v))),
                    CompareOp::Le => format!("({c} <= {})", self.bind(Param::Text(v))),
                })
            }
        }
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Translates `filter` for `target`; parameters are numbered from `first_param`.
pub fn translate(
    filter: &Filter,
    target: Target,
    first_param: usize,
) -> Result<Where, Unsupported> {
    let mut b = Builder {
        target,
        next: first_param,
        params: Vec::new(),
    };
    let sql = b.node(filter, None, 0)?;
    Ok(Where {
        sql,
        params: b.params,
        point: is_point(filter, target),
    })
}

/// Users that remember the Entra object id `oid` (the pull sync's first match key). Its one
/// parameter is `$2`, after the account.
pub fn entra_object_id_eq(oid: &str) -> Where {
    Where {
        sql: "u.entra_object_id = $2".to_owned(),
        params: vec![Param::Text(oid.to_ascii_lowercase())],
        point: true,
    }
}

/// Whether a list's total count of matches must be counted, or is already known from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// The caller did not ask for the total.
    NotAsked,
    /// The page tells it: it came back short, so the matches end on it.
    Known(i64),
    /// Only a `COUNT(*)` can tell.
    Count,
}

/// What a page of `len` rows read at `offset` with `limit` tells of the total (see [`Counted`]).
/// A page shorter than `limit` holds the last matches, so the total is `offset + len` — unless
/// it is empty past the start, which says only that there are at most `offset` matches. A
/// lookup by a unique attribute (one row, or none, at offset 0) so needs a single query.
pub(crate) fn total_from_page(with_total: bool, offset: i64, limit: i64, len: usize) -> Counted {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if !with_total {
        Counted::NotAsked
    } else if len < limit && (offset == 0 || len > 0) {
        Counted::Known(offset.saturating_add(len))
    } else {
        Counted::Count
    }
}

impl Counted {
    /// The total, running `count` (a `COUNT(*)` not yet started) only when the page cannot
    /// tell it.
    pub(crate) async fn total<E>(
        self,
        count: impl Future<Output = Result<i64, E>>,
    ) -> Result<Option<i64>, E> {
        match self {
            Counted::NotAsked => Ok(None),
            Counted::Known(total) => Ok(Some(total)),
            Counted::Count => count.await.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse_filter;

    fn user(f: &str) -> Result<Where, Unsupported> {
        translate(&parse_filter(f).unwrap(), Target::User, 2)
    }

    #[test]
    fn user_name_eq_is_case_insensitive_and_bound() {
        let w = user(r#"userName eq "Ann@Contoso.com""#).unwrap();
        assert_eq!(w.sql, "(u.user_name_lower = $2)");
        assert_eq!(w.params, vec![Param::Text("ann@contoso.com".into())]);
        assert!(w.point);
    }

    #[test]
    fn only_one_indexed_string_equality_is_a_point_lookup() {
        for f in [
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#,
            r#"externalId eq "x1""#,
            r#"USERNAME eq "a@b.c""#,
        ] {
            assert!(user(f).unwrap().point, "{f}");
        }
        for f in [
            r#"userName co "a""#,
            r#"userName eq "a@b.c" or userName eq "d@e.f""#,
            r#"not (userName eq "a@b.c")"#,
            r#"displayName eq "Ann""#,
            r#"name.givenName eq "Ann""#,
            r#"emails.value eq "a@b.c""#,
            "active eq true",
            "externalId eq null",
        ] {
            assert!(!user(f).unwrap().point, "{f}");
        }
    }

    #[test]
    fn long_or_chains_are_flat_not_deep() {
        // 1,000 terms (beyond what a 4 KiB filter can spell): one flat OR list, no depth error.
        let term = |i: usize| Filter::Compare {
            path: AttrPath::simple("userName"),
            op: CompareOp::Eq,
            value: CompValue::String(format!("U{i}@x.example")),
        };
        let chain = (1..1000).fold(term(0), |acc, i| {
            Filter::Or(Box::new(acc), Box::new(term(i)))
        });
        let w = translate(&chain, Target::User, 2).unwrap();
        assert_eq!(w.params.len(), 1000);
        assert_eq!(w.sql.matches(" OR ").count(), 999);
        assert_eq!(w.sql.matches('(').count(), 1001, "one list of 1,000 leaves");
        assert_eq!(w.params[999], Param::Text("u999@x.example".into()));
        // Mixed operators still nest, and parse into the same flat lists.
        let mixed =
            user(r#"userName eq "a@x.io" or (active eq true and userName sw "b")"#).unwrap();
        assert_eq!(
            mixed.sql,
            "((u.user_name_lower = $2) OR ((u.active = $3) AND (u.user_name_lower LIKE $4 ESCAPE '\\')))"
        );
    }

    #[test]
    fn folded_values_are_nfc() {
        let w = user("name.givenName eq \"Jose\u{301}\"").unwrap();
        assert_eq!(w.params, vec![Param::Text("jos\u{e9}".into())]);
    }

    #[test]
    fn entra_email_value_path() {
        let w = user(r#"emails[type eq "work"].value eq "A@b.com""#).unwrap();
        assert!(
            w.sql.starts_with("EXISTS (SELECT 1 FROM user_emails e"),
            "{}",
            w.sql
        );
        assert_eq!(
            w.params,
            vec![Param::Text("work".into()), Param::Text("a@b.com".into())]
        );
    }

    #[test]
    fn like_patterns_are_escaped() {
        let w = user(r#"externalId co "50%_x""#).unwrap();
        assert_eq!(w.params, vec![Param::Text("%50\\%\\_x%".into())]);
    }

    #[test]
    fn unsupported_attributes_and_ops_are_refused() {
        assert!(user(r#"title eq "x""#).is_err());
        assert!(user(r#"active co "x""#).is_err());
        assert!(user(r#"meta.created gt "yesterday""#).is_err());
        assert!(
            user(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x""#)
                .is_err()
        );
        let g = translate(
            &parse_filter(r#"userName eq "x@y.z""#).unwrap(),
            Target::Group,
            1,
        );
        assert!(g.is_err());
    }

    #[test]
    fn group_members_filter() {
        let w = translate(
            &parse_filter(r#"members[value eq "abc"]"#).unwrap(),
            Target::Group,
            1,
        )
        .unwrap();
        assert_eq!(
            w.sql,
            "EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = g.id AND (m.user_id = $1))"
        );
        let w = translate(
            &parse_filter(r#"displayName eq "Sales" and members.value eq "abc""#).unwrap(),
            Target::Group,
            1,
        )
        .unwrap();
        assert_eq!(w.params.len(), 2);
    }

    #[test]
    fn only_a_page_that_cannot_tell_runs_the_count() {
        use std::cell::Cell;
        let ran = Cell::new(0);
        let count = || async {
            ran.set(ran.get() + 1);
            Ok::<i64, ()>(42)
        };
        let total = |c: Counted| futures::executor::block_on(c.total(count()));
        assert_eq!(total(Counted::NotAsked), Ok(None));
        assert_eq!(total(Counted::Known(3)), Ok(Some(3)));
        assert_eq!(ran.get(), 0);
        assert_eq!(total(Counted::Count), Ok(Some(42)));
        assert_eq!(ran.get(), 1);
    }

    #[test]
    fn a_short_page_tells_the_total_and_a_full_or_empty_one_does_not() {
        assert_eq!(total_from_page(false, 0, 100, 1), Counted::NotAsked);
        // A lookup by a unique attribute: one row or none, at the start.
        assert_eq!(total_from_page(true, 0, 100, 1), Counted::Known(1));
        assert_eq!(total_from_page(true, 0, 100, 0), Counted::Known(0));
        // The last page of several.
        assert_eq!(total_from_page(true, 200, 100, 37), Counted::Known(237));
        // A full page may have more after it.
        assert_eq!(total_from_page(true, 0, 100, 100), Counted::Count);
        // Nothing past the start says only that there are at most `offset` matches.
        assert_eq!(total_from_page(true, 500, 100, 0), Counted::Count);
        // `count=0` reads no row: only a count can tell.
        assert_eq!(total_from_page(true, 0, 0, 0), Counted::Count);
    }
}
