//! Setting one backend up: the generated tenant and what the read strategy must fetch from it,
//! the simulator, the store (a SQLite file in a temp dir or a fresh PostgreSQL schema), the
//! `default` account and a Graph integration pointing at the simulator.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use chrono::Utc;
use essentry_sync::domain::AccountId;
use essentry_sync::entra::simulator::{PrincipalType, SAMPLE_CLIENT_SECRET, Tenant};
use essentry_sync::integrations::{self, GraphIntegration, GraphSettings};
use essentry_sync::secrets::{Secret, SecretKey};
use essentry_sync::store::{Store, StoreConfig};

use crate::Backend;

/// Assignments per `appRoleAssignedTo` page and members per group page (`$top=999`).
const PAGE: usize = 999;
/// Ids per `getByIds` request.
const IDS_PER_REQUEST: usize = 1_000;

/// What the tenant holds, and the fewest Graph requests one complete read of it needs.
#[derive(Debug, Clone)]
pub struct Expected {
    pub assignments: usize,
    pub direct: usize,
    /// User members of each assigned group.
    pub group_sizes: Vec<usize>,
    /// Distinct users in scope.
    pub in_scope: usize,
    pub min_assignment_pages: usize,
    pub min_get_by_ids: usize,
    pub min_member_pages: usize,
}

impl Expected {
    pub fn of(t: &Tenant) -> Self {
        let assignments = t.assignments();
        let direct = assignments
            .iter()
            .filter(|a| a.principal_type == PrincipalType::User)
            .count();
        let group_sizes: Vec<usize> = assignments
            .iter()
            .filter(|a| a.principal_type == PrincipalType::Group)
            .map(|a| {
                t.direct_user_members(&a.principal_id)
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .collect();
        // A listing takes one request even when empty.
        let pages = |n: usize| n.div_ceil(PAGE).max(1);
        Self {
            assignments: assignments.len(),
            direct,
            in_scope: t.effective_assigned_users(false).len(),
            min_assignment_pages: pages(assignments.len()),
            min_get_by_ids: direct.div_ceil(IDS_PER_REQUEST),
            min_member_pages: group_sizes.iter().map(|&m| pages(m)).sum(),
            group_sizes,
        }
    }

    pub fn min_requests(&self) -> usize {
        self.min_assignment_pages + self.min_get_by_ids + self.min_member_pages
    }

    pub fn describe(&self) -> String {
        let (lo, hi) = (
            self.group_sizes.iter().copied().min().unwrap_or(0),
            self.group_sizes.iter().copied().max().unwrap_or(0),
        );
        format!(
            "{} users in scope: {} assignments ({} direct users, {} groups of {}{} members); \
             minimum Graph requests {} = {} appRoleAssignedTo pages + {} getByIds + {} group member pages",
            self.in_scope,
            self.assignments,
            self.direct,
            self.group_sizes.len(),
            lo,
            if hi != lo {
                format!("..{hi}")
            } else {
                String::new()
            },
            self.min_requests(),
            self.min_assignment_pages,
            self.min_get_by_ids,
            self.min_member_pages,
        )
    }
}

/// Where the store lives; PostgreSQL's schema is dropped by [`StoreTarget::cleanup`].
pub struct StoreTarget {
    pub url: String,
    pub pg_schema: Option<String>,
    /// The SQLite file (for its size), if any.
    pub sqlite_file: Option<std::path::PathBuf>,
}

impl StoreTarget {
    pub fn new(backend: Backend, dir: &Path, pg_url: &str) -> Self {
        match backend {
            Backend::Sqlite => {
                let file = dir.join("bench.db");
                Self {
                    url: format!("sqlite://{}", file.display()),
                    pg_schema: None,
                    sqlite_file: Some(file),
                }
            }
            Backend::Postgres => Self {
                url: pg_url.to_owned(),
                pg_schema: Some(format!("bench_graph_{}", uuid::Uuid::new_v4().simple())),
                sqlite_file: None,
            },
        }
    }

    pub async fn open(&self) -> Result<Store> {
        Store::connect(&StoreConfig {
            url: self.url.clone(),
            max_connections: 8,
            pg_schema: self.pg_schema.clone(),
        })
        .await
        .with_context(|| match &self.pg_schema {
            Some(s) => format!("opening PostgreSQL at {} (schema {s})", self.url),
            None => format!("opening {}", self.url),
        })
    }

    /// The database size on disk, in MB (SQLite: the file plus its WAL).
    pub fn sqlite_size_mb(&self) -> Option<f64> {
        let file = self.sqlite_file.as_ref()?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = file.with_extension("db-wal");
        Some((size(file) + size(&wal)) as f64 / (1024.0 * 1024.0))
    }

    /// Drops the PostgreSQL schema (nothing to do for SQLite: the temp dir goes).
    pub async fn cleanup(&self) {
        let Some(schema) = &self.pg_schema else {
            return;
        };
        let result: Result<()> = async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("warning: could not drop schema {schema}: {e:#}");
        }
    }
}

/// The `default` account and a Graph integration `bench-graph` reading the simulator.
pub async fn integration(
    store: &Store,
    dir: &Path,
    graph_url: String,
    authority_url: String,
) -> Result<(AccountId, GraphIntegration)> {
    let now = Utc::now();
    let account = store.ensure_account("default", now).await?;
    let key = SecretKey::load_or_create(&dir.join("secret.key"))?;
    let settings = GraphSettings::sample(graph_url, authority_url);
    let name = "bench-graph";
    integrations::create_graph(
        store,
        &key,
        &account,
        "default",
        name,
        &settings,
        &Secret::new(SAMPLE_CLIENT_SECRET.to_owned()),
        now,
    )
    .await
    .map_err(|e| anyhow!("creating the Graph integration: {e}"))?;
    let row = integrations::find(store, &account, "default", name)
        .await
        .map_err(|e| anyhow!("finding the Graph integration: {e}"))?;
    let integ = GraphIntegration::open(row, &key)
        .map_err(|e| anyhow!("opening the Graph integration: {e}"))?;
    Ok((account, integ))
}
