//! Microsoft Entra ID and Microsoft Graph, seen from the pull sync: national clouds and their
//! endpoints, access tokens by the client-credentials grant, the retry policy every Graph request
//! goes through, delta reads for incremental cycles, and a Graph simulator for tests and the demo. Wire types stay in here.

pub mod auth;
pub mod cloud;
pub mod delta;
mod dto;
pub mod graph;
mod read_error;
pub mod retry;
pub mod simulator;
