//! The Graph simulator in a child process — this same bench binary started as
//! `graph_sync --simulator-child N` — so that the memory figures are the sync's own and not the
//! simulated tenant's (a 100k-user tenant and its rendered pages weigh ~100 MB). The parent
//! drives it over the child's stdin/stdout, one command line in and one JSON answer line out:
//! `stats`, `reset`, `rename <every> <prefix>` (a new givenName for every Nth user),
//! `ungroup <every> <offset>` (every Nth user from `offset` on leaves its groups), `expire`
//! (every delta link issued so far answers 410 `syncStateNotFound`) and `quit`.

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use essentry_sync::entra::simulator::{
    DeltaExpiry, SAMPLE_APP_ROLE_ID, SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET,
    SAMPLE_SERVICE_PRINCIPAL_ID, SAMPLE_TENANT_ID, SimGroup, SimUser, Simulator, Tenant,
    large_tenant,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// What the simulator saw since the last `reset`.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub graph_requests: u64,
    pub token_requests: u64,
    pub throttled: u64,
    pub by_route: BTreeMap<String, u64>,
}

/// The parent's handle on the simulator process.
pub struct SimProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    graph_url: String,
    authority_url: String,
}

impl SimProcess {
    /// Starts the child with a tenant of `users` (built there, as [`bench_tenant`]).
    pub async fn start(users: usize, groups_only: Option<usize>) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut args = vec!["--simulator-child".to_owned(), users.to_string()];
        args.extend(groups_only.map(|g| g.to_string()));
        let mut child = tokio::process::Command::new(exe)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulator process")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut stdout = BufReader::new(stdout).lines();
        let hello: Value = serde_json::from_str(
            &stdout
                .next_line()
                .await?
                .ok_or_else(|| anyhow!("the simulator process exited"))?,
        )?;
        let url = |k: &str| {
            hello[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("simulator handshake lacks {k}: {hello}"))
        };
        Ok(Self {
            graph_url: url("graph_url")?,
            authority_url: url("authority_url")?,
            child,
            stdin,
            stdout,
        })
    }

    pub fn graph_url(&self) -> String {
        self.graph_url.clone()
    }

    pub fn authority_url(&self) -> String {
        self.authority_url.clone()
    }

    async fn ask(&mut self, command: &str) -> Result<Value> {
        self.stdin.write_all(command.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the simulator process exited during {command:?}"))?;
        let answer: Value = serde_json::from_str(&line)?;
        if let Some(e) = answer.get("error") {
            bail!("simulator: {e}");
        }
        Ok(answer)
    }

    pub async fn stats(&mut self) -> Result<SimStats> {
        let v = self.ask("stats").await?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(SimStats {
            graph_requests: n("graph_requests"),
            token_requests: n("token_requests"),
            throttled: n("throttled"),
            by_route: v["by_route"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    pub async fn reset_stats(&mut self) -> Result<()> {
        self.ask("reset").await.map(|_| ())
    }

    /// Gives every `every`-th user the givenName `<prefix><n>`; returns how many changed.
    pub async fn rename_every(&mut self, every: usize, prefix: &str) -> Result<usize> {
        let v = self.ask(&format!("rename {every} {prefix}")).await?;
        v["renamed"]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| anyhow!("bad rename answer {v}"))
    }

    /// Every `every`-th user from `offset` on that is a group member leaves its groups; returns
    /// how many users did.
    pub async fn ungroup_every(&mut self, every: usize, offset: usize) -> Result<usize> {
        let v = self.ask(&format!("ungroup {every} {offset}")).await?;
        v["ungrouped"]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| anyhow!("bad ungroup answer {v}"))
    }

    /// Every delta link issued so far is rejected (410 `syncStateNotFound`).
    pub async fn expire_delta_links(&mut self) -> Result<()> {
        self.ask("expire").await.map(|_| ())
    }

    pub async fn shutdown(mut self) {
        let _ = self.ask("quit").await;
        let _ = self.child.wait().await;
    }
}

/// The benchmark's tenant: [`large_tenant`] (a tenth assigned directly, groups of 5,000), or
/// with `groups_only` every user assigned through that many groups of equal size
/// (`bench.onmicrosoft.com`, `user000001@bench.example`, ...).
pub fn bench_tenant(users: usize, groups_only: Option<usize>) -> Tenant {
    let Some(groups) = groups_only.filter(|g| *g > 0) else {
        return large_tenant(users);
    };
    let mut t = Tenant::new(SAMPLE_TENANT_ID, SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET);
    t.domain = "bench.onmicrosoft.com".to_owned();
    t.service_principal_id = SAMPLE_SERVICE_PRINCIPAL_ID.to_owned();
    t.app_role_id = SAMPLE_APP_ROLE_ID.to_owned();
    let per_group = users.div_ceil(groups);
    let mut members: Vec<String> = Vec::with_capacity(per_group);
    let mut group_no = 0u64;
    for i in 0..users {
        let no = i as u64 + 1;
        let upn = format!("user{no:06}@bench.example");
        let user = SimUser::new(&upn)
            .with_id(format!("be0c0001-0000-4000-8000-{no:012x}"))
            .named("User", &format!("{no:06}"))
            .with_mail(&upn);
        members.push(t.add_user(user));
        if members.len() == per_group || i + 1 == users {
            group_no += 1;
            let group = SimGroup::new(&format!("Bench Group {group_no}"))
                .with_id(format!("be0c0002-0000-4000-8000-{group_no:012x}"))
                .with_members(std::mem::take(&mut members));
            let gid = t.add_group(group);
            t.assign(&gid);
        }
    }
    t
}

/// The child's side: serve the tenant and answer commands until `quit` or end of input.
pub async fn child_main(users: usize, groups_only: Option<usize>) -> ExitCode {
    match serve(users, groups_only).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulator process: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(users: usize, groups_only: Option<usize>) -> Result<()> {
    let sim = Simulator::start(bench_tenant(users, groups_only)).await?;
    let mut out = tokio::io::stdout();
    let say = |v: Value| format!("{v}\n");
    out.write_all(
        say(json!({"graph_url": sim.graph_url(), "authority_url": sim.authority_url()})).as_bytes(),
    )
    .await?;
    out.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let answer = match words.next() {
            Some("stats") => {
                let s = sim.stats();
                json!({
                    "graph_requests": s.graph_requests,
                    "token_requests": s.token_requests,
                    "throttled": s.throttled,
                    "by_route": s.by_route,
                })
            }
            Some("reset") => {
                sim.reset_stats();
                json!({"ok": true})
            }
            Some("rename") => {
                let every: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(100);
                let prefix = words.next().unwrap_or("Renamed").to_owned();
                let ids: Vec<String> = sim.with_tenant(|t| {
                    t.users()
                        .step_by(every.max(1))
                        .map(|u| u.id.clone())
                        .collect()
                });
                sim.with_tenant(|t| {
                    for (i, id) in ids.iter().enumerate() {
                        t.update_user(id, |u| u.given_name = Some(format!("{prefix}{i:06}")));
                    }
                });
                json!({"renamed": ids.len()})
            }
            Some("ungroup") => {
                let every: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(200);
                let offset: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(50);
                let ids: Vec<String> = sim.with_tenant(|t| {
                    t.users()
                        .skip(offset)
                        .step_by(every.max(1))
                        .map(|u| u.id.clone())
                        .collect()
                });
                let ungrouped = sim.with_tenant(|t| {
                    let mut n = 0usize;
                    for id in &ids {
                        let groups: Vec<String> = t
                            .groups_of(id, false)
                            .iter()
                            .map(|g| g.id.clone())
                            .collect();
                        if groups.is_empty() {
                            continue;
                        }
                        for g in groups {
                            t.remove_member(&g, id);
                        }
                        n += 1;
                    }
                    n
                });
                json!({"ungrouped": ungrouped})
            }
            Some("expire") => {
                sim.expire_delta_tokens(DeltaExpiry::SyncStateNotFound);
                json!({"ok": true})
            }
            Some("quit") => {
                out.write_all(say(json!({"ok": true})).as_bytes()).await?;
                out.flush().await?;
                break;
            }
            other => json!({"error": format!("unknown command {other:?}")}),
        };
        out.write_all(say(answer).as_bytes()).await?;
        out.flush().await?;
    }
    sim.shutdown().await;
    Ok(())
}
