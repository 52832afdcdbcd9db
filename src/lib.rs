//! essentry-sync keeps an essentry user directory in step with Microsoft Entra ID.
//!
//! Layout:
//! - [`domain`]: validated ids (userName keys in NFC, case-folded), neutral records (users with
//!   the integration that manages them), the provisioning operations (create, update,
//!   deactivate/delete) with their side effects and ownership checks, a complete read of Entra
//!   (`Snapshot`), the deletion threshold and staged deletions, and the bounds on what the
//!   provisioning log keeps of a value; no I/O crates.
//! - [`entra`]: Microsoft Entra ID and Graph: clouds, access tokens (client credentials), the
//!   retry policy, the Graph reader (graph-rs-sdk), its delta reads (`users/delta`,
//!   `groups/delta`) and a Graph simulator for tests and `demo`.
//! - [`sync`]: the Graph pull sync: mapping, the pure planner, the executor, cycles (full reads,
//!   or incremental ones from Graph's delta links with a full reconcile on a schedule), the
//!   deletion review (staged deletions approved or rejected per user), on-demand provisioning of
//!   one user, and the schedule that runs cycles inside `serve`.
//! - [`notify`]: delivery of the outbox (guest emails): templates, SMTP or `.eml` files, and
//!   the worker `serve` runs (leased claims, backoff, dead messages).
//! - [`store`]: sqlx storage, SQLite (embedded default) and PostgreSQL, one SQL source for both
//!   (including each Graph integration's delta links and scope rows); group commit (concurrent
//!   writes share a transaction, a savepoint each), combined user writes (one SQLite round trip
//!   each), background WAL checkpoints, indexed point reads on the caller's thread (SQLite,
//!   through rusqlite), and the integrations' epoch that token caches are checked against.
//! - [`scim`]: the SCIM 2.0 push endpoint (RFC 7643/7644): router, bearer-token auth with a
//!   cache of token lookups, filter, PATCH, errors, the write skeleton with the request-cost
//!   limits, and user bodies serialized straight from their records (`user_body`).
//! - [`integrations`]: creating, listing (masked or revealed) and deleting integrations.
//! - [`secrets`]: integration tokens (hashed for verification, sealed for the reveal) and keys.
//! - [`config`]: settings from `config/essentry-sync.toml` and the environment.
//! - [`http`]: application state, the server (timeouts, connection limit, panics answered as
//!   SCIM 500s) and health.
//! - [`service`]: what `serve` runs — the HTTP server, the sync scheduler and the outbox
//!   worker — started by one builder that the CLI and the tests share, and stopped in order.
//! - [`supervise`]: restarts a background task that panicked (with backoff) and the readiness
//!   registry `/readyz` reads.
//! - [`metrics`]: Prometheus metrics (`/metrics`): SCIM requests, sync cycles, directory
//!   changes, Graph and token requests, the outbox.
//! - [`admin`]: the admin API (`/admin/v1`): on-demand provisioning, cycles, status, the
//!   deletion review.
//! - [`admin_tokens`]: the admin API's tokens: create (optional expiry and account scope), list,
//!   revoke, and the check of a presented token (recording its last use).
//! - [`console`]: the operator web console (`/admin/`): server-rendered pages with sessions,
//!   CSRF, Privacy Mode, cycles with live progress, provision on demand, deletion review, users,
//!   provisioning log, outbox, audit trail.
//! - [`cli`]: the operator commands behind the `essentry-sync` binary.
//! - [`memory`]: the allocator's side of peak memory (mimalloc returns freed pages at once and
//!   between a sync cycle's phases); the crate's only `unsafe` code.

pub mod admin;
pub mod admin_tokens;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod entra;
pub mod http;
pub mod integrations;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod scim;
pub mod secrets;
pub mod service;
pub mod store;
pub mod supervise;
pub mod sync;
