//! Discovery endpoints (RFC 7644 §4, RFC 7643 §5–7): what this service provider supports, the
//! resource types it serves, and their schemas — generated from the same attribute tables that
//! PATCH uses, so what we publish is what we enforce.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::http::AppState;

use super::error::ScimError;
use super::patch::{AttrDef, AttrKind, GROUP_SCHEMA, Mutability, ResourceSchema, USER_SCHEMA};
use super::request::Caller;
use super::resource::{ENTERPRISE_URN, GROUP_URN, LIST_URN, USER_URN};
use super::scim_response;

const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn kind_name(k: AttrKind) -> &'static str {
    match k {
        AttrKind::String => "string",
        AttrKind::Boolean => "boolean",
        AttrKind::Complex => "complex",
        AttrKind::Reference => "reference",
        AttrKind::DateTime => "dateTime",
        AttrKind::Integer => "integer",
    }
}

fn mutability_name(m: Mutability) -> &'static str {
    match m {
        Mutability::ReadOnly => "readOnly",
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    }
}

fn description(name: &str) -> String {
    match name {
        "userName" => "The user's email address: their essentry login and unique identifier. Compared case-insensitively.".to_owned(),
        "active" => "Whether the account exists. Setting it to false deletes the essentry account, cancels the user's upcoming appointments and notifies their guests.".to_owned(),
        "emails" => "Stored and returned, but never used as the login: userName is.".to_owned(),
        "members" => "Users in the group.".to_owned(),
        "displayName" => "A name for display; unique among groups.".to_owned(),
        other => format!("The {other} attribute."),
    }
}

fn reference_types(name: &str) -> Value {
    match name {
        "members" | "manager" => json!(["User"]),
        "groups" => json!(["Group"]),
        "profileUrl" | "photos" => json!(["external"]),
        _ => json!(["external"]),
    }
}

/// RFC 7643 §4.1.2 / §8.7.1 canonical `type` values of multi-valued attributes.
fn canonical_types(attribute: &str) -> Option<&'static [&'static str]> {
    Some(match attribute {
        "emails" | "addresses" => &["work", "home", "other"],
        "phoneNumbers" => &["work", "home", "mobile", "fax", "pager", "other"],
        "ims" => &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        "photos" => &["photo", "thumbnail"],
        // Groups hold users only.
        "members" => &["User"],
        _ => return None,
    })
}

fn attribute_json(def: &AttrDef, resource: &str) -> Value {
    let returned = match (def.name, def.mutability) {
        ("id", _) => "always",
        (_, Mutability::WriteOnly) => "never",
        _ => "default",
    };
    let uniqueness = match (resource, def.name) {
        (_, "id") | ("User", "userName") | ("Group", "displayName") => "server",
        _ => "none",
    };
    let mut a = json!({
        "name": def.name,
        "type": kind_name(def.kind),
        "multiValued": def.multi_valued,
        "description": description(def.name),
        "required": def.required,
        "caseExact": def.case_exact,
        "mutability": mutability_name(def.mutability),
        "returned": returned,
        "uniqueness": uniqueness,
    });
    if let Some(obj) = a.as_object_mut() {
        if def.kind == AttrKind::Reference {
            obj.insert("referenceTypes".to_owned(), reference_types(def.name));
        }
        if def.kind == AttrKind::Complex {
            let subs: Vec<Value> = def
                .sub_attributes
                .iter()
                .map(|(name, kind)| {
                    let mut s = json!({
                        "name": name,
                        "type": kind_name(*kind),
                        "multiValued": false,
                        "description": format!("The {name} sub-attribute of {}.", def.name),
                        "required": false,
                        "caseExact": *name == "value" && def.name == "members",
                        "mutability": if def.mutability == Mutability::ReadOnly
                            || (def.name == "members" && *name == "display")
                        {
                            "readOnly"
                        } else {
                            "readWrite"
                        },
                        "returned": "default",
                        "uniqueness": "none",
                    });
                    if *name == "type"
                        && let (Some(o), Some(values)) =
                            (s.as_object_mut(), canonical_types(def.name))
                    {
                        o.insert("canonicalValues".to_owned(), json!(values));
                    }
                    if *kind == AttrKind::Reference
                        && let Some(o) = s.as_object_mut()
                    {
                        o.insert("referenceTypes".to_owned(), reference_types(def.name));
                    }
                    s
                })
                .collect();
            obj.insert("subAttributes".to_owned(), Value::Array(subs));
        }
    }
    a
}

/// Attributes of a schema as published: `id`, `meta` and `externalId` are common attributes
/// (RFC 7643 §3.1), not part of a schema's attribute list.
fn attributes_json(defs: &[AttrDef], resource: &str) -> Vec<Value> {
    defs.iter()
        .filter(|d| !matches!(d.name, "id" | "meta" | "externalId"))
        .map(|d| attribute_json(d, resource))
        .collect()
}

fn schema_json(
    id: &str,
    name: &str,
    description: &str,
    attributes: Vec<Value>,
    base: &str,
) -> Value {
    json!({
        "schemas": [SCHEMA_URN],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

fn all_schemas(base: &str) -> Vec<Value> {
    let user: &ResourceSchema = &USER_SCHEMA;
    let enterprise = user
        .extension_attributes
        .iter()
        .find(|(urn, _)| *urn == ENTERPRISE_URN)
        .map(|(_, defs)| *defs)
        .unwrap_or(&[]);
    vec![
        schema_json(
            USER_URN,
            "User",
            "User Account",
            attributes_json(user.attributes, "User"),
            base,
        ),
        schema_json(
            GROUP_URN,
            "Group",
            "Group",
            attributes_json(GROUP_SCHEMA.attributes, "Group"),
            base,
        ),
        schema_json(
            ENTERPRISE_URN,
            "EnterpriseUser",
            "Enterprise User",
            attributes_json(enterprise, "User"),
            base,
        ),
    ]
}

fn resource_types_json(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_URN,
            "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_URN,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_URN],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub async fn service_provider_config(State(state): State<AppState>, _caller: Caller) -> Response {
    let body = json!({
        "schemas": [SPC_URN],
        "documentationUri": "https://github.com/essentry/essentry-sync#connect-microsoft-entra-id",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": state.settings.server.max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The integration token from `essentry-sync integration create-scim`, sent as Authorization: Bearer <token>.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", state.scim_base),
        },
    });
    scim_response(StatusCode::OK, &body, None, None)
}

pub async fn resource_types(State(state): State<AppState>, _caller: Caller) -> Response {
    scim_response(
        StatusCode::OK,
        &list(resource_types_json(&state.scim_base)),
        None,
        None,
    )
}

pub async fn resource_type(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    resource_types_json(&state.scim_base)
        .into_iter()
        .find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(&name))
        })
        .map(|r| scim_response(StatusCode::OK, &r, None, None))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {name:?}")))
}

pub async fn schemas(State(state): State<AppState>, _caller: Caller) -> Response {
    scim_response(
        StatusCode::OK,
        &list(all_schemas(&state.scim_base)),
        None,
        None,
    )
}

pub async fn schema(
    State(state): State<AppState>,
    _caller: Caller,
    Path(urn): Path<String>,
) -> Result<Response, ScimError> {
    all_schemas(&state.scim_base)
        .into_iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(&urn))
        })
        .map(|s| scim_response(StatusCode::OK, &s, None, None))
        .ok_or_else(|| ScimError::not_found(format!("no schema {urn:?}")))
}
