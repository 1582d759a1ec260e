//! Publishing: the proxy's config is the file's with a pool `service:NAME`
//! per service holding its current members ([`Engine::effective`]), built
//! whole and swapped in by `Proxy::reload` on a blocking thread, one publish
//! at a time. Also the in-flight counters of the members published, kept
//! after they leave the pool so that their requests can be waited for.
//!
//! Must never hold an engine lock while the proxy builds a snapshot.

use std::time::Duration;

use proxy::BuildErrors;

use crate::Engine;
use crate::sets::members_of;

impl Engine {
    /// The config the proxy should run now: the file's, with a pool for
    /// every service holding its current members.
    pub fn effective(&self) -> config::Config {
        let mut cfg = self.inner.base.get();
        self.fill_discovered(&mut cfg);
        // A service a reload added is not routed to before it is ready.
        let withheld = self.inner.withheld.get();
        if !withheld.is_empty() {
            cfg.routes = cfg
                .routes
                .iter()
                .filter(|r| match &r.upstream {
                    config::Upstream::Service(name) => !withheld.contains(name),
                    config::Upstream::Pool(_) => true,
                })
                .cloned()
                .collect();
        }
        let members: Vec<(String, Vec<config::Member>)> = self.inner.services.with(|services| {
            cfg.services
                .keys()
                .map(|name| {
                    let current = services.get(name).map(members_of).unwrap_or_default();
                    (name.clone(), current)
                })
                .collect()
        });
        for (name, current) in members {
            if let Some(service) = cfg.services.get(&name) {
                let pool = service.pool(current);
                cfg.pools.insert(service.pool_name(), pool);
            }
        }
        cfg
    }

    /// Publishes the current state to the proxy, then to the registrar (if
    /// any), and waits for the registrar's confirmation: a member that left
    /// the pool has then left the registry too.
    pub(crate) async fn publish(&self) -> Result<(), BuildErrors> {
        let confirmation = self.publish_to_proxy().await?;
        if let Some(confirmation) = confirmation {
            confirmation.await;
        }
        Ok(())
    }

    /// Publishes to the proxy, and tells the registrar in the same order
    /// (under the same lock); returns the registrar's confirmation.
    pub(crate) async fn publish_to_proxy(
        &self,
    ) -> Result<Option<crate::Confirmation>, BuildErrors> {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let Some(proxy) = self.proxy() else {
            return Ok(None);
        };
        let cfg = self.effective();
        let published = proxy.clone();
        let result = tokio::task::spawn_blocking(move || proxy.reload(&cfg).map(|()| cfg))
            .await
            .unwrap_or_else(|e| Err(BuildErrors(vec![format!("could not publish: {e}")])))?;
        // Take each new member's counter while the proxy knows it.
        self.inner.counters.with(|counters| {
            for (name, service) in &result.services {
                let Some(pool) = result.pools.get(&service.pool_name()) else {
                    continue;
                };
                for m in &pool.members {
                    let key = (name.clone(), m.address.authority.clone());
                    let Some(c) =
                        published.in_flight_counter(&service.pool_name(), &m.address.authority)
                    else {
                        continue;
                    };
                    let known = counters.entry(key).or_default();
                    if !known.iter().any(|k| k.same(&c)) {
                        known.push(c);
                    }
                }
            }
        });
        Ok(self.inner.registrar.get().map(|r| r.publish(self.routed())))
    }

    /// [`Engine::publish`], logging a failure instead of returning it.
    pub(crate) async fn publish_logged(&self, service: &str) {
        if let Err(errors) = self.publish().await {
            for e in &errors.0 {
                tracing::error!(service, "could not publish the pool: {e}");
            }
        }
    }

    /// Requests in flight to one member of a service's pool, also after it
    /// left the published pool (until [`Engine::forget`]).
    pub(crate) fn in_flight(&self, service: &str, member: &str) -> Vec<proxy::InFlight> {
        let key = (service.to_owned(), member.to_owned());
        let mut all = self
            .inner
            .counters
            .with(|counters| counters.get(&key).cloned().unwrap_or_default());
        if let Some(c) = self
            .proxy()
            .and_then(|p| p.in_flight_counter(&format!("service:{service}"), member))
            && !all.iter().any(|known| known.same(&c))
        {
            all.push(c);
        }
        all
    }

    /// Drops a drained member's counter.
    pub(crate) fn forget(&self, service: &str, member: &str) {
        self.inner
            .counters
            .with(|counters| counters.remove(&(service.to_owned(), member.to_owned())));
    }
}

/// Waits until every one of `counters` reaches zero (woken as requests
/// end, never polling), or until `limit` passes; whether they did.
pub(crate) async fn wait_idle(counters: Vec<proxy::InFlight>, limit: Duration) -> bool {
    let idle = futures_util::future::join_all(counters.iter().map(proxy::InFlight::idle));
    // Past the limit the instance is stopped anyway (its drain timeout).
    tokio::time::timeout(limit, idle).await.is_ok()
}
