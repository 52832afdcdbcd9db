//! The `essentry-sync serve` child process: started on a free loopback port and waited for
//! through `/healthz`, killed by the [`Server`] guard when dropped, and its memory read from
//! `/proc/<pid>/status`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// The running `essentry-sync serve`; killed when dropped (also while unwinding).
pub struct Server {
    child: Child,
    /// The SCIM base URL, `http://127.0.0.1:<port>/scim/v2`.
    pub base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the server has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The last 20 lines of the server's stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server's log file (`warn` and above).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's stderr lines from byte `from` on that are at WARN or ERROR level (at most
    /// `max` of them, the first ones), and the log's length now.
    pub fn log_problems_since(&self, from: u64, max: usize) -> (Vec<String>, u64) {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let len = bytes.len() as u64;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        let lines = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(max)
            .map(str::to_owned)
            .collect();
        (lines, len)
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Starts the server in `dir` (default settings, `warn` logging to `dir/server.log`) on the
/// store at `database_url`, and waits up to 60 s for `/healthz`.
pub async fn start_server(dir: &Path, database_url: &str) -> Result<Server> {
    let port = free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let log = dir.join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_essentry-sync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("ESSENTRY_SECRETS__KEY_FILE", dir.join("secret.key"))
        .env("ESSENTRY_SERVER__PUBLIC_URL", &public)
        .env("ESSENTRY_LOG__FILTER", "warn")
        .env_remove("RUST_LOG")
        .env_remove("ESSENTRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).context("creating server.log")?)
        .spawn()
        .context("starting essentry-sync serve")?;
    let mut server = Server {
        child,
        base: format!("{public}/scim/v2"),
        log,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.try_wait()? {
            bail!(
                "the server exited ({status}) before answering:\n{}",
                server.log_tail()
            );
        }
        if let Ok(r) = client.get(format!("{public}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within 60 s:\n{}",
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(VmRSS, VmHWM)` of `pid`, in MB.
pub fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {name} line: {line:?}"))?
            .parse()
            .with_context(|| format!("malformed {name} line: {line:?}"))?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
