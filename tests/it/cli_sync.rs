//! The pull sync through the real `essentry-sync` binary, against the Graph simulator running in
//! this test process (the child reaches it over loopback): as an operator (`create-graph`,
//! `sync --dry-run`, `sync`, `status`, `logs`, `sync --user`, a failing cycle, a missing secret
//! variable) and as the daemon (`serve` runs the scheduled cycle, the admin API answers
//! provision-on-demand and status, SIGTERM stops it). The client secret and the admin token never
//! appear in any output, log line or, for the secret, in plain text in the SQLite file.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use essentry_sync::entra::simulator::{
    SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET, SAMPLE_SERVICE_PRINCIPAL_ID, SAMPLE_TENANT_ID,
    Simulator, sample_tenant,
};
use serde_json::{Value, json};

use crate::proc_support::{command, create_graph_args, free_port, poll};

/// The environment variable `--client-secret-env` names (set in the child's environment only).
const SECRET_VAR: &str = "ESSY_CLI_SYNC_TEST_SECRET";
const INTEGRATION: &str = "EntraPull";
/// Enabled users in the sample tenant's scope (15 in scope, 3 of them disabled).
const IN_SCOPE_ENABLED: usize = 12;
const ADELE: &str = "adele.vance@contoso.com";
const ALEX: &str = "alex.wilber@contoso.com";

/// Runs commands in one temporary directory and keeps everything they printed.
struct Operator {
    dir: tempfile::TempDir,
    transcript: String,
}

impl Operator {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            transcript: String::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn run_with(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = command(self.path());
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), c.output())
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not finish within 60 s"))
            .expect("run essentry-sync");
        self.transcript.push_str(&format!("$ {}\n", args.join(" ")));
        self.transcript
            .push_str(&String::from_utf8_lossy(&out.stdout));
        self.transcript
            .push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    async fn run(&mut self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    async fn ok_json(&mut self, args: &[&str]) -> Value {
        let out = self.run(args).await;
        parse_ok(args, &out)
    }

    /// `integration create-graph` for the simulator, the secret in `SECRET_VAR`.
    async fn create_graph(&mut self, sim: &Simulator) -> Value {
        let args = create_graph_args(sim, INTEGRATION, SECRET_VAR);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .run_with(&args, &[(SECRET_VAR, SAMPLE_CLIENT_SECRET)])
            .await;
        parse_ok(&args, &out)
    }

    async fn users(&mut self) -> Vec<Value> {
        self.ok_json(&["users", "list", "--json"])
            .await
            .as_array()
            .expect("users list is an array")
            .clone()
    }

    /// Neither the transcript nor any file of `data/` holds the client secret.
    async fn assert_secret_kept(&mut self) {
        assert!(
            !self.transcript.contains(SAMPLE_CLIENT_SECRET),
            "the client secret appeared in a command's output:\n{}",
            self.transcript
        );
        let _ = self.run(&["users", "list"]).await; // checkpoints the WAL into the main file
        let mut files = 0;
        for entry in std::fs::read_dir(self.path().join("data")).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            assert!(
                !bytes
                    .windows(SAMPLE_CLIENT_SECRET.len())
                    .any(|w| w == SAMPLE_CLIENT_SECRET.as_bytes()),
                "the client secret is stored in clear in {}",
                path.display()
            );
        }
        assert!(files >= 2, "the database and the key file");
    }
}

fn parse_ok(args: &[&str], out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn user_names(users: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = users
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn find_user<'a>(users: &'a [Value], user_name: &str) -> &'a Value {
    users
        .iter()
        .find(|u| u["userName"] == user_name)
        .unwrap_or_else(|| panic!("{user_name} not among {:?}", user_names(users)))
}

fn sim_rename(sim: &Simulator, upn: &str, given: &str) {
    sim.with_tenant(|t| {
        let id = t
            .user_by_upn(upn)
            .expect("user in the sample tenant")
            .id
            .clone();
        assert!(t.update_user(&id, |u| u.given_name = Some(given.to_owned())));
    });
}

fn count_action(changes: &Value, action: &str) -> usize {
    changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == action)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_runs_the_pull_sync_from_the_command_line() {
    let sim = Simulator::start(sample_tenant()).await.unwrap();
    let mut op = Operator::new();

    // Create: the settings come back, the secret only as its hint.
    let created = op.create_graph(&sim).await;
    assert_eq!(created["integration"]["name"], INTEGRATION);
    assert_eq!(created["integration"]["kind"], "graph");
    assert_eq!(created["integration"]["endpoint_url"], sim.graph_url());
    assert_eq!(created["settings"]["tenantId"], SAMPLE_TENANT_ID);
    assert_eq!(
        created["settings"]["servicePrincipalId"],
        SAMPLE_SERVICE_PRINCIPAL_ID
    );
    assert_ne!(created["integration"]["token"], SAMPLE_CLIENT_SECRET);
    let listed = op.ok_json(&["integration", "list", "--json"]).await;
    assert_eq!(listed[0]["name"], INTEGRATION);
    assert_ne!(listed[0]["token"], SAMPLE_CLIENT_SECRET);

    // Dry run: the plan, and nothing stored.
    let dry = op
        .ok_json(&["sync", "--integration", INTEGRATION, "--dry-run", "--json"])
        .await;
    assert_eq!(dry["outcome"], "success", "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["trigger"], "manual");
    assert_eq!(dry["read"]["users_in_scope"], 15, "{dry:#}");
    assert_eq!(
        count_action(&dry["changes"], "create"),
        IN_SCOPE_ENABLED,
        "{dry:#}"
    );
    assert!(op.users().await.is_empty(), "a dry run stores nothing");
    let logs = op
        .ok_json(&["logs", "--integration", INTEGRATION, "--json"])
        .await;
    assert_eq!(
        count_action(&logs, "create"),
        0,
        "a dry run logs no create: {logs:#}"
    );

    // The cycle creates the users in scope.
    let cycle = op
        .ok_json(&["sync", "--integration", INTEGRATION, "--json"])
        .await;
    assert_eq!(cycle["outcome"], "success", "{cycle:#}");
    assert_eq!(cycle["dry_run"], false);
    assert_eq!(cycle["applied"]["created"], IN_SCOPE_ENABLED, "{cycle:#}");
    let users = op.users().await;
    assert_eq!(users.len(), IN_SCOPE_ENABLED, "{:?}", user_names(&users));
    assert_eq!(find_user(&users, ADELE)["givenName"], "Adele");
    assert_eq!(find_user(&users, ADELE)["source"], "graph");
    assert!(users.iter().all(|u| u["active"] == true));

    // status: the last cycle, its outcome, the next run.
    let status = op.ok_json(&["status", "--json"]).await;
    let st = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == INTEGRATION)
        .unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(st["last_cycle"]["outcome"], "success", "{st:#}");
    assert_eq!(st["last_cycle"]["trigger"], "manual", "{st:#}");
    assert_eq!(st["last_cycle"]["id"], cycle["cycle_id"], "{st:#}");
    assert!(st["next_run"]["at"].is_string(), "{st:#}");
    assert_eq!(st["error"], Value::Null);
    // The first cycle read in full; the next full reconcile is a day later.
    assert_eq!(cycle["mode"], "full", "{cycle:#}");
    assert_eq!(cycle["full_reason"], "first", "{cycle:#}");
    assert!(
        st["reads"]
            .as_str()
            .unwrap_or_default()
            .starts_with("incremental"),
        "{st:#}"
    );
    assert_eq!(st["full_reconcile"], "every 24h", "{st:#}");
    assert!(st["next_full_reconcile"].is_string(), "{st:#}");

    // A second cycle follows the delta links; `--full` reads everything again.
    let quiet = op
        .ok_json(&["sync", "--integration", INTEGRATION, "--json"])
        .await;
    assert_eq!(
        (&quiet["outcome"], &quiet["mode"]),
        (&json!("success"), &json!("incremental")),
        "{quiet:#}"
    );
    let full = op
        .ok_json(&["sync", "--integration", INTEGRATION, "--full", "--json"])
        .await;
    assert_eq!(
        (&full["outcome"], &full["mode"], &full["full_reason"]),
        (&json!("success"), &json!("full"), &json!("requested")),
        "{full:#}"
    );
    assert_eq!(full["applied"]["created"], 0, "{full:#}");
    assert!(
        quiet["graph"]["requests"].as_u64() < full["graph"]["requests"].as_u64(),
        "{quiet:#} {full:#}"
    );

    // logs: one create row per user, in this cycle.
    let logs = op
        .ok_json(&["logs", "--integration", INTEGRATION, "--json"])
        .await;
    let creates: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "create")
        .collect();
    assert_eq!(creates.len(), IN_SCOPE_ENABLED, "{logs:#}");
    assert!(
        creates
            .iter()
            .all(|l| l["status"] == "success" && l["cycle_id"] == cycle["cycle_id"]),
        "{logs:#}"
    );
    assert!(creates.iter().any(|l| l["user_name"] == ADELE));

    // On demand, after a rename in Entra: an update with the modified attribute.
    sim_rename(&sim, ADELE, "Adeline");
    let od = op
        .ok_json(&[
            "sync",
            "--integration",
            INTEGRATION,
            "--user",
            ADELE,
            "--json",
        ])
        .await;
    assert_eq!(od["action"], "update", "{od:#}");
    assert_eq!(od["user_name"], ADELE, "{od:#}");
    assert_eq!(od["error"], Value::Null, "{od:#}");
    assert_eq!(
        od["modified"],
        json!([{"attribute": "name.givenName", "old": "Adele", "new": "Adeline"}]),
        "{od:#}"
    );
    let steps: Vec<&str> = od["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["connection", "import", "scope", "match", "action"],
        "{od:#}"
    );
    assert!(
        od["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "success"),
        "{od:#}"
    );
    let users = op.users().await;
    assert_eq!(find_user(&users, ADELE)["givenName"], "Adeline");
    let adele_logs = op.ok_json(&["logs", "--user", ADELE, "--json"]).await;
    assert_eq!(
        adele_logs[0]["action"], "update",
        "newest first: {adele_logs:#}"
    );
    assert_eq!(adele_logs[0]["cycle_id"], od["cycle_id"]);

    // A failing cycle (a truncated page): non-zero exit, the error on stderr, nothing changed.
    sim_rename(&sim, ALEX, "Alexander");
    sim.with_faults(|f| f.truncate_page = Some(1));
    let before = op.users().await;
    let failed = op
        .run(&["sync", "--integration", INTEGRATION, "--json"])
        .await;
    assert!(!failed.status.success(), "a failed cycle exits non-zero");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("sync cycle failed"), "{stderr}");
    let report: Value = serde_json::from_slice(&failed.stdout).unwrap_or_else(|e| {
        panic!(
            "the failed cycle's report is JSON ({e}): {}",
            String::from_utf8_lossy(&failed.stdout)
        )
    });
    assert_eq!(report["outcome"], "failed", "{report:#}");
    let code = report["error"]["code"].as_str().unwrap();
    assert!(
        stderr.contains(code),
        "the error code {code} on stderr: {stderr}"
    );
    assert_eq!(report["applied"], Value::Null, "{report:#}");
    let after = op.users().await;
    assert_eq!(after, before, "a failed cycle changes nothing");
    assert_eq!(find_user(&after, ALEX)["givenName"], "Alex");
    let status = op.ok_json(&["status", "--json"]).await;
    assert_eq!(status[0]["last_cycle"]["outcome"], "failed", "{status:#}");
    assert_eq!(
        status[0]["next_run"]["consecutive_failures"], 1,
        "{status:#}"
    );

    // The next cycle (no fault) applies the rename; a failure was not sticky.
    let recovered = op
        .ok_json(&["sync", "--integration", INTEGRATION, "--json"])
        .await;
    assert_eq!(recovered["outcome"], "success", "{recovered:#}");
    assert_eq!(recovered["applied"]["updated"], 1, "{recovered:#}");
    assert_eq!(find_user(&op.users().await, ALEX)["givenName"], "Alexander");

    // A missing secret variable: a clear error, a non-zero exit, no integration.
    let missing_var = "ESSY_CLI_SYNC_TEST_NO_SUCH_VAR";
    let out = op
        .run(&[
            "integration",
            "create-graph",
            "--name",
            "NoSecret",
            "--tenant-id",
            SAMPLE_TENANT_ID,
            "--client-id",
            SAMPLE_CLIENT_ID,
            "--client-secret-env",
            missing_var,
            "--service-principal-id",
            SAMPLE_SERVICE_PRINCIPAL_ID,
        ])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "environment variable {missing_var} (--client-secret-env) is not set"
        )),
        "{stderr}"
    );
    let listed = op.ok_json(&["integration", "list", "--json"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");

    op.assert_secret_kept().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_scheduled_cycle_and_the_admin_api() {
    let sim = Simulator::start(sample_tenant()).await.unwrap();
    let mut op = Operator::new();
    op.create_graph(&sim).await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let stdout_path = op.path().join("serve.out");
    let stderr_path = op.path().join("serve.err");
    let mut child = command(op.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ESSENTRY_SERVER__PUBLIC_URL", &base)
        .env("ESSENTRY_SYNC__FIRST_RUN_DELAY_SECS", "1")
        .env("ESSENTRY_SYNC__TICK_SECS", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let serve_log = || {
        format!(
            "{}{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // The scheduled cycle creates the users in scope, with no command from the operator.
    let users_deadline = Duration::from_secs(30);
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited early ({status:?}):\n{}", serve_log());
        }
        let users = op.users().await;
        if users.len() == IN_SCOPE_ENABLED {
            break;
        }
        assert!(
            start.elapsed() < users_deadline,
            "the scheduled cycle did not create the users ({} so far):\n{}",
            users.len(),
            serve_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let created = op
        .ok_json(&["admin-token", "create", "--name", "ops", "--json"])
        .await;
    assert_eq!(created["name"], "ops");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("essy_admin_"), "{token}");

    // GET /admin/v1/status: the cycle that ran was the scheduled one, and it succeeded.
    let status_url = format!("{base}/admin/v1/status");
    let st = poll(
        "the scheduled cycle's summary row",
        Duration::from_secs(15),
        || {
            let client = client.clone();
            let url = status_url.clone();
            let token = token.clone();
            async move {
                let r = client.get(&url).bearer_auth(&token).send().await.ok()?;
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.ok()?;
                let st = body
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == INTEGRATION)?
                    .clone();
                (st["last_cycle"]["outcome"] != "running" && !st["last_cycle"].is_null())
                    .then_some(st)
            }
        },
    )
    .await;
    assert_eq!(st["last_cycle"]["trigger"], "scheduled", "{st:#}");
    assert_eq!(st["last_cycle"]["outcome"], "success", "{st:#}");
    assert_eq!(st["running"], false, "{st:#}");
    assert_eq!(st["schedule"], "every 40m", "{st:#}");
    assert_eq!(
        client.get(&status_url).send().await.unwrap().status(),
        401,
        "status needs a token"
    );

    // POST provision-on-demand, after a rename in Entra.
    sim_rename(&sim, ADELE, "Adeline");
    let od_url = format!("{base}/admin/v1/integrations/{INTEGRATION}/provision-on-demand");
    let r = client
        .post(&od_url)
        .bearer_auth(&token)
        .json(&json!({"user": ADELE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["action"], "update", "{report:#}");
    assert_eq!(report["integration"], INTEGRATION);
    assert_eq!(report["user"], ADELE);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["error"], Value::Null, "{report:#}");
    assert_eq!(
        report["modified"],
        json!([{"attribute": "name.givenName", "old": "Adele", "new": "Adeline"}]),
        "{report:#}"
    );
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("connection", "success"),
            ("import", "success"),
            ("scope", "success"),
            ("match", "success"),
            ("action", "success"),
        ],
        "{report:#}"
    );
    assert_eq!(
        find_user(&op.users().await, ADELE)["givenName"],
        "Adeline",
        "the on-demand update is applied"
    );

    // Without a token, with a wrong one: 401 with a challenge; an unknown integration: 404.
    let r = client
        .post(&od_url)
        .json(&json!({"user": ADELE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let wrong = "essy_admin_wrongwrongwrongwrongwrongwrong";
    let r = client
        .post(&od_url)
        .bearer_auth(wrong)
        .json(&json!({"user": ADELE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!(
            "{base}/admin/v1/integrations/NoSuchIntegration/provision-on-demand"
        ))
        .bearer_auth(&token)
        .json(&json!({"user": ADELE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found", "{body:#}");

    // SIGTERM: a graceful exit with status 0 within a few seconds.
    let pid = child.id().expect("serve is running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = child.kill().await;
            panic!("serve did not stop on SIGTERM:\n{}", serve_log());
        }
    };
    assert!(status.success(), "{status:?}:\n{}", serve_log());

    let log = serve_log();
    assert!(log.contains("essentry-sync serving"), "{log}");
    assert!(
        !log.contains(SAMPLE_CLIENT_SECRET),
        "the client secret must never appear in serve's log"
    );
    assert!(
        !log.contains(&token),
        "the admin token must never appear in serve's log"
    );
    assert!(!log.contains(wrong), "nor a presented wrong token");
    op.assert_secret_kept().await;
    sim.shutdown().await;
}
