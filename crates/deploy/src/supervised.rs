//! A supervised set as a `supervisor::Group`: a port per instance, the
//! command rendered with `{port}` and `{version}`, readiness by the
//! service's health check (or `READY=1` without one), membership of the set
//! following the group's events, and the stop hook that takes an instance
//! out of the pool and waits for its requests before SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use supervisor::{
    Backoff, Bounds, CommandSource, CommandSpec, Event, Group, GroupConfig, InstanceInfo, Probe,
    Readiness, Sockets,
};
use tokio::sync::broadcast::error::RecvError;

use crate::Engine;
use crate::sets::SetPhase;

pub(crate) fn start(
    engine: Engine,
    service: &config::Service,
    s: &config::Supervised,
    set: u64,
    adopted: Vec<supervisor::Adopted>,
) -> std::io::Result<Group> {
    let readiness = match &service.health {
        Some(h) => Readiness::Probe(health_probe(h, probe_handshake(service, "127.0.0.1"))),
        None => Readiness::Notify,
    };
    let name = service.name.clone();
    let (ready_engine, ready_name) = (engine.clone(), service.name.clone());
    let hook_engine = engine.clone();
    let drain_timeout = service.drain_timeout;
    let ip = engine.inner.instance_ip;
    let (group, events, refused) = Group::adopt(
        GroupConfig {
            command: CommandSource::PerInstance(command_fn(&engine, s.clone())),
            sockets: Sockets::PerInstance {
                ip,
                pass_socket: s.socket == config::SocketMode::Inherit,
                name: "http".into(),
            },
            bounds: Bounds {
                instances: s.instances as usize,
                max_surge: service.rolling.max_surge as usize,
                max_unavailable: service.rolling.max_unavailable as usize,
            },
            readiness,
            ready_timeout: service.ready_timeout,
            drain_timeout,
            backoff: Backoff::default(),
            restart: match s.restart {
                config::Restart::Always => supervisor::Restart::Always,
                config::Restart::OnFailure => supervisor::Restart::OnFailure,
                config::Restart::Never => supervisor::Restart::Never,
            },
            after_ready: Some(Arc::new(move |info: InstanceInfo| {
                let engine = ready_engine.clone();
                let name = ready_name.clone();
                Box::pin(async move { join(&engine, &name, set, info).await })
            })),
            before_stop: Some(Arc::new(move |info: InstanceInfo| {
                let engine = hook_engine.clone();
                let name = name.clone();
                Box::pin(async move { take_out(&engine, &name, set, info, drain_timeout).await })
            })),
        },
        adopted,
    )?;
    for e in refused {
        tracing::warn!(service = %service.name, error = %e, "instance not adopted; a new one takes its place");
    }
    tokio::spawn(follow(engine, service.name.clone(), set, events));
    Ok(group)
}

/// How long a handed-over instance of a service the config no longer has
/// may take to exit after SIGTERM (its own `drain_timeout` went with the
/// old config): the default `drain_timeout`.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// Handed-over instances nobody runs any more: SIGTERM to each that is
/// still the recorded process, SIGKILL to it and its process group if it
/// is still running `grace` later (its service's `drain_timeout`, or
/// [`ORPHAN_GRACE`]). Each is stopped on a task of its own.
pub(crate) fn stop_orphans(instances: Vec<supervisor::Adopted>, grace: Duration) {
    for a in instances {
        tokio::spawn(async move {
            match supervisor::stop(&a, grace).await {
                Ok(killed) => tracing::info!(pid = a.pid, killed, "handed-over instance stopped"),
                Err(e) => {
                    tracing::info!(pid = a.pid, error = %e, "handed-over instance not stopped")
                }
            }
        });
    }
}

/// Renders the command of each instance from the service's templates, and
/// records which version each instance runs (for the registry).
pub(crate) fn command_fn(engine: &Engine, s: config::Supervised) -> supervisor::CommandFn {
    let engine = engine.clone();
    Arc::new(move |info: &InstanceInfo| {
        if let Some(addr) = info.addr {
            let version = (info.instance, s.version.to_string());
            engine.inner.versions.with(|v| v.insert(addr, version));
        }
        let port = info.addr.map_or(0, |a| a.port());
        let argv: Vec<String> = s
            .command
            .iter()
            .map(|t| t.render(port, &s.version))
            .collect();
        let mut spec = CommandSpec::new(argv)?;
        for (key, value) in &s.env {
            spec = spec.env(key, value.render(port, &s.version));
        }
        if let Some(cwd) = &s.cwd {
            spec = spec.current_dir(cwd.render(port, &s.version));
        }
        Ok(spec)
    })
}

fn health_probe(h: &config::HealthCheck, handshake: Option<balance::Handshake>) -> Probe {
    let check = Arc::new(proxy::active_check(h, &h.path));
    Probe {
        check: Arc::new(move |addr| {
            let (check, handshake) = (check.clone(), handshake.clone());
            Box::pin(async move {
                match balance::probe_over(&addr.to_string(), &check, handshake.as_ref()).await {
                    Ok(status) => check.expect.contains(&status),
                    Err(_) => false,
                }
            })
        }),
        interval: h.start_interval,
        successes: h.healthy_threshold,
    }
}

/// Keeps the set's members in step with its group: instances that exit
/// (crashed, or stopped) leave (ready ones joined in `join`, before the
/// group announced them); the first generation's outcome is the set's
/// phase. Waits for nothing but the pool's publish.
async fn follow(
    engine: Engine,
    service: String,
    set: u64,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    let mut addrs = std::collections::HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(%service, missed = n, "missed group events");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        // What a baton restarted after a crash finds: recorded beside the
        // events, never before them (the file is synced to disk, which can
        // take long on a busy machine, and the set's phase is what a deploy
        // waits for).
        if matches!(
            event,
            Event::Spawned { .. } | Event::Ready { .. } | Event::Exited { .. }
        ) {
            engine.record_instances_soon();
        }
        match event {
            Event::Ready {
                instance,
                addr: Some(addr),
                ..
            } => {
                addrs.insert(instance, addr);
            }
            Event::Exited { instance, .. } => {
                if let Some(addr) = addrs.remove(&instance) {
                    engine.inner.versions.with(|v| {
                        if v.get(&addr).is_some_and(|(i, _)| *i == instance) {
                            v.remove(&addr);
                        }
                    });
                    if engine.remove_member(&service, set, &member(addr)) {
                        engine.publish_logged(&service).await;
                    }
                    engine.forget(&service, &addr.to_string());
                }
            }
            Event::RolloutComplete { generation: 1 } => {
                engine.with_set(&service, set, |s| s.phase.send_replace(SetPhase::Ready));
            }
            Event::RolloutFailed {
                generation: 1,
                reason,
            } => {
                engine.with_set(&service, set, |s| {
                    s.phase.send_replace(SetPhase::Failed(reason))
                });
            }
            _ => {}
        }
    }
}

/// The ready hook: join the pool. The group lets the plan stop the
/// instance this one replaces only after it returns, so the pool has the
/// new member before the old one leaves — with several threads, a task that
/// heard of the readiness later could otherwise join it only after the old
/// one had left, leaving the pool empty meanwhile.
async fn join(engine: &Engine, service: &str, set: u64, info: InstanceInfo) {
    let Some(addr) = info.addr else { return };
    engine.add_member(service, set, member(addr), info.generation);
    engine.publish_logged(service).await;
    tracing::info!(service, instance = info.instance, %addr, "instance joined the pool");
}

/// The stop hook: leave the pool, then let requests in flight finish.
///
/// Logs how many requests were still in flight once the member was out of
/// the published pool, and how long they took to end: those requests were
/// routed before it left, so that wait is the app's own request time.
async fn take_out(engine: &Engine, service: &str, set: u64, info: InstanceInfo, limit: Duration) {
    let Some(addr) = info.addr else { return };
    let counter = engine.in_flight(service, &addr.to_string());
    if engine.remove_member(service, set, &member(addr)) {
        engine.publish_logged(service).await;
    }
    let in_flight: usize = counter.iter().map(proxy::InFlight::get).sum();
    let out_of_pool = tokio::time::Instant::now();
    let drained = crate::publish::wait_idle(counter, limit).await;
    let drain_ms = out_of_pool.elapsed().as_micros() as f64 / 1000.0;
    engine.forget(service, &addr.to_string());
    tracing::info!(service, instance = info.instance, %addr, in_flight, drain_ms, drained, "instance left the pool");
}

fn member(addr: std::net::SocketAddr) -> config::UpstreamAddr {
    config::UpstreamAddr::from(addr)
}

/// The TLS handshake a probe of `host` needs when the service speaks HTTPS
/// to its instances or targets (`[service.NAME.tls]`): the proxy's own.
/// `None` for plain HTTP, or when the settings cannot be used (the proxy
/// reports those when it builds the pool).
pub(crate) fn probe_handshake(service: &config::Service, host: &str) -> Option<balance::Handshake> {
    let settings = service.forward.tls.as_ref()?;
    match proxy::tls_handshake(settings, host) {
        Ok(handshake) => Some(handshake),
        Err(e) => {
            tracing::warn!(service = %service.name, error = %e, "TLS settings unusable for readiness checks");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use supervisor::Event;

    use crate::sets::SetPhase;
    use crate::{Engine, Store};

    /// A set's phase follows its group's events at once, whatever recording
    /// the instances in the state directory costs: here no record can be
    /// written for the whole test (its lock is held), and the set still
    /// turns ready on the group's `RolloutComplete`.
    #[tokio::test]
    async fn the_phase_follows_the_group_while_the_record_is_held_up() {
        let dir = std::env::temp_dir().join(format!("baton-follow-test-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let source = "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[service.web]\ntargets = [\"127.0.0.1:9\"]\n";
        let engine =
            Engine::new(config::parse(source, "baton.toml").unwrap(), Some(store)).unwrap();
        let set = engine.add_external_set("web", &[], "v2".into(), 0);
        let mut phase = engine
            .with_set("web", set, |s| s.phase.subscribe())
            .unwrap();
        let held = engine.inner.recording.lock().await;
        let (events, rx) = tokio::sync::broadcast::channel(16);
        tokio::spawn(super::follow(engine.clone(), "web".into(), set, rx));
        for event in [
            Event::Spawned {
                instance: 1,
                generation: 1,
                pid: 1,
            },
            Event::Ready {
                instance: 1,
                generation: 1,
                addr: None,
            },
            Event::RolloutComplete { generation: 1 },
        ] {
            events.send(event).unwrap();
        }
        // The bound only ends a test that fails; it measures nothing.
        let ready = tokio::time::timeout(
            Duration::from_secs(30),
            phase.wait_for(|p| *p == SetPhase::Ready),
        )
        .await;
        assert!(
            ready.is_ok(),
            "the set's phase waited for the record of its instances"
        );
        // Once the lock is free the record asked for is written.
        let ticket = engine.record_instances_soon();
        drop(held);
        engine.recorded(ticket).await;
        assert!(dir.join("instances.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
