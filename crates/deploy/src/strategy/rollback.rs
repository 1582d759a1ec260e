//! Rollback: back to the version (or targets) that served before — within a
//! blue-green rollback window by switching to the standby set at once,
//! otherwise by deploying the previous version again (canary becomes
//! blue-green: the old version needs no trial).

use tokio::time::Instant;

use super::traffic::{retire, set_shares};
use super::{Busy, Target, run};
use crate::progress::{Progress, Reporter, Traffic};
use crate::{Deploy, DeployError, Deployed, Engine, Failure, Outcome, state};

pub(crate) async fn rollback(
    engine: &Engine,
    name: &str,
    reporter: Reporter,
) -> Result<Deployed, DeployError> {
    let service = engine
        .service(name)
        .ok_or_else(|| DeployError::UnknownService(name.to_owned()))?;
    // In a cluster, a supervised service goes back everywhere.
    if let (config::Runner::Supervised(_), Some(cluster)) =
        (&service.runner, engine.inner.cluster_deploys.get())
    {
        return cluster.rollback(&service, reporter).await;
    }
    let _busy = Busy::claim(engine, name, &reporter)?;
    let _cluster = engine.lock_deploy(name).await?;
    let started = Instant::now();
    // Within a blue-green rollback window: switch back at once.
    if let Some(standby) = engine.with_runtime(name, |rt| rt.standby.take()) {
        let _ = standby.cancel.send(());
        let current: Vec<u64> = engine.with_runtime(name, |rt| {
            rt.sets
                .iter()
                .filter(|s| s.share > 0)
                .map(|s| s.id)
                .collect()
        });
        let version = engine
            .with_set(name, standby.set, |s| s.version.clone())
            .unwrap_or_default();
        let targets = engine
            .with_set(name, standby.set, |s| {
                s.targets.iter().map(|t| t.authority.clone()).collect()
            })
            .unwrap_or_default();
        let record = Deploy {
            version: version.clone(),
            targets,
            started: state::now(),
            outcome: Outcome::InProgress,
        };
        reporter.send(Progress::Started {
            service: name.to_owned(),
            version: version.clone(),
            strategy: "switch back".into(),
            instances: engine
                .with_set(name, standby.set, |s| s.ready.len())
                .unwrap_or(0),
        });
        set_shares(engine, name, &current, standby.set, 100).await;
        reporter.send(Progress::Traffic { percent: 100 });
        engine.note(name, &record, Outcome::RolledBack).await;
        for set in current {
            reporter.send(Progress::Draining {
                version: engine
                    .with_set(name, set, |s| s.version.clone())
                    .unwrap_or_default(),
            });
            retire(engine, &service, set).await;
        }
        return Ok(Deployed {
            version,
            strategy: config::Strategy::BlueGreen,
            duration: started.elapsed(),
            traffic: Traffic::default(),
        });
    }
    let saved = engine.saved(name);
    let Some(previous) = saved.previous().cloned() else {
        return Err(DeployError::NothingToRollBack(name.to_owned()));
    };
    let strategy = match service.strategy {
        config::Strategy::Canary => config::Strategy::BlueGreen,
        s => s,
    };
    let target = match &service.runner {
        config::Runner::Supervised(spec) => {
            let mut spec = spec.clone();
            spec.version = previous.version.parse().map_err(|source| {
                DeployError::Failed(Failure::SavedVersion {
                    version: previous.version.clone(),
                    source,
                })
            })?;
            Target::Version(spec)
        }
        config::Runner::External(_) => Target::Targets(
            previous
                .targets
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| DeployError::Failed(Failure::SavedTargets(e)))?,
        ),
    };
    run(
        engine,
        &service,
        strategy,
        previous.version,
        target,
        &reporter,
        Outcome::RolledBack,
        None,
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use tokio::sync::mpsc;

    use crate::{DeployError, DeployRequest, Engine, Outcome, Progress, Reporter};

    /// A target that accepts connections (the kernel queues them; nothing
    /// needs to answer, an external service without health checks is ready
    /// when it accepts a connection).
    fn target() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    /// An external service `web` on `target`, with `settings` under it; no
    /// proxy: the engine's moves between sets without the data plane.
    fn engine(target: &str, settings: &str) -> Engine {
        let source = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[service.web]\ntargets = [\"{target}\"]\n{settings}\n"
        );
        Engine::new(config::parse(&source, "baton.toml").unwrap(), None).unwrap()
    }

    async fn deploy(engine: &Engine, target: &str) {
        let req = DeployRequest {
            service: "web".into(),
            version: None,
            strategy: None,
            targets: vec![target.parse().unwrap()],
        };
        engine.deploy(req, Reporter::none()).await.unwrap();
    }

    fn routed(engine: &Engine) -> Vec<String> {
        engine.status()[0].members.clone()
    }

    fn outcomes(engine: &Engine) -> Vec<Outcome> {
        engine.state().services["web"]
            .history
            .iter()
            .map(|d| d.outcome.clone())
            .collect()
    }

    #[tokio::test]
    async fn rollback_deploys_the_targets_that_served_before() {
        let ((_a, a), (_b, b)) = (target(), target());
        let engine = engine(&a, "strategy = \"rolling\"");
        let nothing = engine.rollback("web", Reporter::none()).await.unwrap_err();
        assert!(
            matches!(nothing, DeployError::NothingToRollBack(_)),
            "{nothing:?}"
        );
        assert!(matches!(
            engine.rollback("api", Reporter::none()).await,
            Err(DeployError::UnknownService(_))
        ));

        deploy(&engine, &b).await;
        assert_eq!(routed(&engine), std::slice::from_ref(&b));
        let back = engine.rollback("web", Reporter::none()).await.unwrap();
        // A rolling external deploy moves to a new set of targets: what
        // blue-green does without smoke checks.
        assert_eq!(back.strategy, config::Strategy::Rolling);
        assert_eq!(routed(&engine), std::slice::from_ref(&a));
        assert_eq!(
            engine.state().services["web"].targets,
            std::slice::from_ref(&a)
        );
        assert_eq!(
            outcomes(&engine),
            [Outcome::Initial, Outcome::Deployed, Outcome::RolledBack]
        );
        // Rolled back twice: to the targets before the rollback.
        engine.rollback("web", Reporter::none()).await.unwrap();
        assert_eq!(routed(&engine), [b]);
    }

    #[tokio::test]
    async fn within_the_rollback_window_the_standby_set_takes_the_traffic_back() {
        let ((_a, a), (_b, b)) = (target(), target());
        let engine = engine(
            &a,
            "strategy = \"blue_green\"\n[service.web.blue_green]\nrollback_window = \"1h\"",
        );
        deploy(&engine, &b).await;
        let status = &engine.status()[0];
        assert_eq!(status.members, std::slice::from_ref(&b));
        let standby: Vec<(&[String], bool)> = status
            .sets
            .iter()
            .map(|s| (s.members.as_slice(), s.standby))
            .collect();
        assert_eq!(
            standby,
            [(&[a.clone()][..], true), (&[b.clone()][..], false)]
        );

        let (tx, mut rx) = mpsc::unbounded_channel();
        let back = engine.rollback("web", Reporter::new(tx)).await.unwrap();
        assert_eq!(back.strategy, config::Strategy::BlueGreen);
        let Some(Progress::Started { strategy, .. }) = rx.recv().await else {
            panic!("no start reported");
        };
        assert_eq!(strategy, "switch back");
        let status = &engine.status()[0];
        assert_eq!(status.members, [a]);
        assert_eq!(status.sets.len(), 1, "the new set is retired");
        assert!(!status.deploying);
        assert_eq!(
            outcomes(&engine),
            [Outcome::Initial, Outcome::Deployed, Outcome::RolledBack]
        );
    }

    #[tokio::test]
    async fn a_target_that_never_accepts_is_undone() {
        let (_a, a) = target();
        let engine = engine(&a, "ready_timeout = \"300ms\"");
        // A port nothing listens on: the listener is dropped at once.
        let gone = target().1;
        let req = DeployRequest {
            service: "web".into(),
            version: None,
            strategy: None,
            targets: vec![gone.parse().unwrap()],
        };
        let e = engine.deploy(req, Reporter::none()).await.unwrap_err();
        assert!(
            matches!(
                &e,
                DeployError::Failed(crate::Failure::TargetUnhealthy { .. })
            ),
            "{e:?}"
        );
        let status = &engine.status()[0];
        assert_eq!(status.members, [a]);
        assert_eq!(status.sets.len(), 1);
        assert!(matches!(
            outcomes(&engine)[..],
            [Outcome::Initial, Outcome::Failed(_)]
        ));
    }
}
