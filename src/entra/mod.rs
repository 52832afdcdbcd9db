//! Microsoft Entra ID and Microsoft Graph, seen from the pull sync: national clouds and their
//! endpoints, and access tokens by the client-credentials grant. Wire types stay in here.

pub mod auth;
pub mod cloud;
