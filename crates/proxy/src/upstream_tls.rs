//! HTTPS to upstream members (`[pool.NAME.tls]`, a service's `tls`): each
//! pool's rustls client config, built by the `tls` crate and kept across
//! snapshot builds while its settings and the content of its CA bundle are
//! unchanged (so a reload keeps TLS session resumption and pooled
//! connections, and a rotated CA takes effect at the next reload), and the
//! handshake of one member, for requests and for active checks.
//!
//! Owns no sockets (`upstream` opens them) and parses no certificate (the
//! `tls` crate does); a config whose TLS settings cannot be built is
//! refused whole, before anything changes.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// How to reach one member over TLS: its pool's client config and the name
/// sent as SNI and verified in the member's certificate.
#[derive(Clone)]
pub(crate) struct MemberTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl PartialEq for MemberTls {
    /// The same config object (a rebuilt one may trust other CAs) and the
    /// same name.
    fn eq(&self, other: &MemberTls) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.name == other.name
    }
}

impl std::fmt::Debug for MemberTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MemberTls {
    pub(crate) fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> MemberTls {
        MemberTls { config, name }
    }

    /// The TLS handshake on a new connection to the member; an invalid or
    /// untrusted certificate is an error here.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), tcp)
            .await
    }

    /// The same handshake for the member's active checks.
    pub(crate) fn probe_handshake(&self) -> balance::Handshake {
        let tls = self.clone();
        Arc::new(move |tcp| {
            let tls = tls.clone();
            Box::pin(async move {
                let stream = tls.handshake(tcp).await?;
                Ok(Box::new(stream) as Box<dyn balance::ProbeIo>)
            })
        })
    }
}

/// The TLS settings of every pool of one config, ready for the build.
pub(crate) struct Prepared {
    /// Per pool in `Config::pools` order: `None` for plain HTTP, else one
    /// entry per member in `Pool::members` order.
    pub pools: Vec<Option<Vec<MemberTls>>>,
    /// The cache to keep once the snapshot is published.
    pub cache: ClientConfigs,
}

/// Client configs by settings, kept across snapshot builds.
#[derive(Default)]
pub(crate) struct ClientConfigs(Vec<Cached>);

struct Cached {
    settings: config::UpstreamTls,
    /// The CA bundle file's content when the config was built.
    bundle: Option<Vec<u8>>,
    config: Arc<ClientConfig>,
}

impl ClientConfigs {
    /// Builds (or reuses) the client config of every pool with TLS and the
    /// name of each of its members. Changes nothing: the caller keeps
    /// [`Prepared::cache`] once the whole build has succeeded. Every error,
    /// as "pool NAME: …".
    pub(crate) fn prepare(&self, cfg: &config::Config) -> Result<Prepared, Vec<String>> {
        let mut errors = Vec::new();
        let mut cache: Vec<Cached> = Vec::new();
        let mut pools = Vec::with_capacity(cfg.pools.len());
        for (name, pool) in &cfg.pools {
            let Some(settings) = &pool.forward.tls else {
                pools.push(None);
                continue;
            };
            let config = match self.config(settings, &mut cache) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("pool {name}: {e}"));
                    pools.push(None);
                    continue;
                }
            };
            let mut members = Vec::with_capacity(pool.members.len());
            for m in &pool.members {
                match tls::server_name(settings, &m.address.host) {
                    Ok(name) => members.push(MemberTls {
                        config: config.clone(),
                        name,
                    }),
                    Err(e) => {
                        errors.push(format!("pool {name}: member {}: {e}", m.address.authority))
                    }
                }
            }
            pools.push(Some(members));
        }
        if errors.is_empty() {
            Ok(Prepared {
                pools,
                cache: ClientConfigs(cache),
            })
        } else {
            Err(errors)
        }
    }

    /// The config for `settings`: one already in `next`, else a cached one
    /// whose CA bundle has the same content (a few kilobytes read per
    /// reload, against parsing certificates), else a new one; recorded in
    /// `next` either way.
    fn config(
        &self,
        settings: &config::UpstreamTls,
        next: &mut Vec<Cached>,
    ) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = next.iter().find(|c| c.settings == *settings) {
            return Ok(c.config.clone());
        }
        // Unreadable: no reuse, and `tls` says what is wrong with it.
        let bundle = settings
            .ca_bundle
            .as_ref()
            .and_then(|path| std::fs::read(path).ok());
        let readable = settings.ca_bundle.is_none() || bundle.is_some();
        let cached = self
            .0
            .iter()
            .find(|c| readable && c.settings == *settings && c.bundle == bundle);
        let config = match cached {
            Some(c) => c.config.clone(),
            // Offering HTTP/1.1 only by ALPN (`tls` sets it): the
            // connection is then driven by the same client as a plain one.
            None => tls::client_config(settings).map_err(|e| e.to_string())?,
        };
        next.push(Cached {
            settings: settings.clone(),
            bundle,
            config: config.clone(),
        });
        Ok(config)
    }
}
