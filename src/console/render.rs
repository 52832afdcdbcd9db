//! The console's HTML: minijinja templates compiled into the binary (`templates/`, escaped
//! automatically), the embedded stylesheet and script (`assets/`), and the headers every console
//! response carries — a Content-Security-Policy that allows nothing but this server's own
//! stylesheet, script and form targets, no framing, no referrer, no caching.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};

use super::{ConsoleError, Viewer};

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    (
        "integrations.html",
        include_str!("templates/integrations.html"),
    ),
    (
        "integration.html",
        include_str!("templates/integration.html"),
    ),
    ("run.html", include_str!("templates/run.html")),
    ("on_demand.html", include_str!("templates/on_demand.html")),
    ("users.html", include_str!("templates/users.html")),
    ("user.html", include_str!("templates/user.html")),
    ("logs.html", include_str!("templates/logs.html")),
    ("outbox.html", include_str!("templates/outbox.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("deletions.html", include_str!("templates/deletions.html")),
];

/// `2026-11-28T12:00:00.123Z` → `2026-11-28 12:00:00 UTC`; anything else as it is.
fn when(value: Value) -> String {
    let text = value.as_str().map(str::to_owned).unwrap_or_default();
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => text,
    }
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_filter("when", when);
        for (name, source) in TEMPLATES {
            // Compiled in: a template that does not parse fails every console test.
            if let Err(e) = env.add_template(name, source) {
                panic!("console template {name} does not parse: {e}");
            }
        }
        env
    })
}

/// A serializable value for a template context.
pub fn v<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Renders a template that needs no session (sign-in, errors).
pub fn render(name: &str, ctx: Value) -> Result<Html<String>, ConsoleError> {
    Ok(Html(templates().get_template(name)?.render(ctx)?))
}

/// Renders a page behind the sign-in: the layout gets the viewer (name, account, CSRF token
/// for the sign-out form) and `nav`, the highlighted entry.
pub fn page(
    viewer: &Viewer,
    nav: &str,
    name: &str,
    ctx: Value,
) -> Result<Html<String>, ConsoleError> {
    let full = context! {
        viewer => context! {
            name => viewer.token_name.clone(),
            account => viewer.account_name.clone(),
        },
        csrf => viewer.csrf.clone(),
        nav => nav,
        ..ctx
    };
    render(name, full)
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let html = templates()
        .get_template("error.html")
        .and_then(|t| t.render(context! { status => status.as_u16(), message => message }))
        .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".to_owned());
    (status, Html(html)).into_response()
}

/// `GET /admin/assets/{file}`: the embedded stylesheet and script.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (
            include_str!("assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Adds the security headers to every console response (pages get `no-store` too).
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
