//! Microsoft Graph wire types the reader decodes: collection pages, app role assignments, users,
//! groups and Graph's error JSON. Private to `entra`; the rest of the code sees
//! [`EntraUser`](crate::domain::entra::EntraUser). Unknown properties are ignored, as Graph adds
//! properties over time.

use serde::Deserialize;
use serde_json::Value;

/// One page of a collection. `value` is optional here so that a page without it is *detected*
/// (and aborts the read) rather than decoded as empty.
#[derive(Debug, Deserialize)]
pub(super) struct Page<T> {
    pub value: Option<Vec<T>>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    /// The last page of a delta listing carries the link of the next round.
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// `GET /servicePrincipals/{id}/appRoleAssignedTo`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AppRoleAssignment {
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub principal_display_name: Option<String>,
}

/// A user, as `$select`ed by the reader.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct User {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: Option<String>,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: Option<String>,
    pub mail_nickname: Option<String>,
    pub account_enabled: Option<bool>,
}

/// A group from `memberOf`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Group {
    pub id: String,
    pub display_name: Option<String>,
}

/// Graph's error body: `{"error": {"code", "message", "innerError": {"request-id", "date"}}}`.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorDetail {
    pub code: Option<String>,
    pub message: Option<String>,
    #[serde(rename = "innerError")]
    pub inner_error: Option<Value>,
}

impl ErrorDetail {
    pub fn request_id(&self) -> Option<String> {
        self.inner_error
            .as_ref()
            .and_then(|i| i.get("request-id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_users_and_errors_decode_from_graph_json() {
        let page: Page<User> = serde_json::from_str(
            r##"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users",
                "@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=X",
                "value":[{"@odata.type":"#microsoft.graph.user","id":"6e7b768e-07e2-4810-8459-485f84f8f204",
                "userPrincipalName":"AdeleV@contoso.com","givenName":"Adele","surname":null,
                "accountEnabled":true,"businessPhones":[]}]}"##,
        )
        .unwrap();
        let users = page.value.unwrap();
        assert_eq!(
            users[0].user_principal_name.as_deref(),
            Some("AdeleV@contoso.com")
        );
        assert_eq!(users[0].surname, None);
        assert_eq!(users[0].account_enabled, Some(true));
        assert!(page.next_link.unwrap().contains("$skiptoken"));

        let truncated: Page<User> = serde_json::from_str(r#"{"@odata.context":"x"}"#).unwrap();
        assert!(truncated.value.is_none());

        let err: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":"TooManyRequests","message":"Too many requests.",
                "innerError":{"date":"2026-11-30T03:00:00","request-id":"abc"}}}"#,
        )
        .unwrap();
        assert_eq!(err.error.code.as_deref(), Some("TooManyRequests"));
        assert_eq!(err.error.request_id().as_deref(), Some("abc"));

        let a: Page<AppRoleAssignment> = serde_json::from_str(
            r#"{"value":[{"id":"x","principalId":"p1","principalType":"Group","principalDisplayName":"Sales","appRoleId":"00000000-0000-0000-0000-000000000000"}]}"#,
        )
        .unwrap();
        assert_eq!(a.value.unwrap()[0].principal_type.as_deref(), Some("Group"));
    }
}
