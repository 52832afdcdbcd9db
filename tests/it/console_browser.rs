//! The console in a real headless Chromium, driven over WebDriver (chromedriver on a free
//! loopback port, fantoccini): sign-in and sign-out, the redirect without a session, creating a
//! SCIM integration and revealing its Endpoint URL and Token (Privacy Mode), a dry run and a
//! real run against the Graph simulator with the live progress reaching the end, approving one
//! held deletion, provision on demand with its step trace, the log exported as CSV, retrying a dead email.
//!
//! Without `chromium` and `chromedriver` on the PATH the test is skipped with one printed
//! reason, unless `ESSENTRY_TEST_REQUIRE_BROWSER=1` (CI), which makes that a failure.
//! `ESSENTRY_TEST_SCREENSHOTS=docs` saves screenshots of a few pages there (the README's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::console_support::{ConsoleApp, GRAPH};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver and the browser, or why the browser tests cannot run here.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let driver = on_path(&["chromedriver"]).ok_or("no chromedriver on the PATH")?;
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
        .ok_or("no chromium on the PATH")?;
    Ok((driver, chromium))
}

/// The browser and driver, or `None` after printing why the test is skipped (a failure with
/// `ESSENTRY_TEST_REQUIRE_BROWSER=1`).
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(found) => Some(found),
        Err(why) => {
            if std::env::var("ESSENTRY_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!(
                    "ESSENTRY_TEST_REQUIRE_BROWSER=1 but {why} (apt-get install chromium chromium-driver)"
                );
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping the console browser test: {why} (apt-get install chromium \
                 chromium-driver; ESSENTRY_TEST_REQUIRE_BROWSER=1 makes this a failure)"
            );
            None
        }
    }
}

/// A chromedriver process on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(driver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

async fn connect(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1360,900", "--hide-scrollbars"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn path_of(c: &Client) -> String {
    c.current_url().await.expect("url").path().to_owned()
}

/// Waits until the browser is at `path` (a click's navigation may still be under way).
async fn wait_for_path(c: &Client, path: &str) {
    let mut at = String::new();
    for _ in 0..200 {
        at = path_of(c).await;
        if at == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the browser is at {at}, not {path}");
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits until the text of `css` contains `wanted` (the page a click loads may still be on its
/// way) and returns it.
async fn wait_for_text(c: &Client, css: &str, wanted: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t.contains(wanted) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never contained {wanted:?}; last: {last:?}");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(value)
        .await
        .expect("typing");
}

async fn screenshot(c: &Client, name: &str) {
    let Ok(dir) = std::env::var("ESSENTRY_TEST_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.expect("screenshot");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(name);
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Waits for the run page's outcome (the script reloads the page when the cycle ends).
async fn wait_for_outcome(c: &Client) -> String {
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css("#outcome")).await {
            return e.text().await.expect("outcome");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run page never showed an outcome");
}

backend_test! {
    /// The console end to end in a real browser.
    multi_thread async fn console_in_a_real_browser(backend) {
        let Some((driver_bin, chromium)) = browser_or_skip() else {
            return;
        };
        let app = ConsoleApp::spawn(backend).await;
        let driver = start_driver(&driver_bin).await;
        let c = connect(&driver, &chromium).await;
        let o = app.origin.clone();

        // No session: the console sends the browser to the sign-in page.
        c.goto(&format!("{o}/admin/users")).await.expect("goto");
        wait_for_path(&c, "/admin/login").await;
        type_into(&c, "#token", "essy_admin_wrong").await;
        click(&c, "#sign-in").await;
        wait_for_text(&c, ".flash.error", "not a valid admin token").await;
        type_into(&c, "#token", &app.admin_token).await;
        click(&c, "#sign-in").await;
        wait_for_path(&c, "/admin/").await;
        assert!(text(&c, "main").await.contains(GRAPH));

        // A SCIM integration: name in, Endpoint URL and Token out, behind Privacy Mode.
        c.goto(&format!("{o}/admin/integrations")).await.expect("goto");
        type_into(&c, "#scim-name", "Okta Push").await;
        click(&c, "#create-scim button[type=submit]").await;
        wait_for_path(&c, "/admin/integrations/Okta%20Push").await;
        let masked = text(&c, "#token").await;
        assert!(masked.starts_with("essy_scim_…") && masked.chars().count() < 20, "{masked}");
        assert!(!text(&c, "#endpoint-url").await.contains("http"));
        click(&c, "#reveal").await;
        wait_for_text(&c, "#endpoint-url", &app.state.scim_base).await;
        let token = text(&c, "#token").await;
        assert!(token.starts_with("essy_scim_") && token.len() > 40, "{token}");
        screenshot(&c, "console-privacy-mode.png").await;

        // A dry run, then a real run, with the live progress reaching the end.
        c.goto(&format!("{o}/admin/integrations/{GRAPH}")).await.expect("goto");
        click(&c, "#run-now").await;
        assert_eq!(wait_for_outcome(&c).await, "success");
        assert_eq!(text(&c, "#p-phase").await, "finished");
        assert!(text(&c, "#p-users").await.parse::<u32>().unwrap_or(0) >= 12);
        app.add_appointment("lynne.robbins@contoso.com", "Board prep", &[("Pat Guest", "pat@guest.example")]).await;
        app.unassign("lynne.robbins@contoso.com");
        c.goto(&format!("{o}/admin/integrations/{GRAPH}")).await.expect("goto");
        click(&c, "#dry-run").await;
        assert_eq!(wait_for_outcome(&c).await, "success");
        let plan = text(&c, "#cancellations").await;
        assert!(plan.contains("Board prep") && plan.contains("pat@guest.example"), "{plan}");
        c.goto(&format!("{o}/admin/integrations/{GRAPH}")).await.expect("goto");
        click(&c, "#run-now").await;
        assert_eq!(wait_for_outcome(&c).await, "success");
        assert_eq!(text(&c, "#p-applied").await, "1", "the unassigned host was deleted");
        screenshot(&c, "console-cycle.png").await;

        // Two more unassigned: over the threshold, the cycle holds them for review; approve one.
        app.unassign("nestor.wilke@contoso.com");
        app.unassign("allan.deyoung@contoso.com");
        c.goto(&format!("{o}/admin/integrations/{GRAPH}")).await.expect("goto");
        click(&c, "#run-now").await;
        assert_eq!(wait_for_outcome(&c).await, "held");
        c.goto(&format!("{o}/admin/deletions")).await.expect("goto");
        let held = text(&c, "main table").await;
        assert!(held.contains("nestor.wilke@contoso.com") && held.contains("allan.deyoung@contoso.com"), "{held}");
        click(&c, "button.approve").await;
        wait_for_text(&c, "#flash", "Approved: allan.deyoung@contoso.com deleted").await;
        assert!(!text(&c, "main table").await.contains("allan.deyoung@contoso.com"));

        // Provision on demand: the step trace inline.
        c.goto(&format!("{o}/admin/integrations/{GRAPH}")).await.expect("goto");
        type_into(&c, "#pod-user", "adele.vance@contoso.com").await;
        click(&c, "#provision button[type=submit]").await;
        let steps = text(&c, "#steps").await;
        for step in ["connection", "import", "scope", "match", "action"] {
            assert!(steps.contains(step), "{step} in {steps}");
        }

        // The provisioning log, exported as CSV by the browser (same cookie, same filters).
        c.goto(&format!("{o}/admin/logs?action=create")).await.expect("goto");
        screenshot(&c, "console-log.png").await;
        let href = c.find(Locator::Css("#export-csv")).await.expect("export link")
            .attr("href").await.expect("href").expect("an href");
        assert!(href.contains("format=csv") && href.contains("action=create"), "{href}");
        let csv = c
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
                vec![json!(href)],
            )
            .await
            .expect("fetch the export");
        let csv = csv.as_str().unwrap_or_default().to_owned();
        assert!(csv.starts_with("at,integration,cycle_id"), "{csv}");
        assert_eq!(csv.lines().count(), 13, "a header and twelve creates: {csv}");

        // A dead email, retried from the outbox page.
        app.store()
            .execute_raw("UPDATE outbox SET status = 'dead', attempts = 8, last_error = '550 mailbox unavailable'")
            .await
            .expect("a dead message");
        c.goto(&format!("{o}/admin/outbox?status=dead")).await.expect("goto");
        assert!(text(&c, "main table").await.contains("550 mailbox unavailable"));
        click(&c, "button.retry").await;
        wait_for_text(&c, ".tabs a.active", "Pending").await;
        assert!(text(&c, "main table").await.contains("pending"));
        assert_eq!(app.store().outbox_counts(&app.account).await.expect("counts").get("dead"), None);

        // Overview, then sign out: the session is gone.
        c.goto(&format!("{o}/admin/")).await.expect("goto");
        screenshot(&c, "console-overview.png").await;
        click(&c, "#sign-out").await;
        wait_for_path(&c, "/admin/login").await;
        c.goto(&format!("{o}/admin/")).await.expect("goto");
        wait_for_path(&c, "/admin/login").await;

        c.close().await.expect("close the browser");
        drop(driver);
        app.finish().await;
    }
}
