//! SCIM errors (RFC 7644 §3.12): one type that every handler returns, rendered as the SCIM Error
//! schema with the right HTTP status and `scimType`. Typed errors from the layers below map here
//! in one place, so handlers stay thin.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::{DirectoryError, StoreError};

use super::filter::FilterError;
use super::patch::PatchError;

pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidValue", detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request("invalidSyntax", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, None, detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "internal error; the request was not applied (see the service log)",
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".to_owned(), json!(t));
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"essentry-scim\""),
            );
        }
        response
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::uniqueness(format!("{what} already exists")),
            StoreError::Database(source) => {
                tracing::error!(error = %source, "database error while serving a SCIM request");
                Self::internal()
            }
        }
    }
}

impl From<DirectoryError> for ScimError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::UserNameTaken(_) => Self::uniqueness(e.to_string()),
            DirectoryError::UserNotFound(_) => Self::not_found(e.to_string()),
            DirectoryError::VersionMismatch { .. } => {
                Self::new(StatusCode::PRECONDITION_FAILED, None, e.to_string())
            }
            DirectoryError::InactiveCreate => Self::invalid_value(e.to_string()),
            // RFC 7644 defines no scimType for a 409 other than `uniqueness`, which this is not:
            // the request conflicts with the user's current state (managed by pull sync).
            DirectoryError::ManagedByGraph { .. } => {
                Self::new(StatusCode::CONFLICT, None, e.to_string())
            }
            DirectoryError::Store(s) => s.into(),
        }
    }
}

impl From<FilterError> for ScimError {
    fn from(e: FilterError) -> Self {
        Self::bad_request("invalidFilter", format!("invalid filter: {e}"))
    }
}

impl From<crate::store::ListError> for ScimError {
    fn from(e: crate::store::ListError) -> Self {
        match e {
            crate::store::ListError::Unsupported(why) => Self::bad_request("invalidFilter", why),
            crate::store::ListError::Store(e) => e.into(),
        }
    }
}

impl From<PatchError> for ScimError {
    fn from(e: PatchError) -> Self {
        Self::bad_request(e.kind.scim_type(), e.detail)
    }
}
