//! The OData conventions Graph speaks: the error body
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`, query
//! options (`$top`, `$select`, `$filter`, `$skiptoken`; the `$` is optional in v1.0), server-side
//! paging with an absolute `@odata.nextLink`, and `$select` projection.

use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Largest `$top` directory collections accept.
pub(super) const MAX_TOP: usize = 999;
/// Page size when `$top` is absent.
pub(super) const DEFAULT_TOP: usize = 100;

/// Per-request correlation ids, echoed in headers and error bodies.
#[derive(Debug, Clone)]
pub(super) struct RequestCtx {
    pub request_id: String,
    pub client_request_id: String,
    /// `Prefer: odata.maxpagesize=N`, when the request sent it.
    pub max_page_size: Option<usize>,
}

impl RequestCtx {
    /// Takes `client-request-id` from the request when the client sent one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| request_id.clone());
        let max_page_size = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_page_size);
        Self {
            request_id,
            client_request_id,
            max_page_size,
        }
    }

    /// A context for a `$batch` sub-request: own request id, the envelope's client id, and the
    /// sub-request's own `Prefer` header (from its `headers` object).
    pub fn sub(&self, prefer: Option<&str>) -> Self {
        Self {
            request_id: Uuid::new_v4().to_string(),
            client_request_id: self.client_request_id.clone(),
            max_page_size: prefer.and_then(max_page_size),
        }
    }
}

/// The `odata.maxpagesize` preference in a `Prefer` header value (preferences are
/// comma-separated; names are case-insensitive).
fn max_page_size(prefer: &str) -> Option<usize> {
    prefer.split(',').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("odata.maxpagesize") {
            value.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// An answer from a Graph handler, before it becomes HTTP (or a batch sub-response).
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body,
        }
    }
}

/// A Graph error: status, code and message.
#[derive(Debug, Clone)]
pub(super) struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// The error as Graph sends it.
    pub fn into_reply(self, ctx: &RequestCtx) -> Reply {
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": ctx.request_id,
                    "client-request-id": ctx.client_request_id,
                }
            }
        });
        Reply {
            status: self.status,
            headers: self.headers,
            body,
        }
    }
}

/// The query options of one request, decoded.
#[derive(Debug, Clone, Default)]
pub(super) struct Query {
    /// Every parameter as sent (decoded), in order; used to rebuild `@odata.nextLink`.
    pub raw: Vec<(String, String)>,
    pub top: Option<String>,
    pub select: Option<String>,
    pub filter: Option<String>,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
}

impl Query {
    pub fn parse(query: &str) -> Result<Self, GraphError> {
        let raw: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| GraphError::bad_request("The query string is not valid."))?;
        let mut q = Query {
            raw,
            ..Query::default()
        };
        for (k, v) in &q.raw {
            let name = k.strip_prefix('$').unwrap_or(k).to_ascii_lowercase();
            let slot = match name.as_str() {
                "top" => &mut q.top,
                "select" => &mut q.select,
                "filter" => &mut q.filter,
                "skiptoken" => &mut q.skiptoken,
                "deltatoken" => &mut q.deltatoken,
                _ => continue,
            };
            *slot = Some(v.clone());
        }
        Ok(q)
    }

    /// The page size: `$top` within 1..=999, else [`DEFAULT_TOP`].
    pub fn page_size(&self) -> Result<usize, GraphError> {
        let Some(top) = &self.top else {
            return Ok(DEFAULT_TOP);
        };
        match top.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
            _ => Err(GraphError::unsupported_query(format!(
                "Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive."
            ))),
        }
    }

    /// The offset a `$skiptoken` stands for (0 without one).
    pub fn offset(&self) -> Result<usize, GraphError> {
        match &self.skiptoken {
            None => Ok(0),
            Some(t) => decode_skiptoken(t).ok_or_else(expired_page_token),
        }
    }

    /// The `$select` list, checked against the properties the type has. Returns canonical names.
    pub fn selected(
        &self,
        known: &[&'static str],
        type_name: &str,
    ) -> Result<Option<Vec<&'static str>>, GraphError> {
        let Some(select) = &self.select else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in select.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(canonical) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
                return Err(GraphError::bad_request(format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
                )));
            };
            if !out.contains(canonical) {
                out.push(*canonical);
            }
        }
        Ok(Some(out))
    }
}

/// The error Graph sends for a page token it no longer (or never) knew.
pub(super) fn expired_page_token() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
}

const SKIPTOKEN_PREFIX: &str = "RFNwdAIA";

/// An opaque-looking token for an offset: a fixed prefix and hex digits with a check digit.
pub(super) fn encode_skiptoken(offset: usize) -> String {
    let hex = format!("{offset:x}");
    format!("{SKIPTOKEN_PREFIX}{hex}{}", check_digit(&hex))
}

/// A token that looks like ours but never decodes (the broken-nextLink fault).
pub(super) fn broken_skiptoken() -> String {
    format!("{SKIPTOKEN_PREFIX}{}", Uuid::new_v4().simple())
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let body = token
        .strip_prefix(SKIPTOKEN_PREFIX)
        .filter(|b| b.is_ascii())?;
    let split = body.len().checked_sub(1)?;
    let (hex, check) = body.split_at(split);
    if hex.is_empty() || check != check_digit(hex) {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

fn check_digit(hex: &str) -> String {
    let sum: u32 = hex.bytes().map(u32::from).sum();
    char::from(b'G' + (sum % 20) as u8).to_string()
}

/// One page of a collection, and the link to the next when there is more.
pub(super) struct Page {
    pub range: std::ops::Range<usize>,
    pub next_link: Option<String>,
}

/// Cuts the page that the query asks for out of `total` items. `url` is the absolute URL of the
/// collection, without query; the next link keeps every option but `$skiptoken`.
pub(super) fn page(q: &Query, total: usize, url: &str) -> Result<Page, GraphError> {
    let size = q.page_size()?;
    let start = q.offset()?.min(total);
    let end = start.saturating_add(size).min(total);
    let next_link = (end < total).then(|| next_link(q, url, &encode_skiptoken(end)));
    Ok(Page {
        range: start..end,
        next_link,
    })
}

/// The link to the page `q` asked for itself (the self-referencing-nextLink fault): its own
/// skip token, or the offset 0 on the first page.
pub(super) fn self_link(q: &Query, url: &str) -> String {
    let token = q.skiptoken.clone().unwrap_or_else(|| encode_skiptoken(0));
    next_link(q, url, &token)
}

/// `url?<options but $skiptoken>&$skiptoken=<token>`.
pub(super) fn next_link(q: &Query, url: &str, token: &str) -> String {
    let mut parts: Vec<String> = q
        .raw
        .iter()
        .filter(|(k, _)| {
            !k.strip_prefix('$')
                .unwrap_or(k)
                .eq_ignore_ascii_case("skiptoken")
        })
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    parts.push(format!("$skiptoken={}", encode_component(token)));
    format!("{url}?{}", parts.join("&"))
}

/// Percent-encodes a query component, leaving `$` and `,` readable as Graph's own links do.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' | b',' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes in a path segment; `None` when the result is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Keeps `id` (and `@odata.type` when present) plus the selected properties, in select order.
pub(super) fn project(full: &Map<String, Value>, select: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(t) = full.get("@odata.type") {
        out.insert("@odata.type".to_owned(), t.clone());
    }
    if let Some(id) = full.get("id") {
        out.insert("id".to_owned(), id.clone());
    }
    for name in select {
        if let Some(v) = full.get(*name) {
            out.insert((*name).to_owned(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn skiptokens_round_trip_and_reject_tampering() {
        for n in [0usize, 1, 999, 123_456] {
            assert_eq!(decode_skiptoken(&encode_skiptoken(n)), Some(n));
        }
        assert_eq!(decode_skiptoken(&broken_skiptoken()), None);
        assert_eq!(decode_skiptoken("RFNwdAIA"), None);
        assert_eq!(decode_skiptoken("garbage"), None);
        assert_eq!(decode_skiptoken("RFNwdAIA1é"), None);
    }

    #[test]
    fn next_link_keeps_options_and_replaces_the_token() {
        let q = Query::parse("$top=2&$select=id,mail&$skiptoken=old").unwrap();
        let link = next_link(&q, "http://h/v1.0/users", "T");
        assert_eq!(
            link,
            "http://h/v1.0/users?$top=2&$select=id,mail&$skiptoken=T"
        );
        let q = Query::parse("$filter=mail%20eq%20%27a%27").unwrap();
        assert_eq!(q.filter.as_deref(), Some("mail eq 'a'"));
    }

    #[test]
    fn top_bounds() {
        assert_eq!(Query::parse("").unwrap().page_size().unwrap(), 100);
        assert_eq!(Query::parse("top=999").unwrap().page_size().unwrap(), 999);
        assert!(Query::parse("$top=1000").unwrap().page_size().is_err());
        assert!(Query::parse("$top=0").unwrap().page_size().is_err());
        assert!(Query::parse("$top=x").unwrap().page_size().is_err());
    }

    #[test]
    fn prefer_max_page_size() {
        assert_eq!(max_page_size("odata.maxpagesize=50"), Some(50));
        assert_eq!(
            max_page_size("return=minimal, odata.MaxPageSize = \"7\""),
            Some(7)
        );
        assert_eq!(max_page_size("odata.maxpagesize=x"), None);
        assert_eq!(max_page_size("respond-async"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b").as_deref(), Some("a@b"));
        assert_eq!(percent_decode("%24batch").as_deref(), Some("$batch"));
        assert_eq!(percent_decode("50%").as_deref(), Some("50%"));
        assert_eq!(percent_decode("%ff").as_deref(), None);
    }
}
