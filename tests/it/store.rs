//! The store on both backends: the same operations give the same answers on SQLite and
//! PostgreSQL — uniqueness, time round-trips, filters executed as real SQL, member tables,
//! and honest errors.

use chrono::TimeDelta;
use essentry_sync::domain::directory::{self, OpContext, UpdateOutcome};
use essentry_sync::domain::{
    AccountId, DirectoryError, DirectoryUser, GroupId, GroupRecord, Source, UserName,
};
use essentry_sync::scim::filter::parse_filter;
use serde_json::{Map, json};

use crate::support::{TestStore, t0};

/// A context for operations on `account` at `t0()`, from `source`.
fn context(account: &AccountId, source: Source) -> OpContext {
    OpContext {
        account: account.clone(),
        source,
        integration_id: None,
        cycle_id: None,
        now: t0(),
    }
}

fn user(name: &str, given: &str, external: Option<&str>) -> DirectoryUser {
    let mut resource = Map::new();
    resource.insert("userName".into(), json!(name));
    resource.insert(
        "name".into(),
        json!({"givenName": given, "familyName": "Tester"}),
    );
    resource.insert(
        "emails".into(),
        json!([{"type": "work", "value": name, "primary": true}]),
    );
    if let Some(e) = external {
        resource.insert("externalId".into(), json!(e));
    }
    DirectoryUser {
        user_name: UserName::parse(name).unwrap(),
        given_name: Some(given.into()),
        family_name: Some("Tester".into()),
        display_name: None,
        external_id: external.map(str::to_owned),
        active: true,
        entra_object_id: None,
        resource,
    }
}

backend_test! {
    async fn users_round_trip_and_user_names_are_unique_case_insensitively(backend) {
        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        assert_eq!(
            store.ensure_account("acme", t0()).await.unwrap(),
            account,
            "idempotent"
        );
        let ctx = context(&account, Source::Cli);

        let mut tx = store.begin().await.unwrap();
        let created =
            directory::create_user(&mut tx, &ctx, user("Ann@Contoso.com", "Ann", Some("ann")))
                .await
                .unwrap();
        tx.commit().await.unwrap();

        let read = store
            .user_by_id(&account, &created.id)
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(
            read, created,
            "{backend:?}: what is read back equals what was written, timestamps included"
        );

        let mut tx = store.begin().await.unwrap();
        let dup =
            directory::create_user(&mut tx, &ctx, user("ann@CONTOSO.com", "Other", None)).await;
        assert!(
            matches!(dup, Err(DirectoryError::UserNameTaken(_))),
            "{backend:?}: {dup:?}"
        );
        drop(tx);

        // Another account may use the same userName.
        let other = store.ensure_account("globex", t0()).await.unwrap();
        let octx = OpContext {
            account: other.clone(),
            ..ctx.clone()
        };
        let mut tx = store.begin().await.unwrap();
        directory::create_user(&mut tx, &octx, user("ann@contoso.com", "Ann", None))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (mine, total) = store.list_users(&account, None, 0, 10, true).await.unwrap();
        assert_eq!(
            (mine.len(), total),
            (1, Some(1)),
            "accounts do not see each other's users"
        );
        ts.cleanup().await;
    }
}

backend_test! {
    async fn an_unchanged_update_writes_nothing_and_a_change_is_diffed(backend) {
        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        let ctx = context(&account, Source::Graph);
        let mut tx = store.begin().await.unwrap();
        let u = directory::create_user(&mut tx, &ctx, user("bo@contoso.com", "Bo", None))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let later = OpContext {
            now: t0() + TimeDelta::hours(1),
            ..ctx.clone()
        };
        let mut tx = store.begin().await.unwrap();
        let same = directory::update_user(&mut tx, &later, &u.id, u.attrs.clone(), None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(matches!(same, UpdateOutcome::Unchanged(_)), "{backend:?}");
        assert_eq!(
            store
                .user_by_id(&account, &u.id)
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );

        let mut renamed = u.attrs.clone();
        renamed.given_name = Some("Bob".into());
        renamed.resource.insert(
            "name".into(),
            json!({"givenName": "Bob", "familyName": "Tester"}),
        );
        let mut tx = store.begin().await.unwrap();
        let out = directory::update_user(&mut tx, &later, &u.id, renamed, Some(1))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let UpdateOutcome::Updated { user, changes } = out else {
            panic!("{backend:?}: expected an update")
        };
        assert_eq!(user.version, 2);
        assert_eq!(user.updated_at, later.now);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].attribute, "name.givenName");
        assert_eq!(changes[0].old, Some(json!("Bo")));
        assert_eq!(changes[0].new, Some(json!("Bob")));

        let mut tx = store.begin().await.unwrap();
        let stale = directory::update_user(&mut tx, &later, &u.id, u.attrs.clone(), Some(1)).await;
        assert!(
            matches!(
                stale,
                Err(DirectoryError::VersionMismatch {
                    expected: 1,
                    actual: 2
                })
            ),
            "{stale:?}"
        );
        drop(tx);
        ts.cleanup().await;
    }
}

backend_test! {
    async fn filters_run_as_real_sql_on_both_backends(backend) {
        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        for (i, (name, given, ext)) in [
            ("ann@contoso.com", "Ann", "A_1"),
            ("bob@contoso.com", "Bob", "a_1"),
            ("carl@fabrikam.com", "Carl", "50%off"),
        ]
        .into_iter()
        .enumerate()
        {
            let ctx = OpContext {
                now: t0() + TimeDelta::minutes(i as i64),
                ..context(&account, Source::Scim)
            };
            directory::create_user(&mut tx, &ctx, user(name, given, Some(ext)))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let count = |f: &'static str| {
            let store = &ts.store;
            let account = account.clone();
            async move {
                let filter = parse_filter(f).unwrap();
                store
                    .list_users(&account, Some(&filter), 0, 100, true)
                    .await
                    .unwrap()
                    .1
                    .unwrap()
            }
        };
        assert_eq!(
            count(r#"userName eq "ANN@contoso.COM""#).await,
            1,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"externalId eq "a_1""#).await,
            1,
            "{backend:?}: externalId is case-exact"
        );
        assert_eq!(
            count(r#"externalId sw "a""#).await,
            1,
            "{backend:?}: case-exact LIKE"
        );
        assert_eq!(
            count(r#"externalId co "%""#).await,
            1,
            "{backend:?}: % is literal"
        );
        assert_eq!(
            count(r#"externalId co "_""#).await,
            2,
            "{backend:?}: _ is literal"
        );
        assert_eq!(
            count(r#"userName ew "@CONTOSO.com""#).await,
            2,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"name.givenName sw "a" or name.givenName eq "carl""#).await,
            2,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"not (userName co "contoso")"#).await,
            1,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"emails[type eq "work" and value eq "bob@contoso.com"]"#).await,
            1,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"emails[type eq "home"].value pr"#).await,
            0,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"meta.created gt "2026-11-28T12:00:30Z""#).await,
            2,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"meta.created le "2026-11-28T12:01:00Z""#).await,
            2,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"active eq true and displayName pr"#).await,
            0,
            "{backend:?}"
        );
        assert_eq!(
            count(r#"userName gt "bob@contoso.com""#).await,
            1,
            "{backend:?}"
        );
        ts.cleanup().await;
    }
}

backend_test! {
    async fn group_members_are_rows_and_follow_user_deletion(backend) {
        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        let ctx = context(&account, Source::Scim);
        let mut tx = store.begin().await.unwrap();
        let mut ids = Vec::new();
        for i in 0..1200 {
            let u = directory::create_user(
                &mut tx,
                &ctx,
                user(&format!("u{i}@contoso.com"), "U", None),
            )
            .await
            .unwrap();
            ids.push(u.id.to_string());
        }
        let group = GroupRecord {
            id: GroupId::generate(),
            account_id: account.clone(),
            display_name: "Everyone".into(),
            external_id: None,
            resource: Map::new(),
            version: 1,
            created_at: t0(),
            updated_at: t0(),
        };
        tx.insert_group(&group).await.unwrap();
        assert!(tx.missing_users(&account, &ids).await.unwrap().is_empty());
        tx.add_members(&group.id, &ids).await.unwrap();
        tx.add_members(&group.id, &ids[..10]).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.member_count(&group.id).await.unwrap(),
            1200,
            "{backend:?}: duplicates are skipped"
        );

        let mut tx = store.begin().await.unwrap();
        directory::deprovision_user(
            &mut tx,
            &ctx,
            &essentry_sync::domain::UserId::parse(&ids[0]).unwrap(),
            directory::DeprovisionReason::Deleted,
        )
        .await
        .unwrap();
        tx.remove_members(&group.id, &ids[1..101]).await.unwrap();
        let missing = tx
            .missing_users(&account, &[ids[0].clone(), "not-a-user".into()])
            .await
            .unwrap();
        assert_eq!(missing.len(), 2);
        tx.commit().await.unwrap();
        assert_eq!(
            store.member_count(&group.id).await.unwrap(),
            1099,
            "{backend:?}"
        );
        let members = store.members_of(&group.id).await.unwrap();
        assert_eq!(
            members.first().map(|m| m.0.as_str()),
            Some(ids[101].as_str()),
            "creation order"
        );

        // A second group may not take the same name, in any case.
        let mut tx = store.begin().await.unwrap();
        let dup = GroupRecord {
            id: GroupId::generate(),
            display_name: "EVERYONE".into(),
            ..group.clone()
        };
        assert!(
            matches!(
                tx.insert_group(&dup).await,
                Err(essentry_sync::domain::StoreError::Conflict(_))
            ),
            "{backend:?}"
        );
        drop(tx);
        ts.cleanup().await;
    }
}

backend_test! {
    async fn database_errors_are_not_read_as_not_found(backend) {
        let ts = TestStore::new(backend).await;
        let account = ts.store.ensure_account("acme", t0()).await.unwrap();
        ts.store
            .execute_raw("DROP TABLE user_emails")
            .await
            .unwrap();
        let mut tx = ts.store.begin().await.unwrap();
        let ctx = context(&account, Source::Cli);
        let err = directory::create_user(&mut tx, &ctx, user("x@contoso.com", "X", None)).await;
        assert!(
            matches!(
                err,
                Err(DirectoryError::Store(
                    essentry_sync::domain::StoreError::Database(_)
                ))
            ),
            "{backend:?}: {err:?}"
        );
        drop(tx);
        let drop_users = match backend {
            crate::support::Backend::Sqlite => "DROP TABLE users",
            crate::support::Backend::Postgres => "DROP TABLE users CASCADE",
        };
        ts.store.execute_raw(drop_users).await.unwrap();
        let lookup = ts
            .store
            .user_by_name(&account, &UserName::parse("x@contoso.com").unwrap())
            .await;
        assert!(
            lookup.is_err(),
            "{backend:?}: a broken table is an error, not an absent user"
        );
        ts.cleanup().await;
    }
}

backend_test! {
    async fn point_lookups_answer_as_the_scanning_queries_do(backend) {
        // On SQLite, a user by id or userName and a filter of one indexed equality are read on
        // the caller's thread (`point_read.rs`); a compound filter goes through sqlx's readers.
        // Both must give the same records, paging and totals, and keep accounts apart.
        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        let other = store.ensure_account("globex", t0()).await.unwrap();
        let ctx = context(&account, Source::Cli);
        let mut tx = store.begin().await.unwrap();
        let ann = directory::create_user(&mut tx, &ctx, user("Ann@Contoso.com", "Ann", Some("x-1")))
            .await
            .unwrap();
        directory::create_user(&mut tx, &ctx, user("bob@contoso.com", "Bob", Some("x-2")))
            .await
            .unwrap();
        let octx = OpContext { account: other.clone(), ..ctx.clone() };
        directory::create_user(&mut tx, &octx, user("ann@contoso.com", "Other", Some("x-1")))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let list = async |f: &str, offset: i64, limit: i64| {
            let filter = parse_filter(f).unwrap();
            store
                .list_users(&account, Some(&filter), offset, limit, true)
                .await
                .unwrap()
        };
        let scanned = list(r#"userName eq "ANN@contoso.com" and active eq true"#, 0, 10).await;
        assert_eq!(scanned, (vec![ann.clone()], Some(1)), "{backend:?}");
        for point in [
            r#"userName eq "ANN@contoso.com""#.to_owned(),
            r#"externalId eq "x-1""#.to_owned(),
            format!(r#"id eq "{}""#, ann.id),
        ] {
            assert_eq!(list(&point, 0, 10).await, scanned, "{backend:?}: {point}");
            assert_eq!(list(&point, 1, 10).await, (vec![], Some(1)), "{backend:?}: {point} past the end");
            assert_eq!(list(&point, 0, 0).await, (vec![], Some(1)), "{backend:?}: {point} count only");
        }
        assert_eq!(list(r#"externalId eq "nobody""#, 0, 10).await, (vec![], Some(0)));
        let by_name = store
            .user_by_name(&account, &UserName::parse("ann@CONTOSO.com").unwrap())
            .await
            .unwrap();
        assert_eq!(by_name.as_ref(), Some(&ann), "{backend:?}");
        let by_id = store.user_by_id(&other, &ann.id).await.unwrap();
        assert_eq!(by_id, None, "{backend:?}: another account's id is not found");
        ts.cleanup().await;
    }
}

backend_test! {
    async fn a_refused_user_write_leaves_no_user_log_or_email_rows(backend) {
        // A user's write, its provisioning-log row and its email rows go to the database as one
        // query (`combined.rs`): when the userName is taken or the version is stale, none of
        // them may be written.
        use essentry_sync::domain::{DirectoryTx, LogAction, LogStatus, UserId};
        use essentry_sync::store::LogQuery;

        let ts = TestStore::new(backend).await;
        let store = &ts.store;
        let account = store.ensure_account("acme", t0()).await.unwrap();
        let ctx = context(&account, Source::Cli);
        let mut tx = store.begin().await.unwrap();
        let ann = directory::create_user(&mut tx, &ctx, user("ann@contoso.com", "Ann", None))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let logged = async || {
            store
                .list_log(&account, &LogQuery { limit: 50, ..Default::default() })
                .await
                .unwrap()
                .len()
        };
        let emails = async |value: &str| {
            let filter = parse_filter(&format!(r#"emails[value eq "{value}"]"#)).unwrap();
            store
                .list_users(&account, Some(&filter), 0, 10, true)
                .await
                .unwrap()
                .1
        };
        assert_eq!(logged().await, 1, "{backend:?}");

        // The same userName under a new id, with an email of its own.
        let mut twin = ann.clone();
        twin.id = UserId::generate();
        twin.attrs.resource.insert(
            "emails".into(),
            json!([{"type": "work", "value": "twin@contoso.com", "primary": true}]),
        );
        let entry = ctx.log_entry(LogAction::Create, LogStatus::Success);
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.insert_user_logged(&twin, &entry).await.unwrap(), "{backend:?}");
        tx.commit().await.unwrap();
        assert_eq!(store.user_by_id(&account, &twin.id).await.unwrap(), None);
        assert_eq!(logged().await, 1, "{backend:?}: no log row for a taken userName");
        assert_eq!(emails("twin@contoso.com").await, Some(0), "{backend:?}");

        // An update expecting a version the user is no longer at.
        let mut renamed = ann.clone();
        renamed.attrs.given_name = Some("Anna".into());
        renamed.attrs.resource.insert(
            "emails".into(),
            json!([{"type": "home", "value": "anna@home.example", "primary": false}]),
        );
        renamed.version = 3;
        let entry = ctx.log_entry(LogAction::Update, LogStatus::Success);
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.update_user_logged(&renamed, 2, true, &entry).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(store.user_by_id(&account, &ann.id).await.unwrap(), Some(ann.clone()));
        assert_eq!(logged().await, 1, "{backend:?}: no log row for a stale version");
        assert_eq!(emails("ann@contoso.com").await, Some(1), "{backend:?}: emails kept");
        assert_eq!(emails("anna@home.example").await, Some(0), "{backend:?}");

        // At the right version the user, its log row and its emails are all written, the old
        // email replaced.
        renamed.version = 2;
        let mut tx = store.begin().await.unwrap();
        assert!(tx.update_user_logged(&renamed, 1, true, &entry).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(store.user_by_id(&account, &ann.id).await.unwrap(), Some(renamed));
        assert_eq!(logged().await, 2, "{backend:?}");
        assert_eq!(emails("ann@contoso.com").await, Some(0), "{backend:?}: old email gone");
        assert_eq!(emails("anna@home.example").await, Some(1), "{backend:?}");
        ts.cleanup().await;
    }
}
