//! A group of instances of one command: keeps `instances` of them running,
//! replaces a whole generation on `reload` within the bounds, fails a
//! rollout whose new instances are not ready in time (the old ones keep
//! serving), restarts instances that end on their own with backoff as the
//! [`Restart`] policy says (leaving the slots it gives up empty until the
//! next completed rollout), and stops everything on `shutdown`.
//!
//! One actor task owns all state; instance tasks and callers talk to it over
//! channels, and it publishes what happens as [`Event`]s.
//!
//! A group can also start from instances another baton ran
//! ([`Group::adopt`]), and hand its own over ([`Group::freeze`]: from then
//! on it starts, stops and restarts nothing, and its end stops nothing,
//! until [`Group::thaw`]).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use handoff::time::SaturatingAdd;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::adopt::{self, AdoptError, Adopted, PidFd};
use crate::backoff::Backoff;
use crate::instance::{InstanceTask, Order, Process, ReadyProbe, Report};
use crate::notify_socket::{NotifySocket, RuntimeDir};
use crate::plan::{self, Action, Bounds, Limits, View};
use crate::restart::{self, Restart};
use crate::sockets::{CommandSource, InstanceInfo, Probe, ReadyHook, Sockets, StopHook};
use crate::spawn;

/// How instances prove they are ready.
#[derive(Clone)]
pub enum Readiness {
    /// `READY=1` over `NOTIFY_SOCKET` (the `sd_notify` protocol).
    Notify,
    /// Ready after running this long.
    Delay(Duration),
    /// Ready once probes of its own address pass (per-instance sockets).
    Probe(Probe),
}

/// Everything a group needs to run.
#[derive(Clone)]
pub struct GroupConfig {
    /// What each instance of the first generation runs.
    pub command: CommandSource,
    /// What instances listen on.
    pub sockets: Sockets,
    /// How many, and how a replacement may stray from that.
    pub bounds: Bounds,
    /// How readiness is known.
    pub readiness: Readiness,
    /// A new instance not ready after this long fails its rollout.
    pub ready_timeout: Duration,
    /// How long a stopping instance may drain before SIGKILL.
    pub drain_timeout: Duration,
    /// Delays between restarts of crashing instances.
    pub backoff: Backoff,
    /// Whether an instance that ends without being asked to stop is
    /// replaced. A slot left empty is refilled only by the next rollout
    /// (`reload`), which starts the full `bounds.instances` again.
    pub restart: Restart,
    /// Runs when an instance has proved ready, and the group counts it as
    /// ready (publishes `Event::Ready`, lets the plan stop what it
    /// replaces) only once the hook has finished: e.g. put it in a proxy's
    /// pool, so that the pool never loses the old instance before it has
    /// the new one, whatever the order in which tasks run.
    pub after_ready: Option<ReadyHook>,
    /// Runs before a ready instance is sent SIGTERM (e.g. take it out of a
    /// proxy's pool and wait for its requests to finish).
    pub before_stop: Option<StopHook>,
}

/// Something that happened in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An instance process was started.
    Spawned {
        /// Instance id.
        instance: u64,
        /// Its generation.
        generation: u64,
        /// Its pid.
        pid: u32,
    },
    /// An instance reported ready.
    Ready {
        /// Instance id.
        instance: u64,
        /// Its generation.
        generation: u64,
        /// Its own address (per-instance sockets).
        addr: Option<SocketAddr>,
    },
    /// An instance process ended.
    Exited {
        /// Instance id.
        instance: u64,
        /// Its generation.
        generation: u64,
        /// Whether we had asked it to stop.
        expected: bool,
    },
    /// An instance that ended on its own (its `Exited` came just before) is
    /// not replaced, as the restart policy says: its slot stays empty until
    /// the next rollout completes.
    NotRestarted {
        /// Instance id.
        instance: u64,
        /// Its generation.
        generation: u64,
        /// Slots now left empty.
        given_up: usize,
    },
    /// A rollout of a new generation began.
    RolloutStarted {
        /// The new generation.
        generation: u64,
    },
    /// Every instance now belongs to the new generation and is ready, and
    /// every old one has exited.
    RolloutComplete {
        /// The generation.
        generation: u64,
    },
    /// The rollout was abandoned; the instances that were ready keep serving.
    RolloutFailed {
        /// The generation that failed.
        generation: u64,
        /// Why.
        reason: String,
    },
}

/// Why a rollout did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// A new instance did not report ready in time.
    #[error(
        "generation {generation}: instance {instance} (pid {pid}) was not ready within {timeout:?}"
    )]
    NotReady {
        /// The generation.
        generation: u64,
        /// Instance id.
        instance: u64,
        /// Its pid.
        pid: u32,
        /// The ready timeout.
        timeout: Duration,
    },
    /// A new instance exited before the rollout finished.
    #[error("generation {generation}: instance {instance} (pid {pid}) exited with {status}")]
    Exited {
        /// The generation.
        generation: u64,
        /// Instance id.
        instance: u64,
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// A new instance could not be started at all.
    #[error("generation {generation}: could not start an instance: {reason}")]
    Spawn {
        /// The generation.
        generation: u64,
        /// The OS error.
        reason: String,
    },
    /// A newer reload replaced this one before it finished.
    #[error("generation {generation} was superseded by a newer reload")]
    Superseded {
        /// The generation.
        generation: u64,
    },
    /// The group began shutting down.
    #[error("the group is shutting down")]
    ShuttingDown,
}

/// The group is no longer running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the instance group has stopped")]
pub struct GroupError;

/// How the instances ended at shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitSummary {
    /// Instances that were running when the shutdown began.
    pub stopped: usize,
    /// Instances that needed SIGKILL.
    pub killed: usize,
    /// Instances that exited with a non-zero code or an unexpected signal.
    pub failed: usize,
}

impl ExitSummary {
    /// True when every instance exited by itself, with code 0 or by the
    /// SIGTERM we sent.
    pub fn clean(&self) -> bool {
        self.killed == 0 && self.failed == 0
    }
}

enum Command {
    Reload(
        Option<CommandSource>,
        Option<Limits>,
        oneshot::Sender<Result<u64, RolloutError>>,
    ),
    Shutdown(oneshot::Sender<ExitSummary>),
    Kill,
    Freeze(oneshot::Sender<Vec<Adopted>>),
    Thaw,
    Scale(usize, oneshot::Sender<()>),
    Instances(oneshot::Sender<Vec<Adopted>>),
}

/// A handle to a running group; clones share it.
#[derive(Clone)]
pub struct Group {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<Event>,
}

impl Group {
    /// Starts the first generation of `config.command`.
    ///
    /// Must be called within a tokio runtime.
    pub fn start(config: GroupConfig) -> io::Result<Group> {
        Group::start_subscribed(config).map(|(group, _)| group)
    }

    /// [`Group::start`], with a receiver subscribed before anything
    /// happens: it sees the first generation's every event, its
    /// `RolloutComplete` or `RolloutFailed` included.
    ///
    /// Must be called within a tokio runtime.
    pub fn start_subscribed(
        config: GroupConfig,
    ) -> io::Result<(Group, broadcast::Receiver<Event>)> {
        Group::adopt(config, Vec::new()).map(|(group, events, _)| (group, events))
    }

    /// [`Group::start_subscribed`], taking over `adopted` instances (of the
    /// first generation's command) that another baton started: those still
    /// running (the same process: its start time is checked) are
    /// supervised as if started here, and the first generation is
    /// completed with new instances if they are too few. Also returns the
    /// ones that could not be adopted and why (gone, or their pid reused).
    ///
    /// Must be called within a tokio runtime.
    pub fn adopt(
        config: GroupConfig,
        adopted: Vec<Adopted>,
    ) -> io::Result<(Group, broadcast::Receiver<Event>, Vec<AdoptError>)> {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, first) = broadcast::channel(1024);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let mut actor = Actor {
            backoff: config.backoff.clone(),
            commands: BTreeMap::from([(1, config.command.clone())]),
            config,
            dir: RuntimeDir::create()?,
            instances: BTreeMap::new(),
            next_id: 1,
            stable: 1,
            last_generation: 1,
            rollout: Some(Rollout {
                generation: 1,
                started: Instant::now(),
                limits: None,
                reply: None,
            }),
            spawn_gate: None,
            given_up: 0,
            reports,
            events: events.clone(),
            shutdown: None,
            frozen: false,
            scaling: Vec::new(),
        };
        let mut refused = Vec::new();
        for a in adopted {
            if let Err(e) = actor.take_over(a) {
                refused.push(e);
            }
        }
        tokio::spawn(actor.run(commands_rx, reports_rx));
        Ok((Group { commands, events }, first, refused))
    }

    /// Receives every later event.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Replaces every instance with a new generation; resolves with the new
    /// generation once the rollout completes, or with why it failed.
    pub async fn reload(&self) -> Result<Result<u64, RolloutError>, GroupError> {
        self.reload_with(None).await
    }

    /// Like [`Group::reload`], with a new command for the new generation
    /// (a new version); `None` runs the current generation's command again.
    pub async fn reload_with(
        &self,
        command: Option<CommandSource>,
    ) -> Result<Result<u64, RolloutError>, GroupError> {
        self.reload_within(command, None).await
    }

    /// Like [`Group::reload_with`], the rollout kept within `limits` as
    /// well as the group's bounds (restarts and later rollouts are not).
    pub async fn reload_within(
        &self,
        command: Option<CommandSource>,
        limits: Option<Limits>,
    ) -> Result<Result<u64, RolloutError>, GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Reload(command, limits, tx))
            .map_err(|_| GroupError)?;
        rx.await.map_err(|_| GroupError)
    }

    /// Stops every instance gracefully; resolves once all have exited.
    pub async fn shutdown(&self) -> Result<ExitSummary, GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(tx))
            .map_err(|_| GroupError)?;
        rx.await.map_err(|_| GroupError)
    }

    /// Runs `instances` instances from now on (at least 1): new ones of
    /// the current generation start, or the surplus stops (not-ready ones
    /// first, ready ones within `max_unavailable`, each through the stop
    /// hook); resolves once exactly that many run, all ready (after a
    /// rollout in progress, if any). Slots left empty by the restart policy
    /// are filled again, as a rollout does.
    pub async fn scale(&self, instances: usize) -> Result<(), GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Scale(instances.max(1), tx))
            .map_err(|_| GroupError)?;
        rx.await.map_err(|_| GroupError)
    }

    /// Sends SIGKILL to every instance (a shutdown still completes).
    pub fn kill(&self) {
        let _ = self.commands.send(Command::Kill);
    }

    /// Hands the instances over: from now on the group starts, stops and
    /// restarts nothing (an instance that exits leaves it), and neither its
    /// end nor the end of this process stops them. Returns the running
    /// instances, for another process to [`Group::adopt`].
    pub async fn freeze(&self) -> Result<Vec<Adopted>, GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Freeze(tx))
            .map_err(|_| GroupError)?;
        rx.await.map_err(|_| GroupError)
    }

    /// The running instances (not stopping), as [`Group::adopt`] takes
    /// them: what a baton restarted after a crash adopts.
    pub async fn instances(&self) -> Result<Vec<Adopted>, GroupError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Instances(tx))
            .map_err(|_| GroupError)?;
        rx.await.map_err(|_| GroupError)
    }

    /// Supervises the instances again after [`Group::freeze`] (the takeover
    /// failed): restarts what exited meanwhile, as the policy says.
    pub fn thaw(&self) {
        let _ = self.commands.send(Command::Thaw);
    }
}

struct Inst {
    generation: u64,
    pid: u32,
    /// From `/proc/PID/stat`, so that another process can tell it from a
    /// later one with the same pid.
    start_time: u64,
    addr: Option<SocketAddr>,
    started: Instant,
    ready: bool,
    /// We asked it to stop.
    stopping: bool,
    /// It failed (not ready in time): its exit counts as a crash.
    failed: bool,
    orders: mpsc::UnboundedSender<Order>,
}

struct Rollout {
    generation: u64,
    started: Instant,
    /// Narrower bounds for this rollout only.
    limits: Option<Limits>,
    reply: Option<oneshot::Sender<Result<u64, RolloutError>>>,
}

struct Shutdown {
    replies: Vec<oneshot::Sender<ExitSummary>>,
    summary: ExitSummary,
}

struct Actor {
    config: GroupConfig,
    /// The command of each generation that may still have instances.
    commands: BTreeMap<u64, CommandSource>,
    dir: RuntimeDir,
    instances: BTreeMap<u64, Inst>,
    next_id: u64,
    /// The generation restarts belong to: the last one that completed.
    stable: u64,
    /// The newest generation ever started; numbers are never reused.
    last_generation: u64,
    rollout: Option<Rollout>,
    backoff: Backoff,
    spawn_gate: Option<Instant>,
    /// Slots whose instance ended and was not replaced (restart policy);
    /// the planner does not refill them outside a rollout, and a completed
    /// rollout clears them. Never more than `bounds.instances`.
    given_up: usize,
    reports: mpsc::UnboundedSender<(u64, Report)>,
    events: broadcast::Sender<Event>,
    shutdown: Option<Shutdown>,
    /// The instances are being handed over (`Group::freeze`).
    frozen: bool,
    /// Callers of `scale` waiting for the new number to run, all ready.
    scaling: Vec<oneshot::Sender<()>>,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::UnboundedReceiver<(u64, Report)>,
    ) {
        tracing::info!(generation = 1, "rollout started");
        let _ = self.events.send(Event::RolloutStarted { generation: 1 });
        loop {
            self.reconcile();
            self.check_rollout();
            self.check_scale();
            if self.shutdown.is_some() && self.instances.is_empty() {
                break;
            }
            let gate = self.spawn_gate;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Reload(command, limits, reply)) => self.start_rollout(command, limits, reply),
                    Some(Command::Shutdown(reply)) => self.begin_shutdown(Some(reply)),
                    Some(Command::Kill) => self.kill_all(),
                    Some(Command::Freeze(reply)) => {
                        let _ = reply.send(self.freeze());
                    }
                    Some(Command::Thaw) => self.thaw(),
                    Some(Command::Instances(reply)) => {
                        let _ = reply.send(self.records());
                    }
                    // Handed over: another process supervises them now.
                    None if self.frozen => break,
                    Some(Command::Scale(n, reply)) => self.scale(n, reply),
                    // Every handle is gone: nobody can stop us later, so stop now.
                    None => self.begin_shutdown(None),
                },
                Some((id, report)) = reports.recv() => self.on_report(id, report),
                _ = sleep_until_opt(gate), if gate.is_some() => self.spawn_gate = None,
            }
        }
        if let Some(shutdown) = self.shutdown.take() {
            for reply in shutdown.replies {
                let _ = reply.send(shutdown.summary.clone());
            }
        }
    }

    fn target(&self) -> u64 {
        self.rollout.as_ref().map_or(self.stable, |r| r.generation)
    }

    fn reconcile(&mut self) {
        if self.shutdown.is_some() || self.frozen {
            return;
        }
        // Each round sees the effect of the previous one; a few rounds settle.
        for _ in 0..(2 * self.config.bounds.instances + 4) {
            let target = self.rollout.as_ref().map(|r| r.generation);
            let views: Vec<View> = self
                .instances
                .iter()
                .filter(|(_, i)| !i.stopping)
                .map(|(&id, i)| View {
                    id,
                    current: target.is_none_or(|t| i.generation == t),
                    ready: i.ready,
                })
                .collect();
            let may_spawn = self.spawn_gate.is_none();
            // A rollout brings the service back to full strength.
            let given_up = if target.is_some() { 0 } else { self.given_up };
            let bounds = match self.rollout.as_ref().and_then(|r| r.limits) {
                Some(limits) => self.config.bounds.within(limits),
                None => self.config.bounds,
            };
            let actions = plan::next(&bounds, &views, may_spawn, given_up);
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    Action::Spawn => self.spawn_instance(),
                    Action::Stop(id) => self.stop(id),
                }
            }
        }
    }

    fn spawn_instance(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let generation = self.target();
        let result = self.try_spawn(id, generation);
        if let Err(e) = result {
            tracing::error!(instance = id, generation, error = %e, "could not start instance");
            let delay = self.backoff.next_delay(Duration::ZERO);
            self.spawn_gate = Some(Instant::now().saturating_add(delay));
            if self
                .rollout
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                self.fail_rollout(RolloutError::Spawn {
                    generation,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn try_spawn(&mut self, id: u64, generation: u64) -> io::Result<()> {
        let assigned = self.config.sockets.assign()?;
        let info = InstanceInfo {
            instance: id,
            generation,
            addr: assigned.addr(),
        };
        let command = self.commands[&generation].make(&info)?;
        let (probe, notify_path) = match &self.config.readiness {
            Readiness::Notify => {
                let sock = NotifySocket::bind(&self.dir, id)?;
                let path = sock.path().to_owned();
                (ReadyProbe::Notify(sock), Some(path))
            }
            Readiness::Delay(d) => (ReadyProbe::At(Instant::now().saturating_add(*d)), None),
            Readiness::Probe(probe) => {
                let Some(addr) = info.addr else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "probe readiness needs per-instance sockets",
                    ));
                };
                let probe = ReadyProbe::Http {
                    addr,
                    probe: probe.clone(),
                    passes: 0,
                    next: Instant::now(),
                };
                (probe, None)
            }
        };
        let env = [
            ("BATON_INSTANCE", id.to_string()),
            ("BATON_GENERATION", generation.to_string()),
        ];
        let child = spawn::spawn(&command, assigned.listeners(), notify_path.as_deref(), &env)?;
        let pid = child.id().unwrap_or_default();
        // Read before anything can reap the child: the pid is still its own.
        let start_time = adopt::start_time_of(pid).unwrap_or_default();
        let (orders, orders_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            InstanceTask {
                id,
                info,
                process: Process::Child(child),
                ready: false,
                probe,
                after_ready: self.config.after_ready.clone(),
                before_stop: self.config.before_stop.clone(),
                ready_timeout: self.config.ready_timeout,
                orders: orders_rx,
                reports: self.reports.clone(),
            }
            .run(),
        );
        tracing::info!(instance = id, generation, pid, "instance started");
        let _ = self.events.send(Event::Spawned {
            instance: id,
            generation,
            pid,
        });
        self.instances.insert(
            id,
            Inst {
                generation,
                pid,
                start_time,
                addr: info.addr,
                started: Instant::now(),
                ready: false,
                stopping: false,
                failed: false,
                orders,
            },
        );
        Ok(())
    }

    fn stop(&mut self, id: u64) {
        if let Some(inst) = self.instances.get_mut(&id)
            && !inst.stopping
        {
            inst.stopping = true;
            tracing::info!(
                instance = id,
                generation = inst.generation,
                pid = inst.pid,
                "stopping instance"
            );
            let _ = inst.orders.send(Order::Stop {
                drain_timeout: self.config.drain_timeout,
            });
        }
    }

    fn on_report(&mut self, id: u64, report: Report) {
        let target = self.target();
        let in_rollout = self.rollout.is_some();
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        let generation = inst.generation;
        let pid = inst.pid;
        match report {
            Report::Ready => {
                inst.ready = true;
                tracing::info!(instance = id, generation, pid, "instance ready");
                let _ = self.events.send(Event::Ready {
                    instance: id,
                    generation,
                    addr: inst.addr,
                });
            }
            Report::NotReadyInTime => {
                // Frozen: the process taking over judges it.
                if inst.stopping || self.frozen {
                    return;
                }
                inst.failed = true;
                let timeout = self.config.ready_timeout;
                tracing::warn!(
                    instance = id,
                    generation,
                    pid,
                    ?timeout,
                    "instance not ready in time"
                );
                if in_rollout && generation == target {
                    self.fail_rollout(RolloutError::NotReady {
                        generation,
                        instance: id,
                        pid,
                        timeout,
                    });
                }
                self.stop(id);
            }
            Report::Exited { status, killed } => {
                let inst = self.instances.remove(&id).expect("present above");
                let expected = inst.stopping && !inst.failed;
                let described = describe(status);
                tracing::info!(instance = id, generation, pid, status = %described, expected, "instance exited");
                let _ = self.events.send(Event::Exited {
                    instance: id,
                    generation,
                    expected,
                });
                if let Some(shutdown) = &mut self.shutdown {
                    shutdown.summary.killed += usize::from(killed);
                    // An adopted instance's status is unknown (`None`): not
                    // counted as a failure, for want of evidence either way.
                    shutdown.summary.failed +=
                        usize::from(!killed && status.is_some_and(|s| !exited_cleanly(s)));
                    return;
                }
                if expected {
                    return;
                }
                if self.frozen {
                    // Handed over: its restart is the new supervisor's call
                    // (or ours after a thaw, which finds its slot empty).
                    tracing::warn!(
                        instance = id,
                        generation,
                        pid,
                        "instance exited while being handed over"
                    );
                    return;
                }
                if in_rollout && generation == target {
                    self.fail_rollout(RolloutError::Exited {
                        generation,
                        instance: id,
                        pid,
                        status: described,
                    });
                }
                let failure = restart::is_failure(status, inst.failed);
                let policy = self.config.restart;
                if !policy.restarts(failure) {
                    self.give_up(id, generation, pid, policy, failure);
                    return;
                }
                let delay = self.backoff.next_delay(inst.started.elapsed());
                let delay_ms = delay.as_millis() as u64;
                if inst.failed {
                    tracing::warn!(
                        instance = id,
                        delay_ms,
                        "failed instance stopped; next start after backoff"
                    );
                } else {
                    tracing::warn!(
                        instance = id,
                        delay_ms,
                        "instance died unexpectedly, restarting after backoff"
                    );
                }
                self.spawn_gate = Some(Instant::now().saturating_add(delay));
            }
        }
    }

    /// Leaves the slot of an instance that ended on its own empty.
    fn give_up(&mut self, id: u64, generation: u64, pid: u32, policy: Restart, failure: bool) {
        self.given_up = (self.given_up + 1).min(self.config.bounds.instances);
        let given_up = self.given_up;
        let reason = match policy {
            Restart::OnFailure => "it exited with code 0 and the policy restarts only failures",
            _ => "the policy never restarts",
        };
        // A failure left alone deserves attention; a clean exit is what the
        // policy was chosen for.
        if failure {
            tracing::warn!(
                instance = id,
                generation,
                pid,
                restart = %policy,
                reason,
                given_up,
                "instance not restarted; its slot stays empty until the next rollout"
            );
        } else {
            tracing::info!(
                instance = id,
                generation,
                pid,
                restart = %policy,
                reason,
                given_up,
                "instance not restarted; its slot stays empty until the next rollout"
            );
        }
        let _ = self.events.send(Event::NotRestarted {
            instance: id,
            generation,
            given_up,
        });
    }

    fn start_rollout(
        &mut self,
        command: Option<CommandSource>,
        limits: Option<Limits>,
        reply: oneshot::Sender<Result<u64, RolloutError>>,
    ) {
        if self.shutdown.is_some() {
            let _ = reply.send(Err(RolloutError::ShuttingDown));
            return;
        }
        self.last_generation += 1;
        let generation = self.last_generation;
        let command = command.unwrap_or_else(|| self.commands[&self.stable].clone());
        self.commands.insert(generation, command);
        if let Some(old) = self.rollout.take()
            && let Some(r) = old.reply
        {
            let _ = r.send(Err(RolloutError::Superseded {
                generation: old.generation,
            }));
        }
        tracing::info!(generation, "rollout started");
        let _ = self.events.send(Event::RolloutStarted { generation });
        self.rollout = Some(Rollout {
            generation,
            started: Instant::now(),
            limits,
            reply: Some(reply),
        });
        // A rollout is an explicit request: start at once, whatever backoff ran.
        self.spawn_gate = None;
    }

    fn fail_rollout(&mut self, error: RolloutError) {
        let Some(rollout) = self.rollout.take() else {
            return;
        };
        let generation = rollout.generation;
        let unready: Vec<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| i.generation == generation && !i.ready)
            .map(|(&id, _)| id)
            .collect();
        for id in unready {
            self.stop(id);
        }
        tracing::error!(
            generation,
            reason = %error,
            serving = self.stable,
            "rollout failed; the instances that were ready keep serving"
        );
        let _ = self.events.send(Event::RolloutFailed {
            generation,
            reason: error.to_string(),
        });
        if let Some(reply) = rollout.reply {
            let _ = reply.send(Err(error));
        }
    }

    fn check_rollout(&mut self) {
        let Some(rollout) = &self.rollout else { return };
        let generation = rollout.generation;
        let all_new = self.instances.values().all(|i| i.generation == generation);
        let ready = self
            .instances
            .values()
            .filter(|i| i.ready && !i.stopping)
            .count();
        if !all_new || ready < self.config.bounds.instances {
            return;
        }
        let rollout = self.rollout.take().expect("checked above");
        self.stable = generation;
        // Every slot is filled again.
        self.given_up = 0;
        let duration_ms = rollout.started.elapsed().as_millis() as u64;
        tracing::info!(generation, duration_ms, "rollout complete");
        let _ = self.events.send(Event::RolloutComplete { generation });
        if let Some(reply) = rollout.reply {
            let _ = reply.send(Ok(generation));
        }
    }

    fn scale(&mut self, instances: usize, reply: oneshot::Sender<()>) {
        if self.shutdown.is_some() {
            // Dropping the reply tells the caller the group is stopping.
            return;
        }
        tracing::info!(
            from = self.config.bounds.instances,
            to = instances,
            "scaling"
        );
        self.config.bounds.instances = instances;
        self.given_up = 0;
        self.spawn_gate = None;
        self.scaling.push(reply);
    }

    fn check_scale(&mut self) {
        if self.scaling.is_empty() || self.rollout.is_some() || self.shutdown.is_some() {
            return;
        }
        let wanted = self.config.bounds.instances;
        let ready = self
            .instances
            .values()
            .filter(|i| i.ready && !i.stopping)
            .count();
        if self.instances.len() == wanted && ready == wanted {
            tracing::info!(instances = wanted, "scaled");
            for reply in self.scaling.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<ExitSummary>>) {
        if self.shutdown.is_none() {
            if let Some(rollout) = self.rollout.take()
                && let Some(r) = rollout.reply
            {
                let _ = r.send(Err(RolloutError::ShuttingDown));
            }
            tracing::info!(instances = self.instances.len(), "stopping all instances");
            self.shutdown = Some(Shutdown {
                replies: Vec::new(),
                summary: ExitSummary {
                    stopped: self.instances.len(),
                    ..ExitSummary::default()
                },
            });
            let ids: Vec<u64> = self.instances.keys().copied().collect();
            for id in ids {
                self.stop(id);
            }
        }
        if let (Some(shutdown), Some(reply)) = (&mut self.shutdown, reply) {
            shutdown.replies.push(reply);
        }
    }

    /// Takes over an instance another process started (see `adopt`): it is
    /// of the first generation, ready if it was.
    fn take_over(&mut self, adopted: Adopted) -> Result<(), AdoptError> {
        let pidfd = PidFd::open(adopted.pid, adopted.start_time)?;
        let id = self.next_id;
        self.next_id += 1;
        let generation = self.stable;
        let info = InstanceInfo {
            instance: id,
            generation,
            addr: adopted.addr,
        };
        // Not ready yet: its readiness is proven here as for a new one (a
        // notify socket of the old process is out of reach: never).
        let probe = match (&self.config.readiness, adopted.addr) {
            (Readiness::Probe(probe), Some(addr)) if !adopted.ready => ReadyProbe::Http {
                addr,
                probe: probe.clone(),
                passes: 0,
                next: Instant::now(),
            },
            _ => ReadyProbe::Never,
        };
        let (orders, orders_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            InstanceTask {
                id,
                info,
                process: Process::Adopted(pidfd),
                ready: adopted.ready,
                probe,
                after_ready: self.config.after_ready.clone(),
                before_stop: self.config.before_stop.clone(),
                ready_timeout: self.config.ready_timeout,
                orders: orders_rx,
                reports: self.reports.clone(),
            }
            .run(),
        );
        tracing::info!(
            instance = id,
            generation,
            pid = adopted.pid,
            ready = adopted.ready,
            "instance adopted"
        );
        self.instances.insert(
            id,
            Inst {
                generation,
                pid: adopted.pid,
                start_time: adopted.start_time,
                addr: adopted.addr,
                started: Instant::now(),
                ready: false,
                stopping: false,
                failed: false,
                orders,
            },
        );
        // An instance adopted as ready reports it from its task, after the
        // ready hook, like a new one.
        Ok(())
    }

    /// The instances that are not stopping, as another process adopts them.
    fn records(&self) -> Vec<Adopted> {
        self.instances
            .values()
            .filter(|inst| !inst.stopping)
            .map(|inst| Adopted {
                pid: inst.pid,
                start_time: inst.start_time,
                addr: inst.addr,
                ready: inst.ready,
            })
            .collect()
    }

    fn freeze(&mut self) -> Vec<Adopted> {
        self.frozen = true;
        self.spawn_gate = None;
        for inst in self.instances.values() {
            let _ = inst.orders.send(Order::Detach);
        }
        let out = self.records();
        tracing::info!(
            instances = out.len(),
            "instances handed over; supervision frozen"
        );
        out
    }

    fn thaw(&mut self) {
        if !self.frozen {
            return;
        }
        self.frozen = false;
        for inst in self.instances.values() {
            let _ = inst.orders.send(Order::Attach);
        }
        tracing::info!(
            instances = self.instances.len(),
            "supervising the instances again"
        );
    }

    fn kill_all(&mut self) {
        tracing::warn!(instances = self.instances.len(), "killing all instances");
        for inst in self.instances.values_mut() {
            inst.stopping = true;
            let _ = inst.orders.send(Order::Kill);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Code 0, or ended by the SIGTERM of a graceful stop.
fn exited_cleanly(status: ExitStatus) -> bool {
    status.success() || status.signal() == Some(libc::SIGTERM)
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        None => "unknown status".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => s.to_string(),
        },
    }
}
