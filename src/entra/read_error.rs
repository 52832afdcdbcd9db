//! Why a Graph read failed ([`ReadError`], with a short stable code for logs, counters and the
//! provisioning log), why one attempt failed ([`CallError`], as the retry policy sees it), and
//! graph-rs-sdk's errors in one line without the URL. Re-exported from [`crate::entra::graph`].

use super::auth::AuthError;
use super::retry::RetryError;
use graph_rs_sdk::GraphFailure;

/// Why a read failed. Any of these aborts the cycle before it deprovisions anyone.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "Graph answered {status} to {what}{}: {message}{}",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        request_id.as_deref().map(|r| format!(" [request-id {r}]")).unwrap_or_default()
    )]
    Graph {
        what: String,
        status: u16,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
    },
    #[error("Graph could not be reached for {what}: {message}")]
    Transport { what: String, message: String },
    #[error("{what}: page {page} is not usable ({reason}); the read is incomplete")]
    BadPage {
        what: String,
        page: u32,
        reason: String,
    },
    #[error("{what}: more than {cap} pages; refusing to read on (raise sync.max_pages)")]
    PageCap { what: String, cap: u32 },
    #[error(
        "{what}: page {page} links back to a page already read ({token}); Graph is looping, the read is incomplete"
    )]
    RepeatedPage {
        what: String,
        page: u32,
        token: String,
    },
    #[error("{what}: more than {cap} users; refusing to read on (raise sync.max_users)")]
    UserCap { what: String, cap: usize },
    #[error("{what}: {source}")]
    Retry {
        what: String,
        #[source]
        source: Box<RetryError<CallError>>,
    },
    #[error("the Graph URL is not usable: {0}")]
    BadUrl(String),
    #[error("{0}")]
    NotFound(String),
    /// Graph no longer accepts a stored delta link (410 Gone, `syncStateNotFound`,
    /// `resyncRequired`): the cycle reads the whole scope again and takes fresh links.
    #[error("Graph rejected the delta link of {what} ({code}); a full read starts over")]
    DeltaRejected { what: String, code: String },
}

impl ReadError {
    /// A short stable code for logs, counters and the provisioning log.
    pub fn code(&self) -> String {
        match self {
            Self::Auth(AuthError::Rejected { code, .. }) => code.clone(),
            Self::Auth(_) => "token_error".to_owned(),
            Self::Graph { code, status, .. } => {
                code.clone().unwrap_or_else(|| format!("http_{status}"))
            }
            Self::Transport { .. } => "transport".to_owned(),
            Self::BadPage { .. } => "bad_page".to_owned(),
            Self::PageCap { .. } => "page_cap".to_owned(),
            Self::RepeatedPage { .. } => "repeated_page".to_owned(),
            Self::UserCap { .. } => "user_cap".to_owned(),
            Self::Retry { source, .. } if source.is_budget_exhausted() => {
                "retry_budget_exhausted".to_owned()
            }
            Self::Retry { source, .. } if matches!(**source, RetryError::Fatal(_)) => {
                "bad_response".to_owned()
            }
            Self::Retry { .. } => "retries_exhausted".to_owned(),
            Self::BadUrl(_) => "bad_url".to_owned(),
            Self::NotFound(_) => "not_found".to_owned(),
            Self::DeltaRejected { .. } => "delta_rejected".to_owned(),
        }
    }
}

/// One failed attempt, as [`retry::run`] sees it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
    },
    #[error("{0}")]
    Transport(String),
    #[error("the response is not the JSON expected: {0}")]
    Decode(String),
    #[error("{0}")]
    Client(String),
}

/// graph-rs-sdk's errors in one line, without the request's URL.
pub(super) fn short_failure(e: &GraphFailure) -> String {
    match e {
        GraphFailure::ReqwestError(r) => {
            let mut text = r.without_url_ref();
            let mut source = std::error::Error::source(r);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
        other => {
            let text = other.to_string();
            text.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect()
        }
    }
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(&format!(" for url ({url})"), ""),
            None => text,
        }
    }
}
