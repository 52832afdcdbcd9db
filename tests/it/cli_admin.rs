//! The operator's side of issue-9 hygiene through the binary (SQLite): `admin-token create |
//! list | revoke` with expiry and account scope, `--account` refusing an unknown account unless
//! `--create-account` is given, and a Graph client secret never shown, even partly, without
//! `--reveal`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_essentry-sync");
const SECRET: &str = "graph-client-secret-WXYZ";

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("ESSENTRY_TEST_GRAPH_SECRET", SECRET)
        .output()
        .expect("run essentry-sync")
}

#[track_caller]
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

#[track_caller]
fn fails_with(dir: &Path, args: &[&str], message: &str) {
    let out = run(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

#[test]
fn admin_tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ops = ok_json(
        d,
        &[
            "admin-token",
            "create",
            "--name",
            "ops",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    let ops_token = ops["token"].as_str().unwrap().to_owned();
    assert!(ops_token.starts_with("essy_admin_"));
    let expires = ops["expires_at"].as_str().expect("expiry");
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days} hours");

    fails_with(
        d,
        &[
            "admin-token",
            "create",
            "--name",
            "x",
            "--expires-in",
            "soon",
        ],
        "--expires-in",
    );
    fails_with(
        d,
        &[
            "admin-token",
            "create",
            "--name",
            "acme-ops",
            "--account",
            "acme",
        ],
        "no account \"acme\"",
    );
    ok_json(
        d,
        &[
            "integration",
            "create-scim",
            "--name",
            "S",
            "--account",
            "acme",
            "--create-account",
            "--json",
        ],
    );
    let scoped = ok_json(
        d,
        &[
            "admin-token",
            "create",
            "--name",
            "acme-ops",
            "--account",
            "acme",
            "--json",
        ],
    );
    let scoped_token = scoped["token"].as_str().unwrap().to_owned();

    let out = run(d, &["admin-token", "list", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "acme-ops"]);
    assert_eq!(listed[0]["account"], Value::Null);
    assert_eq!(listed[1]["account"], "acme");
    assert!(listed[0]["expires_at"].is_string());
    assert_eq!(listed[0]["last_used_at"], Value::Null);
    let plain = String::from_utf8_lossy(&run(d, &["admin-token", "list"]).stdout).into_owned();
    assert!(
        plain.contains("acme-ops") && plain.contains("never"),
        "{plain}"
    );
    for shown in [&text, &plain] {
        assert!(
            !shown.contains("essy_admin_"),
            "a token (or its prefix) is listed: {shown}"
        );
        assert!(!shown.contains(&ops_token[ops_token.len() - 6..]));
        assert!(!shown.contains(&scoped_token[scoped_token.len() - 6..]));
    }

    ok_json(d, &["admin-token", "revoke", "--name", "ops", "--json"]);
    let listed = ok_json(d, &["admin-token", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    fails_with(
        d,
        &["admin-token", "revoke", "--name", "ops"],
        "no admin token named \"ops\"",
    );
}

#[test]
fn unknown_accounts_are_refused_unless_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The default account needs no flag.
    ok_json(d, &["users", "list", "--json"]);
    ok_json(
        d,
        &["integration", "create-scim", "--name", "EntraID", "--json"],
    );
    for args in [
        &["users", "list", "--account", "acmee"][..],
        &["integration", "list", "--account", "acmee"],
        &[
            "integration",
            "create-scim",
            "--name",
            "X",
            "--account",
            "acmee",
        ],
        &["appointments", "list", "--account", "acmee"],
        &["outbox", "--account", "acmee"],
        &["logs", "--account", "acmee"],
    ] {
        fails_with(d, args, "no account \"acmee\"");
    }
    let all = ok_json(d, &["integration", "list", "--all-accounts", "--json"]);
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "a refused command created nothing: {all}"
    );
    let created = ok_json(
        d,
        &[
            "integration",
            "create-scim",
            "--name",
            "X",
            "--account",
            "acme",
            "--create-account",
            "--json",
        ],
    );
    assert_eq!(created["account"], "acme");
    ok_json(d, &["users", "list", "--account", "acme", "--json"]);
}

#[test]
fn graph_client_secret_is_never_shown_partly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "integration",
        "create-graph",
        "--name",
        "Pull",
        "--tenant-id",
        "contoso.onmicrosoft.com",
        "--client-id",
        "11111111-1111-1111-1111-111111111111",
        "--client-secret-env",
        "ESSENTRY_TEST_GRAPH_SECRET",
        "--service-principal-id",
        "22222222-2222-2222-2222-222222222222",
        "--graph-url",
        "http://127.0.0.1:9/v1.0",
        "--authority-url",
        "http://127.0.0.1:9",
    ];
    let out = run(d, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tail = &SECRET[SECRET.len() - 4..];
    assert!(!String::from_utf8_lossy(&out.stdout).contains(tail));
    let listed = run(d, &["integration", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(tail));
    let listed = ok_json(d, &["integration", "list", "--json"]);
    assert_eq!(listed[0]["token"], "(sealed)");
    let revealed = ok_json(d, &["integration", "list", "--reveal", "--json"]);
    assert_eq!(revealed[0]["token"], SECRET);
}
