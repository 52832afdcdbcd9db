//! The `essentry-sync` binary as an operator uses it: integrations (masked and revealed
//! tokens, disconnect), users, appointments, outbox and logs, `serve` end to end with a
//! graceful SIGTERM, errors on stderr with a non-zero exit, and no secret in any log line.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_essentry-sync");

/// Runs the binary in `dir` (its `data/` folder holds the SQLite file and the key).
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("ESSENTRY_LOG__FILTER", "debug")
        .output()
        .expect("run essentry-sync")
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn integrations_are_created_masked_revealed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let created = ok_json(
        d,
        &["integration", "create-scim", "--name", "EntraID", "--json"],
    );
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("essy_scim_"), "{token}");
    assert_eq!(created["endpoint_url"], "http://127.0.0.1:8080/scim/v2");
    assert_eq!(created["account"], "default");

    let listed = ok_json(d, &["integration", "list", "--json"]);
    assert_eq!(listed[0]["name"], "EntraID");
    let masked = listed[0]["token"].as_str().unwrap();
    assert_ne!(masked, token, "privacy mode is on by default");
    assert!(masked.ends_with(&token[token.len() - 4..]));
    let revealed = ok_json(d, &["integration", "list", "--reveal", "--json"]);
    assert_eq!(revealed[0]["token"], token);

    // The key file is the owner's alone; the database never holds the token in clear.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("data/secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = run(d, &["users", "list"]); // checkpoints the WAL into the main file
    for entry in std::fs::read_dir(d.join("data")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token stored in clear"
        );
    }

    let dup = run(d, &["integration", "create-scim", "--name", "EntraID"]);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        err.contains("already has an integration named \"EntraID\""),
        "{err}"
    );

    let gone = ok_json(d, &["integration", "delete", "EntraID", "--json"]);
    assert_eq!(gone, json!({"deleted": "EntraID"}));
    assert_eq!(ok_json(d, &["integration", "list", "--json"]), json!([]));
    let again = run(d, &["integration", "delete", "EntraID"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no integration named"));
}

#[test]
fn bad_input_is_a_clear_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        d,
        &[
            "appointments",
            "create",
            "--host",
            "nobody@contoso.com",
            "--starts-at",
            "2030-01-01T09:00:00Z",
            "--title",
            "x",
            "--guest",
            "g@example.org",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user nobody@contoso.com"));
    let out = run(
        d,
        &[
            "appointments",
            "create",
            "--host",
            "x@y.z",
            "--starts-at",
            "tomorrow",
            "--title",
            "x",
            "--guest",
            "g@example.org",
        ],
    );
    assert!(!out.status.success());
    let out = run(d, &["integration", "create-scim", "--name", "  "]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 100 printable characters"));
    let bad_config = d.join("bad.toml");
    std::fs::write(&bad_config, "[log]\nformat = \"xml\"\n").unwrap();
    let out = run(
        d,
        &["--config", bad_config.to_str().unwrap(), "users", "list"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.format"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_end_to_end_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let created = Command::new(BIN)
        .args(["integration", "create-scim", "--name", "EntraID", "--json"])
        .current_dir(d)
        .env_remove("DATABASE_URL")
        .env("ESSENTRY_SERVER__PUBLIC_URL", &public)
        .output()
        .unwrap();
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let base = created["endpoint_url"].as_str().unwrap().to_owned();
    assert_eq!(base, format!("{public}/scim/v2"));

    let log_path = d.join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(d)
        .env_remove("DATABASE_URL")
        .env("ESSENTRY_SERVER__PUBLIC_URL", &public)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("{public}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not come up");
    assert_eq!(
        client
            .get(format!("{public}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let r = client
        .post(format!("{base}/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann@contoso.com",
                      "name": {"givenName": "Ann", "familyName": "Lee"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let wrong = client
        .get(format!("{base}/Users"))
        .bearer_auth("essy_scim_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let users = ok_json(d, &["users", "list", "--json"]);
    assert_eq!(users[0]["userName"], "ann@contoso.com");
    let appointment = ok_json(
        d,
        &[
            "appointments",
            "create",
            "--host",
            "Ann@Contoso.com",
            "--starts-at",
            "2099-01-01T09:00:00Z",
            "--title",
            "Kick-off",
            "--guest",
            "Vera Visitor <vera@example.org>",
            "--guest",
            "bob@example.org",
            "--json",
        ],
    );
    assert_eq!(appointment["guests"].as_array().unwrap().len(), 2);
    let id = users[0]["id"].as_str().unwrap();
    let del = client
        .delete(format!("{base}/Users/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let listed = ok_json(d, &["appointments", "list", "--json"]);
    assert_eq!(listed[0]["status"], "cancelled");
    let outbox = ok_json(d, &["outbox", "--json"]);
    assert_eq!(outbox.as_array().unwrap().len(), 2);
    let logs = ok_json(d, &["logs", "--json"]);
    let actions: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "create"], "newest first");
    let failures = ok_json(d, &["logs", "--status", "failure", "--json"]);
    assert_eq!(failures, json!([]));

    // SIGTERM: a graceful exit with status 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("serve did not stop on SIGTERM")
    });
    assert!(status.success(), "{status:?}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("essentry-sync serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file carries no ANSI colour codes"
    );
    assert!(
        !log.contains(&token),
        "the token must never appear in a log line"
    );
    assert!(
        !log.contains("essy_scim_wrong"),
        "nor a presented wrong token"
    );
}
