//! What the cluster benchmark reads and how it sums it up: a front door's `discovered members applied` lines (with
//! their timestamps, members and revision), a watcher that counts the watch events of the prefix, and the median and
//! range of a list of durations.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use benchmarks::line_time;
use etcd_client::{Client, WatchOptions};
use testkit::{Proc, field};
use tokio::sync::Notify;

/// A `baton serve` node whose pool discovers `web`.
pub(crate) struct FrontDoor {
    pub(crate) name: String,
    pub(crate) process: Proc,
}

impl FrontDoor {
    /// The index of its next output line.
    pub(crate) fn mark(&self) -> usize {
        self.process.lines().len()
    }

    /// Waits, from line `from` on, for a `discovered members applied` line whose members and revision satisfy
    /// `pred`; returns the index after it and its timestamp.
    pub(crate) async fn applied(
        &mut self,
        from: usize,
        pred: impl Fn(usize, i64) -> bool,
    ) -> anyhow::Result<(usize, SystemTime)> {
        let matches =
            |l: &str| applied(l).is_some_and(|(members, revision)| pred(members, revision));
        let found = self
            .process
            .wait_from(from, "the change applied", matches)
            .await;
        match found {
            Ok((next, line)) => {
                let at =
                    line_time(&line).ok_or_else(|| anyhow::anyhow!("no timestamp on {line}"))?;
                Ok((next, at))
            }
            Err(e) => anyhow::bail!("{}: {e}\n{}", self.name, self.process.dump()),
        }
    }

    /// How many member sets it applied (snapshot swaps) in lines `from..to`.
    pub(crate) fn swaps(&self, from: usize, to: usize) -> usize {
        let lines = self.process.lines();
        let to = to.min(lines.len());
        lines[from.min(to)..to]
            .iter()
            .filter(|l| applied(l).is_some())
            .count()
    }
}

/// The members and revision of a `discovered members applied` line.
fn applied(line: &str) -> Option<(usize, i64)> {
    if !line.contains("discovered members applied") {
        return None;
    }
    let members = field(line, "members")?.parse().ok()?;
    let revision = field(line, "revision")?.parse().ok()?;
    Some((members, revision))
}

/// Counts the events of a prefix watch, as each front door's watch receives them.
pub(crate) struct Watcher {
    events: Arc<AtomicU64>,
    revision: Arc<AtomicI64>,
    seen: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Watches `prefix` from now on.
    pub(crate) async fn start(client: &mut Client, prefix: &str) -> anyhow::Result<Watcher> {
        let mut stream = client
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        let events = Arc::new(AtomicU64::new(0));
        let revision = Arc::new(AtomicI64::new(0));
        let seen = Arc::new(Notify::new());
        let (e, r, s) = (events.clone(), revision.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                e.fetch_add(response.events().len() as u64, Ordering::AcqRel);
                if let Some(header) = response.header() {
                    r.fetch_max(header.revision(), Ordering::AcqRel);
                }
                s.notify_waiters();
            }
        });
        Ok(Watcher {
            events,
            revision,
            seen,
            task,
        })
    }

    /// Events received so far.
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    /// The latest revision received.
    pub(crate) fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Waits (at most a minute) until `events` events have been received in all.
    pub(crate) async fn until_events(&self, events: u64) -> anyhow::Result<()> {
        let wait = async {
            loop {
                let notified = self.seen.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.events() >= events {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .map_err(|_| anyhow::anyhow!("the watcher saw {} events, not {events}", self.events()))
    }
}

/// The median and range of some durations.
pub(crate) struct Stats {
    pub(crate) median: Duration,
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    all: Vec<Duration>,
}

impl Stats {
    pub(crate) fn of(times: &[Duration]) -> Stats {
        let mut all = times.to_vec();
        all.sort();
        let n = all.len();
        let median = match n {
            0 => Duration::ZERO,
            _ if n % 2 == 1 => all[n / 2],
            _ => (all[n / 2 - 1] + all[n / 2]) / 2,
        };
        Stats {
            median,
            min: all.first().copied().unwrap_or_default(),
            max: all.last().copied().unwrap_or_default(),
            all,
        }
    }

    /// `lowest–highest`.
    pub(crate) fn range(&self) -> String {
        format!("{}–{}", ms(self.min), ms(self.max))
    }

    /// Every value in milliseconds, for the JSON.
    pub(crate) fn millis(&self) -> Vec<f64> {
        self.all.iter().map(|d| d.as_secs_f64() * 1000.0).collect()
    }
}

/// A duration for people: milliseconds below 10 s, else seconds.
pub(crate) fn ms(d: Duration) -> String {
    match d.as_millis() {
        m if m < 10_000 => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}
