//! Microsoft clouds: each national cloud has its own Graph root, login authority and `.default`
//! scope. Explicit URLs (a proxy, or the Graph simulator) override the cloud's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// Microsoft's global service.
    #[default]
    Global,
    /// Azure Government (GCC High).
    Usgov,
    /// Azure Government DoD.
    UsgovDod,
    /// Microsoft Azure operated by 21Vianet.
    China,
}

impl Cloud {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "global" => Some(Self::Global),
            "usgov" => Some(Self::Usgov),
            "usgov-dod" => Some(Self::UsgovDod),
            "china" => Some(Self::China),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Usgov => "usgov",
            Self::UsgovDod => "usgov-dod",
            Self::China => "china",
        }
    }

    /// The Graph service root, without the version segment.
    pub fn graph_root(self) -> &'static str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::Usgov => "https://graph.microsoft.us",
            Self::UsgovDod => "https://dod-graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The Microsoft Entra authority (login host).
    pub fn authority(self) -> &'static str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::Usgov | Self::UsgovDod => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
        }
    }
}

/// Where one integration talks to: Graph (with `/v1.0`), the token endpoint and the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub graph_v1: String,
    pub token_url: String,
    pub scope: String,
}

impl Endpoints {
    /// The cloud's endpoints, with optional explicit overrides (`graph_url` is a Graph root such as
    /// `http://127.0.0.1:9000`; `authority_url` a login host).
    pub fn new(
        cloud: Cloud,
        tenant_id: &str,
        graph_url: Option<&str>,
        authority_url: Option<&str>,
    ) -> Self {
        let graph_root = graph_url
            .unwrap_or(cloud.graph_root())
            .trim_end_matches('/');
        let graph_root = graph_root.strip_suffix("/v1.0").unwrap_or(graph_root);
        let authority = authority_url
            .unwrap_or(cloud.authority())
            .trim_end_matches('/');
        Self {
            graph_v1: format!("{graph_root}/v1.0"),
            token_url: format!("{authority}/{tenant_id}/oauth2/v2.0/token"),
            // The scope names the cloud's Graph resource even when a proxy or simulator serves it.
            scope: format!("{}/.default", cloud.graph_root()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_clouds_have_their_own_hosts_and_scope() {
        let e = Endpoints::new(Cloud::China, "t1", None, None);
        assert_eq!(e.graph_v1, "https://microsoftgraph.chinacloudapi.cn/v1.0");
        assert_eq!(
            e.token_url,
            "https://login.chinacloudapi.cn/t1/oauth2/v2.0/token"
        );
        assert_eq!(e.scope, "https://microsoftgraph.chinacloudapi.cn/.default");
        let e = Endpoints::new(Cloud::UsgovDod, "t1", None, None);
        assert_eq!(e.graph_v1, "https://dod-graph.microsoft.us/v1.0");
        assert_eq!(
            e.token_url,
            "https://login.microsoftonline.us/t1/oauth2/v2.0/token"
        );
    }

    #[test]
    fn explicit_urls_override_hosts() {
        let e = Endpoints::new(
            Cloud::Global,
            "t",
            Some("http://127.0.0.1:9/v1.0/"),
            Some("http://127.0.0.1:9/"),
        );
        assert_eq!(e.graph_v1, "http://127.0.0.1:9/v1.0");
        assert_eq!(e.token_url, "http://127.0.0.1:9/t/oauth2/v2.0/token");
        assert_eq!(e.scope, "https://graph.microsoft.com/.default");
        assert_eq!(Cloud::parse("USGOV-DOD"), Some(Cloud::UsgovDod));
        assert_eq!(Cloud::parse("mars"), None);
    }
}
