//! HTTPS to upstreams (`[pool.NAME.tls]`, `[service.NAME.tls]`): the rustls
//! client configuration and the name each member's certificate is checked
//! against. Owns trust roots and names; never opens a connection.

use std::sync::Arc;

use config::UpstreamTls;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use crate::cert;
use crate::error::{TlsError, TlsErrorKind};

/// The client configuration for one upstream: trusts the CAs of
/// `ca_bundle` if set, else the Mozilla roots (webpki-roots, compiled in:
/// the system's store is not read), offers HTTP/1.1 by ALPN, and resumes
/// sessions (rustls's in-memory cache). Build it once per pool and share
/// it: the session cache lives in it.
pub fn client_config(cfg: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &cfg.ca_bundle {
        Some(path) => {
            let pem = cert::read(path)?;
            for ca in cert::certificates(path, &pem)? {
                roots.add(ca).map_err(|e| {
                    TlsError::from(TlsErrorKind::BadCa {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::from(TlsErrorKind::Config(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to send as SNI and to verify a member's certificate against:
/// `server_name` if configured, else the member's host (a DNS name or an
/// IP address, IPv6 with or without brackets).
pub fn server_name(cfg: &UpstreamTls, member_host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = cfg.server_name.as_deref().unwrap_or(member_host);
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|_| TlsErrorKind::ServerName(host.to_owned()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(server_name: Option<&str>) -> UpstreamTls {
        UpstreamTls {
            ca_bundle: None,
            server_name: server_name.map(str::to_owned),
        }
    }

    #[test]
    fn names_come_from_the_config_or_the_member() {
        let name = server_name(&upstream(None), "app.internal").unwrap();
        assert_eq!(name.to_str(), "app.internal");
        let name = server_name(&upstream(Some("api.example.com")), "10.0.0.7").unwrap();
        assert_eq!(name.to_str(), "api.example.com");
        assert!(matches!(
            server_name(&upstream(None), "10.0.0.7").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&upstream(None), "[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        let e = server_name(&upstream(None), "not a name").unwrap_err();
        assert!(e.to_string().contains("\"not a name\""), "{e}");
    }

    #[test]
    fn without_a_bundle_the_mozilla_roots_are_trusted() {
        let config = client_config(&upstream(None)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
