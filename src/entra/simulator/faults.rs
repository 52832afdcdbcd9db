//! Injected misbehaviour and request statistics. Every fault is a countdown or a one-shot flag
//! that the simulator consumes as requests arrive, so a test sets exactly how many 429s, 5xxs or
//! broken pages the client under test meets, then checks how it coped through [`Stats`].

use std::collections::BTreeMap;

/// How Graph answers a delta or skip token it no longer honours: `410 Gone` with one of the two
/// codes the delta-query documentation names. Either way the client must start over with a
/// fresh delta request (a full read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeltaExpiry {
    #[default]
    SyncStateNotFound,
    ResyncRequired,
}

impl DeltaExpiry {
    /// The error code in Graph's JSON error body.
    pub fn code(self) -> &'static str {
        match self {
            Self::SyncStateNotFound => "syncStateNotFound",
            Self::ResyncRequired => "resyncRequired",
        }
    }
}

/// Misbehaviour to inject. Counters count down as matching requests arrive; page faults count
/// paged collection responses (assignments, members, user lists, delta pages) served from now
/// on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// The next this-many Graph requests answer 429 `TooManyRequests` with `Retry-After`.
    /// Inside a `$batch`, each sub-request counts (Graph throttles them one by one).
    pub throttle_next: u32,
    /// The `Retry-After` value sent with 429 (and 503): seconds such as `"1"` or `"2.128"`, or
    /// an HTTP date. An empty string sends no header (clients must then back off on their own).
    pub retry_after: String,
    /// The next this-many Graph requests (after any throttling) answer `server_error_status`.
    pub server_error_next: u32,
    /// 503 (`serviceNotAvailable`, with `Retry-After`) or 504 (`UnknownError`, gateway timeout);
    /// anything else is sent as 500 `generalException`.
    pub server_error_status: u16,
    /// The Nth paged response from now (1 = the next) comes as 200 with `@odata.context` only:
    /// no `value`, no `@odata.nextLink`.
    pub truncate_page: Option<usize>,
    /// The Nth paged response from now carries an `@odata.nextLink` whose `$skiptoken` the
    /// simulator rejects (400 `Directory_ExpiredPageToken`).
    pub break_next_link: Option<usize>,
    /// While set, every paged response carries an `@odata.nextLink` to itself (the same page
    /// again, forever): a client must notice the loop.
    pub loop_next_link: bool,
    /// Every token issued so far expires now: the next Graph call answers 401
    /// `InvalidAuthenticationToken`; tokens requested afterwards work.
    pub expire_tokens: bool,
    /// Lifetime of newly issued tokens (`expires_in`); 0 issues tokens that are already expired.
    pub token_lifetime_secs: u64,
    /// The next this-many token requests answer 503 `temporarily_unavailable` (AADSTS90033).
    pub token_unavailable_next: u32,
    /// Every delta and skip token of `users/delta` and `groups/delta` issued so far becomes
    /// invalid when the next delta request arrives: using one answers `410 Gone` with
    /// `delta_expiry`'s code. Tokens issued afterwards work.
    pub expire_delta_tokens: bool,
    /// The code of the 410 answer for an invalidated delta token.
    pub delta_expiry: DeltaExpiry,
    /// Answer `$batch` sub-responses in reverse order (Graph does not promise request order).
    pub reorder_batch: bool,
    /// Milliseconds to wait before answering each Graph request (timeouts, benchmarks).
    pub delay_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            throttle_next: 0,
            retry_after: "1".to_owned(),
            server_error_next: 0,
            server_error_status: 503,
            truncate_page: None,
            break_next_link: None,
            loop_next_link: false,
            expire_tokens: false,
            token_lifetime_secs: 3599,
            token_unavailable_next: 0,
            expire_delta_tokens: false,
            delta_expiry: DeltaExpiry::default(),
            reorder_batch: false,
            delay_ms: 0,
        }
    }
}

/// A fault that replaces a Graph request's answer before it reaches its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GatewayFault {
    Throttle { retry_after: String },
    ServerError { status: u16, retry_after: String },
}

/// Faults that shape one paged response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PageFaults {
    pub truncate: bool,
    pub break_link: bool,
    pub loop_link: bool,
}

impl Faults {
    /// Takes the next throttle or server error, if one is due.
    pub(super) fn take_gateway_fault(&mut self) -> Option<GatewayFault> {
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            return Some(GatewayFault::Throttle {
                retry_after: self.retry_after.clone(),
            });
        }
        if self.server_error_next > 0 {
            self.server_error_next -= 1;
            return Some(GatewayFault::ServerError {
                status: self.server_error_status,
                retry_after: self.retry_after.clone(),
            });
        }
        None
    }

    /// Counts one paged response and says which page faults hit it.
    pub(super) fn take_page_faults(&mut self) -> PageFaults {
        PageFaults {
            truncate: count_down(&mut self.truncate_page),
            break_link: count_down(&mut self.break_next_link),
            loop_link: self.loop_next_link,
        }
    }

    /// Takes one token-endpoint outage, if one is due.
    pub(super) fn take_token_outage(&mut self) -> bool {
        if self.token_unavailable_next > 0 {
            self.token_unavailable_next -= 1;
            true
        } else {
            false
        }
    }
}

/// Steps an "Nth from now" countdown; true (and cleared) when this is the Nth.
fn count_down(slot: &mut Option<usize>) -> bool {
    match *slot {
        Some(n) if n <= 1 => {
            *slot = None;
            true
        }
        Some(n) => {
            *slot = Some(n - 1);
            false
        }
        None => false,
    }
}

/// What the simulator saw since it started (or since `reset_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests to the token endpoint, successful or not.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// HTTP requests to Graph (a `$batch` counts once here).
    pub graph_requests: u64,
    /// Sub-requests carried inside `$batch` requests.
    pub batch_subrequests: u64,
    /// 429 answers, including throttled batch sub-requests.
    pub throttled: u64,
    /// Injected 5xx answers, including batch sub-requests.
    pub server_errors: u64,
    /// 401 answers from Graph.
    pub unauthorized: u64,
    /// Requests by route, e.g. `GET /servicePrincipals/{id}/appRoleAssignedTo`; batch
    /// sub-requests count under their own route as well as under `POST /$batch`.
    pub by_route: BTreeMap<String, u64>,
}

impl Stats {
    pub(super) fn count_route(&mut self, route: &str) {
        *self.by_route.entry(route.to_owned()).or_default() += 1;
    }

    /// Requests seen for a route (0 when never called).
    pub fn route(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn countdowns_fire_once_on_the_nth() {
        let mut f = Faults {
            truncate_page: Some(2),
            break_next_link: Some(1),
            ..Faults::default()
        };
        assert_eq!(
            f.take_page_faults(),
            PageFaults {
                truncate: false,
                break_link: true,
                loop_link: false,
            }
        );
        assert_eq!(
            f.take_page_faults(),
            PageFaults {
                truncate: true,
                break_link: false,
                loop_link: false,
            }
        );
        assert_eq!(f.take_page_faults(), PageFaults::default());
    }

    #[test]
    fn throttling_comes_before_server_errors() {
        let mut f = Faults {
            throttle_next: 1,
            server_error_next: 1,
            ..Faults::default()
        };
        assert!(matches!(
            f.take_gateway_fault(),
            Some(GatewayFault::Throttle { .. })
        ));
        assert!(matches!(
            f.take_gateway_fault(),
            Some(GatewayFault::ServerError { status: 503, .. })
        ));
        assert_eq!(f.take_gateway_fault(), None);
    }
}
