//! Helpers for tests that run the `essentry-sync` binary as a child process: the command with a
//! clean environment, a free loopback port, and polling with a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_essentry-sync");

/// The binary in `dir`, with debug logging, no database URL and no proxy from the environment
/// (the simulator is on loopback). Killed when dropped.
pub fn command(dir: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("ESSENTRY_LOG__FILTER", "debug")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        c.env_remove(var);
    }
    c.kill_on_drop(true);
    c
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` (e.g. "TERM", "KILL") to a child process.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The arguments of `integration create-graph --json` for the Graph simulator `sim`, with the
/// client secret read from the environment variable `secret_var`.
pub fn create_graph_args(
    sim: &essentry_sync::entra::simulator::Simulator,
    name: &str,
    secret_var: &str,
) -> Vec<String> {
    use essentry_sync::entra::simulator::{
        SAMPLE_CLIENT_ID, SAMPLE_SERVICE_PRINCIPAL_ID, SAMPLE_TENANT_ID,
    };
    [
        "integration",
        "create-graph",
        "--name",
        name,
        "--tenant-id",
        SAMPLE_TENANT_ID,
        "--client-id",
        SAMPLE_CLIENT_ID,
        "--client-secret-env",
        secret_var,
        "--service-principal-id",
        SAMPLE_SERVICE_PRINCIPAL_ID,
        "--graph-url",
        &sim.graph_url(),
        "--authority-url",
        &sim.authority_url(),
        "--json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}
