//! A group driven through its public API with real processes: the restart
//! policy. Each instance is `sh` blocked reading a FIFO of its own; the test
//! writes the exit code it should end with (or `kill`, to die by SIGKILL)
//! when it wants the instance to end on its own, and waits on the group's
//! events, never on a sleep.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervisor::{
    Backoff, Bounds, CommandSource, CommandSpec, Event, Group, GroupConfig, InstanceInfo, Probe,
    Readiness, Restart, RolloutError, Sockets,
};
use tokio::sync::broadcast;

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads its orders from `DIR/$BATON_INSTANCE`: an exit code, or `kill`.
const SCRIPT: &str = r#"read how < "$0/$BATON_INSTANCE"
if [ "$how" = kill ]; then kill -KILL $$; fi
exit "$how""#;

/// One FIFO per instance id, held open for reading and writing so that
/// neither side blocks on `open` and what the test writes waits in the pipe
/// until the instance reads it (Linux semantics for `O_RDWR` on a FIFO).
struct Orders {
    dir: PathBuf,
    fifos: Vec<File>,
}

impl Orders {
    fn new(name: &str, instances: u64) -> Orders {
        let dir =
            std::env::temp_dir().join(format!("baton-supervisor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifos = (1..=instances)
            .map(|id| {
                let path = dir.join(id.to_string());
                let made = std::process::Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(made.success(), "mkfifo {}", path.display());
                File::options().read(true).write(true).open(&path).unwrap()
            })
            .collect();
        Orders { dir, fifos }
    }

    fn command(&self) -> CommandSpec {
        command(&self.dir)
    }

    /// Tells `instance` to end: `"0"`, `"3"`, or `"kill"`.
    fn end(&mut self, instance: u64, how: &str) {
        let fifo = &mut self.fifos[instance as usize - 1];
        writeln!(fifo, "{how}").unwrap();
    }
}

impl Drop for Orders {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(dir: &Path) -> CommandSpec {
    CommandSpec::new([
        "sh".as_ref(),
        "-c".as_ref(),
        SCRIPT.as_ref(),
        dir.as_os_str(),
    ])
    .unwrap()
}

fn config(command: CommandSource, instances: usize, restart: Restart) -> GroupConfig {
    GroupConfig {
        command,
        sockets: Sockets::Shared(Arc::new(Vec::new())),
        bounds: Bounds {
            instances,
            max_surge: 1,
            max_unavailable: 0,
        },
        readiness: Readiness::Delay(Duration::ZERO),
        ready_timeout: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(10),
        backoff: Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
            Duration::from_secs(10),
        ),
        after_ready: None,
        before_stop: None,
        restart,
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(EVENT_TIMEOUT, f).await {
        Ok(t) => t,
        Err(_) => panic!("{what}: nothing within {EVENT_TIMEOUT:?}"),
    }
}

async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    within("event", events.recv()).await.expect("event stream")
}

/// Stops the group; every instance must end by our SIGTERM.
async fn shut_down(group: &Group) {
    let summary = within("shutdown", group.shutdown()).await.unwrap();
    assert!(summary.clean(), "{summary:?}");
}

/// Every event up to and including the first that matches.
async fn until(
    events: &mut broadcast::Receiver<Event>,
    last: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = next_event(events).await;
        let done = last(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn spawned(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Spawned {
                instance,
                generation,
                ..
            } => Some((*instance, *generation)),
            _ => None,
        })
        .collect()
}

fn exited_on_its_own(instance: u64) -> Event {
    Event::Exited {
        instance,
        generation: 1,
        expected: false,
    }
}

/// Starts a reload and returns every event up to its `RolloutStarted`. The
/// reload is sent after the caller saw the decision it wants to check, and
/// the group plans (and would restart) before it reads its next command, so
/// a restart that should not happen would show up in these events.
async fn reload_after(
    group: &Group,
    events: &mut broadcast::Receiver<Event>,
    generation: u64,
) -> (
    Vec<Event>,
    tokio::task::JoinHandle<Result<u64, RolloutError>>,
) {
    let g = group.clone();
    let reload = tokio::spawn(async move { g.reload().await.expect("group running") });
    let seen = until(events, |e| *e == Event::RolloutStarted { generation }).await;
    (seen, reload)
}

#[tokio::test]
async fn on_failure_leaves_a_clean_exit_empty_and_restarts_a_failure() {
    let mut orders = Orders::new("on-failure", 8);
    let source = CommandSource::Fixed(orders.command());
    let (group, mut events) =
        Group::start_subscribed(config(source, 2, Restart::OnFailure)).unwrap();
    let started = until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;
    assert_eq!(spawned(&started), [(1, 1), (2, 1)]);

    orders.end(1, "0");
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen,
        [
            exited_on_its_own(1),
            Event::NotRestarted {
                instance: 1,
                generation: 1,
                given_up: 1
            }
        ]
    );

    // Exit code 3 is a failure: one replacement after backoff, for that
    // slot only; the slot given up above stays empty.
    orders.end(2, "3");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Ready { instance: 3, .. })
    })
    .await;
    assert_eq!(seen[0], exited_on_its_own(2));
    assert_eq!(spawned(&seen), [(3, 1)]);
    assert!(
        !seen.iter().any(|e| matches!(e, Event::NotRestarted { .. })),
        "{seen:?}"
    );
    let (seen, reload) = reload_after(&group, &mut events, 2).await;
    assert_eq!(spawned(&seen), [], "{seen:?}");

    assert_eq!(within("reload", reload).await.unwrap(), Ok(2));
    shut_down(&group).await;
}

#[tokio::test]
async fn never_leaves_a_crashed_instance_empty() {
    let mut orders = Orders::new("never", 8);
    let source = CommandSource::Fixed(orders.command());
    let (group, mut events) = Group::start_subscribed(config(source, 2, Restart::Never)).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;

    // Death by SIGKILL, and a non-zero exit: neither is replaced.
    orders.end(1, "kill");
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen,
        [
            exited_on_its_own(1),
            Event::NotRestarted {
                instance: 1,
                generation: 1,
                given_up: 1
            }
        ]
    );
    orders.end(2, "3");
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen,
        [
            exited_on_its_own(2),
            Event::NotRestarted {
                instance: 2,
                generation: 1,
                given_up: 2
            }
        ]
    );
    let (seen, reload) = reload_after(&group, &mut events, 2).await;
    assert_eq!(spawned(&seen), [], "{seen:?}");

    assert_eq!(within("reload", reload).await.unwrap(), Ok(2));
    shut_down(&group).await;
}

#[tokio::test]
async fn always_restarts_after_exit_0() {
    let mut orders = Orders::new("always", 8);
    let source = CommandSource::Fixed(orders.command());
    let (group, mut events) = Group::start_subscribed(config(source, 1, Restart::Always)).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;

    orders.end(1, "0");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Ready { instance: 2, .. })
    })
    .await;
    assert_eq!(seen[0], exited_on_its_own(1));
    assert_eq!(spawned(&seen), [(2, 1)]);
    assert!(
        !seen.iter().any(|e| matches!(e, Event::NotRestarted { .. })),
        "{seen:?}"
    );
    shut_down(&group).await;
}

#[tokio::test]
async fn a_reload_after_slots_were_given_up_starts_the_full_count() {
    let mut orders = Orders::new("reload", 8);
    let source = CommandSource::Fixed(orders.command());
    let (group, mut events) = Group::start_subscribed(config(source, 3, Restart::Never)).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;
    orders.end(1, "0");
    orders.end(2, "0");
    until(&mut events, |e| {
        matches!(e, Event::NotRestarted { given_up: 2, .. })
    })
    .await;

    // Instance 3 still runs; the rollout replaces it and fills both empty
    // slots: three new instances, as if nothing had been given up.
    let (_, reload) = reload_after(&group, &mut events, 2).await;
    let seen = until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 2 }
    })
    .await;
    assert_eq!(spawned(&seen), [(4, 2), (5, 2), (6, 2)]);
    assert_eq!(within("reload", reload).await.unwrap(), Ok(2));

    // The completed rollout cleared the count: one more exit gives up one
    // slot, not a third.
    orders.end(4, "0");
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen.last(),
        Some(&Event::NotRestarted {
            instance: 4,
            generation: 2,
            given_up: 1
        })
    );
    shut_down(&group).await;
}

#[tokio::test]
async fn an_exit_fails_a_rollout_whatever_the_policy_and_the_old_instance_serves_on() {
    let mut orders = Orders::new("rollout", 1);
    // Only first-generation instances pass their probe; the second
    // generation exits with code 3 before it could be ready.
    let probed: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let record = probed.clone();
    let dir = orders.dir.clone();
    let first = CommandSource::PerInstance(Arc::new(move |info: &InstanceInfo| {
        record.lock().unwrap().insert(info.addr.expect("own port"));
        Ok(command(&dir))
    }));
    let mut config = config(first, 1, Restart::Never);
    config.sockets = Sockets::PerInstance {
        ip: [127, 0, 0, 1].into(),
        pass_socket: false,
        name: "http".into(),
    };
    config.readiness = Readiness::Probe(Probe {
        check: Arc::new(move |addr| {
            let ok = probed.lock().unwrap().contains(&addr);
            Box::pin(async move { ok })
        }),
        interval: Duration::from_millis(10),
        successes: 1,
    });
    let (group, mut events) = Group::start_subscribed(config).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;

    let crashing = CommandSpec::new(["sh", "-c", "exit 3"]).unwrap();
    let reload = group.reload_with(Some(CommandSource::Fixed(crashing)));
    let result = within("reload", reload).await.unwrap();
    assert!(
        matches!(result, Err(RolloutError::Exited { generation: 2, ref status, .. }) if status == "exit code 3"),
        "{result:?}"
    );
    // The new instance's slot is given up; the old instance keeps serving
    // (had the group stopped it, that was decided before we tell it to end,
    // and its exit would be an expected one).
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen.last(),
        Some(&Event::NotRestarted {
            instance: 2,
            generation: 2,
            given_up: 1
        })
    );
    orders.end(1, "0");
    let seen = until(&mut events, |e| matches!(e, Event::NotRestarted { .. })).await;
    assert_eq!(
        seen,
        [
            exited_on_its_own(1),
            Event::NotRestarted {
                instance: 1,
                generation: 1,
                given_up: 1
            }
        ]
    );
    shut_down(&group).await;
}

/// Timeouts as long as a `Duration` holds: deadlines computed from them once
/// overflowed the clock and panicked inside the instance's task. The
/// instance starts, gets ready, is restarted after a crash (the backoff's
/// gate) and stops on SIGTERM as usual.
#[tokio::test]
async fn the_longest_timeouts_do_not_overflow_the_clock() {
    let mut orders = Orders::new("longest", 8);
    let source = CommandSource::Fixed(orders.command());
    let mut config = config(source, 1, Restart::Always);
    config.ready_timeout = Duration::MAX;
    config.drain_timeout = Duration::MAX;
    config.readiness = Readiness::Delay(Duration::from_millis(1));
    let (group, mut events) = Group::start_subscribed(config).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;
    orders.end(1, "kill");
    until(&mut events, |e| {
        matches!(e, Event::Ready { instance: 2, .. })
    })
    .await;
    shut_down(&group).await;
}

#[tokio::test]
async fn scaling_up_starts_the_current_generation_and_down_stops_the_surplus() {
    let orders = Orders::new("scale", 8);
    let source = CommandSource::Fixed(orders.command());
    let (group, mut events) = Group::start_subscribed(config(source, 2, Restart::Always)).unwrap();
    until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 1 }
    })
    .await;

    // 2 → 5: three more of generation 1; the two running ones stay.
    within("scale up", group.scale(5)).await.unwrap();
    let seen = until(&mut events, |e| {
        matches!(e, Event::Ready { instance: 5, .. })
    })
    .await;
    assert_eq!(spawned(&seen), [(3, 1), (4, 1), (5, 1)]);
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Exited { .. })),
        "{seen:?}"
    );

    // 5 → 2: the three oldest stop (asked to: expected exits), nothing new.
    within("scale down", group.scale(2)).await.unwrap();
    let seen = until(&mut events, |e| matches!(e, Event::Exited { .. })).await;
    assert!(spawned(&seen).is_empty(), "{seen:?}");
    let mut exited = Vec::new();
    let mut events_seen = seen;
    loop {
        for e in &events_seen {
            if let Event::Exited {
                instance, expected, ..
            } = e
            {
                assert!(*expected, "{e:?}");
                exited.push(*instance);
            }
        }
        if exited.len() >= 3 {
            break;
        }
        events_seen = vec![next_event(&mut events).await];
    }
    exited.sort_unstable();
    assert_eq!(exited, [1, 2, 3]);
    // A group of 2 again: a rollout replaces exactly two.
    let (_, reload) = reload_after(&group, &mut events, 2).await;
    let seen = until(&mut events, |e| {
        *e == Event::RolloutComplete { generation: 2 }
    })
    .await;
    assert_eq!(spawned(&seen), [(6, 2), (7, 2)]);
    assert_eq!(within("reload", reload).await.unwrap(), Ok(2));
    shut_down(&group).await;
}
