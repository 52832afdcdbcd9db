//! In-process seeding through the library (not over HTTP): the `default` account, the users in
//! transactions of [`SEED_BATCH`], one group holding all of them, and a SCIM integration whose
//! token the clients use. Also the store opening and the SCIM user body shared with `create`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow, ensure};
use chrono::Utc;
use essentry_sync::domain::directory::{OpContext, create_user};
use essentry_sync::domain::{GroupId, GroupRecord, Source};
use essentry_sync::integrations;
use essentry_sync::scim::resource::{GROUP_URN, USER_URN, group_from_body, user_from_body};
use essentry_sync::secrets::SecretKey;
use essentry_sync::store::{Store, StoreConfig};
use serde_json::{Value, json};

/// Users created per seeding transaction.
const SEED_BATCH: usize = 1_000;

/// The `userName` (and work email) of seeded user `i`.
pub fn user_name(i: usize) -> String {
    format!("user{i:06}@bench.example.com")
}

/// A SCIM user resource, as seeded and as sent by the `create` scenario.
pub fn user_body(
    user_name: &str,
    external_id: &str,
    display_name: &str,
    given_name: &str,
) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "externalId": external_id,
        "displayName": display_name,
        "active": true,
        "name": {"givenName": given_name, "familyName": "Bench"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
    })
}

/// Opens the store at `url` with at most `max_connections` connections.
pub async fn open_store(url: &str, max_connections: u32) -> Result<Store> {
    Ok(Store::connect(&StoreConfig {
        url: url.to_owned(),
        max_connections,
        pg_schema: None,
    })
    .await?)
}

/// What the clients need from the seeded store.
pub struct Seeded {
    pub token: String,
    pub user_ids: Vec<String>,
    pub group_id: String,
}

/// Seeds the store at `url` with `users` users, `parallel` transactions at a time; the secret
/// key goes to `dir/secret.key`, where the server finds it.
pub async fn seed(url: &str, dir: &Path, users: usize, parallel: usize) -> Result<Seeded> {
    let store = Arc::new(
        open_store(url, parallel as u32 + 1)
            .await
            .context("opening the store for seeding")?,
    );
    let result = seed_into(&store, dir, users, parallel).await;
    store.close().await;
    result
}

async fn seed_into(
    store: &Arc<Store>,
    dir: &Path,
    users: usize,
    parallel: usize,
) -> Result<Seeded> {
    let now = Utc::now();
    let account = store.ensure_account("default", now).await?;
    let key = SecretKey::load_or_create(&dir.join("secret.key"))?;
    let (_, token) = integrations::create_scim(
        store,
        &key,
        &account,
        "default",
        "EntraID",
        "http://127.0.0.1/scim/v2",
        now,
    )
    .await?;
    let ctx = OpContext {
        account: account.clone(),
        source: Source::Scim,
        integration_id: None,
        cycle_id: None,
        now,
    };

    // Batches of SEED_BATCH users, each in its own transaction; `parallel` tasks take turns.
    let batches: Vec<(usize, usize)> = (0..users)
        .step_by(SEED_BATCH)
        .map(|start| (start, (start + SEED_BATCH).min(users)))
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches);
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (store, ctx, next, batches) =
            (store.clone(), ctx.clone(), next.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(usize, Vec<String>)> = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(start, end)) = batches.get(b) else {
                    break;
                };
                let mut tx = store.begin().await?;
                let mut ids = Vec::with_capacity(end - start);
                for i in start..end {
                    let body = user_body(
                        &user_name(i),
                        &format!("ext-{i:06}"),
                        &format!("User {i:06}"),
                        &format!("Given{i:06}"),
                    );
                    let desired = user_from_body(&body)
                        .map_err(|e| anyhow!("seed user {i} is not a valid SCIM user: {e:?}"))?;
                    let user = create_user(&mut tx, &ctx, desired).await?;
                    ids.push(user.id.as_str().to_owned());
                }
                tx.commit().await?;
                out.push((start, ids));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.extend(t.await.context("seeding task panicked")??);
    }
    parts.sort_by_key(|(start, _)| *start);
    let user_ids: Vec<String> = parts.into_iter().flat_map(|(_, ids)| ids).collect();
    ensure!(
        user_ids.len() == users,
        "seeded {} users, not {users}",
        user_ids.len()
    );

    let g = group_from_body(&json!({
        "schemas": [GROUP_URN],
        "displayName": "All employees",
        "externalId": "all-employees",
    }))
    .map_err(|e| anyhow!("seed group is not a valid SCIM group: {e:?}"))?;
    let group = GroupRecord {
        id: GroupId::generate(),
        account_id: account.clone(),
        display_name: g.display_name,
        external_id: g.external_id,
        resource: g.resource,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await?;
    tx.insert_group(&group).await?;
    tx.add_members(&group.id, &user_ids).await?;
    tx.commit().await?;
    let members = store.member_count(&group.id).await?;
    ensure!(
        members == users as i64,
        "the seeded group has {members} members, not {users}"
    );
    Ok(Seeded {
        token: token.expose().to_owned(),
        user_ids,
        group_id: group.id.as_str().to_owned(),
    })
}
