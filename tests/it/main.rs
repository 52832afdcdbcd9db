//! The integration tests: one binary, real SQLite files and real PostgreSQL schemas, a real
//! HTTP server on loopback.

mod support;

mod cli;
mod deprovision;
mod entra_tutorial;
mod scim_groups;
mod scim_protocol;
mod scim_users;
mod store;
mod sync_apply;
mod sync_graph;
mod sync_graph_support;
