//! Deprovisioning side effects, exactly as the product page promises: deactivating, deleting or
//! replacing with `active: false` deletes the account, cancels every upcoming appointment the
//! user hosts and queues one cancellation email per guest — in one transaction.

use essentry_sync::domain::AppointmentStatus;
use essentry_sync::store::LogQuery;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Backend, TestApp};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct World {
    app: TestApp,
    host_id: String,
    upcoming: Vec<String>,
    past: String,
    other_host_appointment: String,
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(backend).await;
    let host_id = app
        .create_user("Hanna.Host@contoso.com", "Hanna", "Host")
        .await;
    app.create_user("olga.other@contoso.com", "Olga", "Other")
        .await;
    let a1 = app
        .add_appointment(
            "hanna.host@contoso.com",
            "Quarterly review",
            24,
            &[
                ("Vera Visitor", "vera@example.org"),
                ("Bob", "bob@example.org"),
                ("Bob again", "BOB@example.org"),
            ],
        )
        .await;
    let a2 = app
        .add_appointment(
            "hanna.host@contoso.com",
            "Site tour",
            72,
            &[("Carla", "carla@example.net")],
        )
        .await;
    let past = app
        .add_appointment(
            "hanna.host@contoso.com",
            "Last week",
            -24 * 7,
            &[("Dora", "dora@example.net")],
        )
        .await;
    let other = app
        .add_appointment(
            "olga.other@contoso.com",
            "Olga's meeting",
            5,
            &[("Eve", "eve@example.net")],
        )
        .await;
    World {
        app,
        host_id,
        upcoming: vec![a1.id.to_string(), a2.id.to_string()],
        past: past.id.to_string(),
        other_host_appointment: other.id.to_string(),
    }
}

/// Asserts the full set of side effects after the host was deprovisioned.
async fn assert_deprovisioned(w: &World) {
    let app = &w.app;
    let r = app.get(&format!("/Users/{}", w.host_id)).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "{:?}: account must be gone",
        app.backend
    );
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    let appointments = app.store().list_appointments(&app.account).await.unwrap();
    for a in &appointments {
        let id = a.id.to_string();
        if w.upcoming.contains(&id) {
            assert_eq!(
                a.status,
                AppointmentStatus::Cancelled,
                "{} must be cancelled",
                a.title
            );
            assert_eq!(a.cancelled_at, Some(app.clock_now()));
            assert!(
                a.host_user_id.is_none(),
                "host link is gone with the account"
            );
            assert_eq!(
                a.host_user_name, "Hanna.Host@contoso.com",
                "the record keeps who hosted it"
            );
        } else if id == w.past {
            assert_eq!(
                a.status,
                AppointmentStatus::Scheduled,
                "past appointments are not cancelled"
            );
        } else if id == w.other_host_appointment {
            assert_eq!(
                a.status,
                AppointmentStatus::Scheduled,
                "other hosts are untouched"
            );
            assert!(a.host_user_id.is_some());
        }
    }

    let outbox = app.store().list_outbox(&app.account).await.unwrap();
    let mut recipients: Vec<&str> = outbox.iter().map(|m| m.recipient_email.as_str()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["bob@example.org", "carla@example.net", "vera@example.org"],
        "one email per distinct guest per cancelled appointment; none for past or other appointments"
    );
    for m in &outbox {
        assert_eq!(m.status, "pending");
        assert_eq!(m.kind, "appointment_cancelled");
        let appointment = m.appointment_id.as_deref().expect("appointment id");
        assert!(w.upcoming.iter().any(|u| u == appointment));
        assert!(m.idempotency_key.contains(appointment));
        assert!(m.subject.starts_with("Cancelled: "), "{}", m.subject);
        assert!(
            m.body_text.contains("Hanna Host"),
            "names the host: {}",
            m.body_text
        );
        assert!(m.body_text.contains("has been cancelled"));
    }
    let vera = outbox
        .iter()
        .find(|m| m.recipient_email == "vera@example.org")
        .unwrap();
    assert_eq!(vera.recipient_name, "Vera Visitor");
    assert!(vera.body_text.contains("Quarterly review"));

    let log = app
        .store()
        .list_log(
            &app.account,
            &LogQuery {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let delete = log
        .iter()
        .find(|l| l.action == "delete")
        .expect("a delete row in the provisioning log");
    assert_eq!(delete.status, "success");
    assert_eq!(delete.user_name.as_deref(), Some("Hanna.Host@contoso.com"));
    assert_eq!(delete.integration.as_deref(), Some("EntraID"));
}

trait ClockNow {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
}

impl ClockNow for TestApp {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use essentry_sync::domain::Clock;
        self.clock.now()
    }
}

backend_test! {
    async fn patch_active_false_deletes_and_cancels(backend) {
        let w = world(backend).await;
        // Entra before aadOptscim062020 sends the boolean as a string.
        let r = w
            .app
            .patch(
                &format!("/Users/{}", w.host_id),
                &json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_eq!(r.body["active"], false);
        assert_deprovisioned(&w).await;
        w.app.finish().await;
    }
}

backend_test! {
    async fn delete_deletes_and_cancels(backend) {
        let w = world(backend).await;
        let r = w.app.delete(&format!("/Users/{}", w.host_id)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{backend:?}: {}", r.body);
        assert_deprovisioned(&w).await;
        let again = w.app.delete(&format!("/Users/{}", w.host_id)).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        w.app.finish().await;
    }
}

backend_test! {
    async fn put_active_false_deletes_and_cancels(backend) {
        let w = world(backend).await;
        let r = w
            .app
            .put(
                &format!("/Users/{}", w.host_id),
                &json!({"schemas": [USER], "userName": "Hanna.Host@contoso.com", "active": false,
                        "name": {"givenName": "Hanna", "familyName": "Host"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_deprovisioned(&w).await;
        w.app.finish().await;
    }
}

backend_test! {
    async fn pathless_replace_with_active_false_deprovisions(backend) {
        let w = world(backend).await;
        let r = w
            .app
            .patch(
                &format!("/Users/{}", w.host_id),
                &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false, "name.givenName": "H"}}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backend:?}: {}", r.body);
        assert_deprovisioned(&w).await;
        w.app.finish().await;
    }
}

backend_test! {
    async fn a_failing_transaction_changes_nothing(backend) {
        let w = world(backend).await;
        let trigger: &'static str = match backend {
            Backend::Sqlite => {
                "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            }
            Backend::Postgres => {
                "CREATE FUNCTION fail_outbox() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_outbox();"
            }
        };
        w.app.store().execute_raw(trigger).await.unwrap();
        let r = w.app.delete(&format!("/Users/{}", w.host_id)).await;
        assert_eq!(
            r.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{backend:?}: {}",
            r.body
        );
        assert_eq!(
            r.body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert!(
            !r.body["detail"].as_str().unwrap().contains("injected"),
            "no database internals in responses"
        );

        let user = w.app.get(&format!("/Users/{}", w.host_id)).await;
        assert_eq!(
            user.status,
            StatusCode::OK,
            "the account survives a failed deprovisioning"
        );
        let appointments = w
            .app
            .store()
            .list_appointments(&w.app.account)
            .await
            .unwrap();
        assert!(
            appointments
                .iter()
                .all(|a| a.status == AppointmentStatus::Scheduled),
            "nothing cancelled"
        );
        assert!(appointments.iter().all(|a| a.host_user_id.is_some()));
        assert!(
            w.app
                .store()
                .list_outbox(&w.app.account)
                .await
                .unwrap()
                .is_empty(),
            "nothing queued"
        );

        let log = w
            .app
            .store()
            .list_log(
                &w.app.account,
                &LogQuery {
                    limit: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let failure = log
            .iter()
            .find(|l| l.action == "delete")
            .expect("the failure is logged");
        assert_eq!(failure.status, "failure");
        w.app.finish().await;
    }
}

backend_test! {
    async fn recreating_a_user_gives_a_fresh_account_without_history(backend) {
        let w = world(backend).await;
        assert_eq!(
            w.app.delete(&format!("/Users/{}", w.host_id)).await.status,
            StatusCode::NO_CONTENT
        );
        let new_id = w
            .app
            .create_user("hanna.host@contoso.com", "Hanna", "Host")
            .await;
        assert_ne!(new_id, w.host_id, "a new id");
        let appointments = w
            .app
            .store()
            .list_appointments(&w.app.account)
            .await
            .unwrap();
        assert!(
            appointments
                .iter()
                .filter(|a| a
                    .host_user_name
                    .eq_ignore_ascii_case("hanna.host@contoso.com"))
                .all(|a| a.host_user_id.is_none()),
            "the old appointments are not re-attached"
        );
        // Deactivating the new account cancels nothing more and sends nothing more.
        let before = w
            .app
            .store()
            .list_outbox(&w.app.account)
            .await
            .unwrap()
            .len();
        assert_eq!(
            w.app.delete(&format!("/Users/{new_id}")).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            w.app
                .store()
                .list_outbox(&w.app.account)
                .await
                .unwrap()
                .len(),
            before
        );
        w.app.finish().await;
    }
}

backend_test! {
    async fn creating_an_inactive_user_is_refused_and_changes_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let r = app
            .post(
                "/Users",
                &json!({"schemas": [USER], "userName": "ina@contoso.com", "active": false}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidValue");
        let list = app
            .get("/Users?filter=userName%20eq%20%22ina@contoso.com%22")
            .await;
        assert_eq!(list.body["totalResults"], 0);
        app.finish().await;
    }
}
