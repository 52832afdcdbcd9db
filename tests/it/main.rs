//! The integration tests: one binary, real SQLite files and real PostgreSQL schemas, a real
//! HTTP server on loopback.

mod proc_support;
#[macro_use]
mod support;

mod cli;
mod cli_sync;
mod deletions;
mod deprovision;
mod entra_tutorial;
mod metrics;
mod migration;
mod outbox_delivery;
mod ownership;
mod ownership_support;
mod replicas;
mod scim_groups;
mod scim_protocol;
mod scim_users;
mod store;
mod sync_apply;
mod sync_graph;
mod sync_graph_support;
mod sync_random;
