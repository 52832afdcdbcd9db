//! The PostgreSQL backend, for deployments where several replicas share one database.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub type Db = sqlx::Postgres;

/// Appended to reads that lock a row inside a write transaction.
const ROW_LOCK: &str = " FOR UPDATE";

// The queries, written once for both backends (see `backend.rs`): each file is deliberately a
// module of both backends, compiled once per `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "backend.rs"]
mod backend;
#[allow(clippy::duplicate_mod)]
#[path = "backend_console.rs"]
mod backend_console;
#[allow(clippy::duplicate_mod)]
#[path = "backend_deletions.rs"]
mod backend_deletions;
#[allow(clippy::duplicate_mod)]
#[path = "backend_delta.rs"]
mod backend_delta;
#[allow(clippy::duplicate_mod)]
#[path = "backend_events.rs"]
mod backend_events;
#[allow(clippy::duplicate_mod)]
#[path = "backend_metrics.rs"]
mod backend_metrics;
#[allow(clippy::duplicate_mod)]
#[path = "backend_outbox.rs"]
mod backend_outbox;
#[allow(clippy::duplicate_mod)]
#[path = "backend_tokens.rs"]
mod backend_tokens;

pub use backend::*;
pub use backend_console::*;
pub use backend_deletions::*;
pub use backend_delta::*;
pub use backend_events::*;
pub use backend_metrics::*;
pub use backend_outbox::*;
pub use backend_tokens::*;

#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: sqlx::PgPool,
    /// Bumped by every integration deletion made through this process (`auth_epoch.rs`).
    pub(crate) local_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl PgStore {
    /// Connects and migrates. `schema`, when given, is created if missing and used as the
    /// search path (tests use a fresh one each).
    pub async fn open(url: &str, max: u32, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options: PgConnectOptions = url.parse().map_err(db_err)?;
        // Plan every execution with the table as it is now. sqlx prepares statements, and after
        // a few runs PostgreSQL switches to a generic plan chosen while the table looked empty
        // (a fresh database, or rows added inside the still-open transaction of a large first
        // cycle): a sequential scan per lookup, quadratic over a 100k-user initial sync.
        options = options.options([("plan_cache_mode", "force_custom_plan")]);
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError::Database(
                    "schema name must be [A-Za-z0-9_]".into(),
                ));
            }
            let mut admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(db_err)?
                .acquire()
                .await
                .map_err(db_err)?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut *admin)
            .await
            .map_err(db_err)?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max.max(2))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Self {
            pool,
            local_epoch: Default::default(),
        })
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Refreshes the planner's statistics of the tables a sync cycle writes in bulk
    /// ([`SYNC_TABLES`]). Until autovacuum analyzes a table that went from empty to 100,000 rows
    /// (up to a minute later, longer on a busy server), the planner has no column statistics and
    /// picks plans that read every row: a batch of 500 users by Entra object id went through the
    /// whole `users` table. Waits at most [`ANALYZE_LOCK_TIMEOUT`] for a table that autovacuum or
    /// another replica is analyzing at that moment (their analyze does the same job).
    pub async fn analyze_sync_tables(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(ANALYZE_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(SYNC_TABLES)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

/// The tables a sync cycle's apply and delta-state save write row by row: the directory's users
/// and their emails, the provisioning log, and the Graph scope rows.
const SYNC_TABLES: &str = "ANALYZE users, user_emails, provisioning_log, graph_scope";

/// How long [`PgStore::analyze_sync_tables`] waits for a table's lock (`ANALYZE` takes a
/// lock that only another `ANALYZE` or `VACUUM` of the same table holds).
const ANALYZE_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";
