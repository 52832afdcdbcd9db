//! Migration 0004 on a database that 0001–0003 built and filled, on both backends: linked users
//! become managed by the Graph integration that linked them (from the provisioning log, else the
//! account's only Graph integration), SCIM-created users by the SCIM integration recorded as
//! creating them, everyone else by none.

use std::borrow::Cow;

use essentry_sync::domain::{AccountId, IntegrationId, UserId};
use essentry_sync::store::{Store, StoreConfig};

use crate::support::{Backend, postgres_url};

/// Rows as the 0003 schema holds them (the same text works on both backends).
const SEED: &str = "
INSERT INTO accounts (id, name, created_at) VALUES
  ('a0000000-0000-0000-0000-000000000001', 'default', '2026-11-01T00:00:00+00:00'),
  ('a0000000-0000-0000-0000-000000000002', 'other', '2026-11-01T00:00:00+00:00');
INSERT INTO integrations (id, account_id, name, kind, created_at) VALUES
  ('10000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'G1', 'graph', '2026-11-01T00:00:00+00:00'),
  ('10000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'G2', 'graph', '2026-11-01T00:00:00+00:00'),
  ('10000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-000000000001', 'Push', 'scim', '2026-11-01T00:00:00+00:00'),
  ('10000000-0000-0000-0000-000000000004', 'a0000000-0000-0000-0000-000000000002', 'Only', 'graph', '2026-11-01T00:00:00+00:00');
INSERT INTO users (id, account_id, user_name, user_name_lower, active, entra_object_id, source, resource, created_at, updated_at) VALUES
  ('u0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000001', 'linked.log@x.example', 'linked.log@x.example', TRUE, 'e0000000-0000-0000-0000-000000000001', 'graph', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00'),
  ('u0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000001', 'linked.nolog@x.example', 'linked.nolog@x.example', TRUE, 'e0000000-0000-0000-0000-000000000002', 'graph', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00'),
  ('u0000000-0000-0000-0000-000000000003', 'a0000000-0000-0000-0000-000000000001', 'scim.log@x.example', 'scim.log@x.example', TRUE, NULL, 'scim', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00'),
  ('u0000000-0000-0000-0000-000000000004', 'a0000000-0000-0000-0000-000000000001', 'scim.nolog@x.example', 'scim.nolog@x.example', TRUE, NULL, 'scim', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00'),
  ('u0000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000001', 'hand@x.example', 'hand@x.example', TRUE, NULL, 'cli', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00'),
  ('u0000000-0000-0000-0000-000000000006', 'a0000000-0000-0000-0000-000000000002', 'single@y.example', 'single@y.example', TRUE, 'e0000000-0000-0000-0000-000000000006', 'graph', '{}', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00');
INSERT INTO provisioning_log (id, account_id, integration_id, source, action, status, user_id, at) VALUES
  ('l1', 'a0000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000001', 'graph', 'create', 'success', 'u0000000-0000-0000-0000-000000000001', '2026-11-01T00:00:00+00:00'),
  ('l2', 'a0000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000002', 'graph', 'update', 'failure', 'u0000000-0000-0000-0000-000000000001', '2026-11-02T00:00:00+00:00'),
  ('l3', 'a0000000-0000-0000-0000-000000000001', '10000000-0000-0000-0000-000000000003', 'scim', 'create', 'success', 'u0000000-0000-0000-0000-000000000003', '2026-11-01T00:00:00+00:00');
";

/// The embedded migrations up to and including 0003.
macro_rules! up_to_0003 {
    ($dir:literal) => {{
        let mut m = sqlx::migrate!($dir);
        let kept: Vec<_> = m
            .migrations
            .iter()
            .filter(|x| x.version <= 3)
            .cloned()
            .collect();
        m.migrations = Cow::Owned(kept);
        m
    }};
}

backend_test! {
    async fn migration_0004_assigns_owners_to_existing_users(backend) {
        let dir = tempfile::tempdir().unwrap();
        let (url, schema) = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("old.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                up_to_0003!("./migrations/sqlite").run(&pool).await.unwrap();
                sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
                pool.close().await;
                (format!("sqlite://{}", path.display()), None)
            }
            Backend::Postgres => {
                let schema = format!("m_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let options: sqlx::postgres::PgConnectOptions = postgres_url().parse().unwrap();
                let pool = sqlx::PgPool::connect_with(options.options([("search_path", schema.as_str())]))
                    .await
                    .unwrap();
                up_to_0003!("./migrations/postgres").run(&pool).await.unwrap();
                sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
                pool.close().await;
                (postgres_url(), Some(schema))
            }
        };
        let store = Store::connect(&StoreConfig {
            url,
            max_connections: 2,
            pg_schema: schema.clone(),
        })
        .await
        .expect("0004 migrates the filled database");
        let owner = |account: &str, user: &str| {
            let store = store.clone();
            let (account, user) = (account.to_owned(), user.to_owned());
            async move {
                store
                    .user_by_id(&AccountId::from_trusted(account), &UserId::from_trusted(user))
                    .await
                    .unwrap()
                    .expect("user kept")
                    .managed_by
                    .map(|i: IntegrationId| i.as_str().to_owned())
            }
        };
        let a = "a0000000-0000-0000-0000-000000000001";
        let g1 = Some("10000000-0000-0000-0000-000000000001".to_owned());
        let push = Some("10000000-0000-0000-0000-000000000003".to_owned());
        assert_eq!(owner(a, "u0000000-0000-0000-0000-000000000001").await, g1, "{backend:?}: from the log");
        assert_eq!(owner(a, "u0000000-0000-0000-0000-000000000002").await, None, "two Graph integrations, no log");
        assert_eq!(owner(a, "u0000000-0000-0000-0000-000000000003").await, push, "SCIM create logged");
        assert_eq!(owner(a, "u0000000-0000-0000-0000-000000000004").await, None, "SCIM, not recorded");
        assert_eq!(owner(a, "u0000000-0000-0000-0000-000000000005").await, None, "by hand");
        assert_eq!(
            owner("a0000000-0000-0000-0000-000000000002", "u0000000-0000-0000-0000-000000000006").await,
            Some("10000000-0000-0000-0000-000000000004".to_owned()),
            "the account's only Graph integration"
        );
        store.close().await;
        if let Some(schema) = schema {
            let admin = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}
