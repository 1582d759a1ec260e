//! Probing a member the way the proxy does, for whoever else needs to (the
//! deploy engine's readiness, smoke and target checks): the active check a
//! `[*.health]` section describes, and the TLS handshake a `[*.tls]` section
//! describes (with its SNI name, its trusted CAs and HTTP/1.1 by ALPN).
//!
//! Conversions only: it must never open a connection or start a task.

use balance::ActiveCheck;

use crate::upstream_tls::MemberTls;

/// The active check `h` describes, requesting `path` (the check's own
/// `h.path`, or a smoke check's).
pub fn active_check(h: &config::HealthCheck, path: &str) -> ActiveCheck {
    ActiveCheck {
        path: path.to_owned(),
        host: None,
        interval: h.interval,
        timeout: h.timeout,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        expect: h.expect_status.first..=h.expect_status.last,
    }
}

/// The TLS handshake with a member on `host` under `settings`: the one the
/// proxy's own active checks use, with a client config of its own.
pub fn tls_handshake(
    settings: &config::UpstreamTls,
    host: &str,
) -> Result<balance::Handshake, tls::TlsError> {
    let config = tls::client_config(settings)?;
    let name = tls::server_name(settings, host)?;
    Ok(MemberTls::new(config, name).probe_handshake())
}
