//! The integration tests: one binary, real SQLite files and real PostgreSQL schemas, a real
//! HTTP server on loopback.

mod proc_support;
#[macro_use]
mod support;

mod admin_tokens;
mod cli;
mod cli_admin;
mod cli_sync;
mod console;
mod console_browser;
mod console_support;
mod deletions;
mod delta_cycles;
mod deprovision;
mod entra_tutorial;
mod fuzz;
mod graph_loops;
mod hostile_scim;
mod input_hygiene;
mod listener;
mod metrics;
mod migration;
mod outbox_delivery;
mod outbox_poison;
mod ownership;
mod ownership_support;
mod replicas;
mod scim_concurrency;
mod scim_groups;
mod scim_interop;
mod scim_protocol;
mod scim_users;
mod service_wiring;
mod store;
mod sync_apply;
mod sync_graph;
mod sync_graph_support;
mod sync_random;
