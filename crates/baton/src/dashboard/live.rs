//! What the dashboard remembers between two looks: the last deploy of each
//! service with its progress events as they came ([`Live::tee`]), and the
//! recent past of every pool and member — one sample a second of the
//! proxy's readings ([`Live::sample`]), from which rates, error rates and
//! p99s over a short window and the graphs' points are computed.
//!
//! Everything here is read from counters the proxy keeps anyway, once a
//! second and off the request path; it must never add work to a request.
//! It is bounded: a point per pool per second for [`POINTS`] seconds, a
//! window of [`WINDOW`] samples per member, [`MAX_EVENTS`] events per
//! deploy, one deploy per service of the config (a deploy refused before
//! it started leaves nothing, so a client cannot add names).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handoff::http::Stop;
use proxy::{PoolReading, StatsSnapshot};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the proxy's readings are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Points kept per pool for the graphs: five minutes.
pub const POINTS: usize = 300;
/// Samples over which the current rates, error rates and p99s are
/// computed: the last five seconds.
pub const WINDOW: usize = 5;
/// Progress events kept per deploy (a rolling deploy of many instances
/// reports one per instance); later ones are counted, not kept.
pub const MAX_EVENTS: usize = 512;

/// The dashboard's shared state; cheap to clone.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Inner>,
}

struct Inner {
    deploys: Mutex<BTreeMap<String, LiveDeploy>>,
    history: Mutex<History>,
    /// Bumped after every sample and every progress event: the event
    /// streams send a snapshot on each change.
    changed: watch::Sender<u64>,
    /// Set when baton stops: the event streams end.
    closed: AtomicBool,
}

/// One deploy or rollback as the dashboard shows it: the last of its
/// service, running or over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveDeploy {
    /// The service.
    pub service: String,
    /// `deploy`, `rollback`, or `reload` (a service's change started by a
    /// reload or `baton apply`: a deploy, or a scaling).
    pub kind: &'static str,
    /// The version it moves to.
    pub version: String,
    /// `rolling`, `blue_green` or `canary`.
    pub strategy: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it ended, once it has.
    pub ended_ms: Option<u64>,
    /// Whether it still runs.
    pub running: bool,
    /// Whether it succeeded, once it ended.
    pub ok: Option<bool>,
    /// Why it failed.
    pub error: Option<String>,
    /// The share of the traffic on the new version, as last reported.
    pub share: Option<u8>,
    /// Its progress events, oldest first (at most [`MAX_EVENTS`]).
    pub events: Vec<LiveEvent>,
    /// Events left out past [`MAX_EVENTS`].
    pub events_dropped: usize,
}

/// One progress event and when it came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// The event (`{"event": "traffic", "percent": 20}`, …).
    #[serde(flatten)]
    pub progress: deploy::Progress,
}

/// One point of a pool's graphs: its requests over one sample's interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// When the sample was taken, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Requests that ended, per second.
    pub requests_per_s: f64,
    /// Failed share of them (none without requests).
    pub error_rate: Option<f64>,
    /// Their p99 latency in milliseconds (none without requests).
    pub p99_ms: Option<f64>,
}

/// Rates over the last [`WINDOW`] samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Requests that ended, per second.
    pub requests_per_s: f64,
    /// Failures per second.
    pub errors_per_s: f64,
    /// Failed share of the requests (none without requests).
    pub error_rate: Option<f64>,
    /// p99 latency in milliseconds (none without requests).
    pub p99_ms: Option<f64>,
}

impl Rates {
    /// The rates of `delta`, counted over `seconds`.
    pub fn of(delta: &StatsSnapshot, seconds: f64) -> Rates {
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Rates {
            requests_per_s: per_s(delta.requests()),
            errors_per_s: per_s(delta.failures()),
            error_rate: delta.error_rate(),
            p99_ms: delta.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// The samples of one pool and of its members.
#[derive(Debug, Default)]
struct PoolHistory {
    /// The last `WINDOW + 1` samples of the pool's stats.
    window: VecDeque<(Instant, StatsSnapshot)>,
    points: VecDeque<Point>,
    members: BTreeMap<String, VecDeque<(Instant, StatsSnapshot)>>,
}

/// The recent past of every pool, and the last readings.
#[derive(Debug, Default)]
pub struct History {
    pools: BTreeMap<String, PoolHistory>,
    /// Every route read at the last sample, by label.
    routes: HashMap<String, RouteRate>,
    /// When the routes were last read, and how many times.
    routes_read: Option<(Instant, u64)>,
}

/// One route between two samples.
#[derive(Debug)]
struct RouteRate {
    /// Its requests so far, at the last sample.
    total: u64,
    /// Its requests per second between the last two samples (0 after its
    /// first).
    per_s: f64,
    /// The sample that last read it.
    read: u64,
}

/// The window's first and last samples: what happened between them, over
/// how many seconds.
fn window_delta(window: &VecDeque<(Instant, StatsSnapshot)>) -> Option<(StatsSnapshot, f64)> {
    let ((t0, first), (t1, last)) = (window.front()?, window.back()?);
    let seconds = t1.saturating_duration_since(*t0).as_secs_f64();
    Some((last.since(first), seconds))
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, bound: usize) {
    queue.push_back(item);
    while queue.len() > bound {
        queue.pop_front();
    }
}

impl History {
    /// Records one sample of the pools taken at `now` (`t_ms` since the
    /// Unix epoch); pools and members no longer read are forgotten.
    pub fn record(&mut self, now: Instant, t_ms: u64, pools: &[PoolReading]) {
        self.pools
            .retain(|name, _| pools.iter().any(|p| &p.name == name));
        for pool in pools {
            let h = self.pools.entry(pool.name.clone()).or_default();
            if let Some((then, previous)) = h.window.back() {
                let seconds = now.saturating_duration_since(*then).as_secs_f64();
                let rates = Rates::of(&pool.stats.since(previous), seconds);
                let point = Point {
                    t_ms,
                    requests_per_s: rates.requests_per_s,
                    error_rate: rates.error_rate,
                    p99_ms: rates.p99_ms,
                };
                push_bounded(&mut h.points, point, POINTS);
            }
            push_bounded(&mut h.window, (now, pool.stats.clone()), WINDOW + 1);
            h.members
                .retain(|address, _| pool.members.iter().any(|m| &m.address == address));
            for m in &pool.members {
                let window = h.members.entry(m.address.clone()).or_default();
                push_bounded(window, (now, m.stats.clone()), WINDOW + 1);
            }
        }
    }

    /// Records one sample of the routes taken at `now`: `read` calls the
    /// function it is given with each route's label and total (as
    /// [`proxy::Proxy::route_totals`] does); routes no longer read are
    /// forgotten. A route already known costs a lookup, no allocation:
    /// with 10,000 routes this runs every second.
    pub fn record_routes(&mut self, now: Instant, read: impl FnOnce(&mut dyn FnMut(&str, u64))) {
        let (seconds, sample) = match self.routes_read {
            Some((then, n)) => (now.saturating_duration_since(then).as_secs_f64(), n + 1),
            None => (0.0, 1),
        };
        let routes = &mut self.routes;
        read(&mut |label, total| match routes.get_mut(label) {
            Some(r) => {
                r.per_s = match seconds > 0.0 {
                    true => total.saturating_sub(r.total) as f64 / seconds,
                    false => 0.0,
                };
                r.total = total;
                r.read = sample;
            }
            None => {
                let fresh = RouteRate {
                    total,
                    per_s: 0.0,
                    read: sample,
                };
                routes.insert(label.to_owned(), fresh);
            }
        });
        routes.retain(|_, r| r.read == sample);
        self.routes_read = Some((now, sample));
    }

    /// A pool's rates over the window.
    pub fn pool_rates(&self, pool: &str) -> Rates {
        self.pools
            .get(pool)
            .and_then(|h| window_delta(&h.window))
            .map(|(d, s)| Rates::of(&d, s))
            .unwrap_or_default()
    }

    /// A member's rates over the window.
    pub fn member_rates(&self, pool: &str, address: &str) -> Rates {
        self.member_delta(pool, address)
            .map(|(d, s)| Rates::of(&d, s))
            .unwrap_or_default()
    }

    /// Several members of a pool taken together (a set of a service) over
    /// the window.
    pub fn members_rates<'a>(&self, pool: &str, addresses: impl Iterator<Item = &'a str>) -> Rates {
        let mut sum = StatsSnapshot::default();
        let mut seconds = 0.0f64;
        for address in addresses {
            if let Some((d, s)) = self.member_delta(pool, address) {
                sum.merge(&d);
                seconds = seconds.max(s);
            }
        }
        Rates::of(&sum, seconds)
    }

    fn member_delta(&self, pool: &str, address: &str) -> Option<(StatsSnapshot, f64)> {
        window_delta(self.pools.get(pool)?.members.get(address)?)
    }

    /// A pool's points taken after `since_ms`.
    pub fn points(&self, pool: &str, since_ms: Option<u64>) -> Vec<Point> {
        let Some(h) = self.pools.get(pool) else {
            return Vec::new();
        };
        h.points
            .iter()
            .filter(|p| since_ms.is_none_or(|s| p.t_ms > s))
            .copied()
            .collect()
    }

    /// A route's requests per second over the last interval.
    pub fn route_rate(&self, label: &str) -> f64 {
        self.routes.get(label).map_or(0.0, |r| r.per_s)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Default for Live {
    fn default() -> Live {
        Live::new()
    }
}

impl Live {
    /// Nothing seen yet.
    pub fn new() -> Live {
        Live {
            inner: Arc::new(Inner {
                deploys: Mutex::new(BTreeMap::new()),
                history: Mutex::new(History::default()),
                changed: watch::Sender::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Samples `proxy`'s readings every [`SAMPLE_EVERY`] until `stop`,
    /// then ends every event stream.
    pub fn sample(
        &self,
        proxy: Arc<proxy::Proxy>,
        mut stop: watch::Receiver<Stop>,
    ) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s != Stop::Run) => break,
                }
                let pools = proxy.readings();
                let now = Instant::now();
                live.with_history(|h| {
                    h.record(now, now_ms(), &pools);
                    h.record_routes(now, |each| proxy.route_totals(each));
                });
                live.bump();
            }
            live.inner.closed.store(true, Ordering::Release);
            live.bump();
        })
    }

    /// Reads or changes the history, under its lock (never held across
    /// an await).
    pub fn with_history<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        let mut h = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut h)
    }

    /// The last deploy of every service, running ones first, then the most
    /// recent.
    pub fn deploys(&self) -> Vec<LiveDeploy> {
        let deploys = self
            .inner
            .deploys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LiveDeploy> = deploys.values().cloned().collect();
        out.sort_by_key(|d| (!d.running, std::cmp::Reverse(d.started_ms)));
        out
    }

    /// A receiver that sees every change; `None` once baton stops.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Whether baton is stopping (the event streams end).
    pub fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A reporter for a deploy, rollback or reload's change (`kind`) of
    /// `service` whose events also go to `client`: each is recorded here
    /// as it comes, on the deploy's own task. The dashboard's record of
    /// the deploy starts with its first event, so a request refused
    /// before it started leaves nothing.
    pub fn tee(
        &self,
        kind: &'static str,
        service: &str,
        client: deploy::Reporter,
    ) -> deploy::Reporter {
        let (live, service) = (self.clone(), service.to_owned());
        let first = AtomicBool::new(true);
        client.tapped(move |progress| {
            live.record(
                kind,
                &service,
                first.swap(false, Ordering::Relaxed),
                progress,
            );
        })
    }

    fn record(&self, kind: &'static str, service: &str, first: bool, progress: &deploy::Progress) {
        let t_ms = now_ms();
        {
            let mut deploys = self
                .inner
                .deploys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if first {
                let (version, strategy) = match progress {
                    deploy::Progress::Started {
                        version, strategy, ..
                    } => (version.clone(), strategy.clone()),
                    _ => (String::new(), String::new()),
                };
                let fresh = LiveDeploy {
                    service: service.to_owned(),
                    kind,
                    version,
                    strategy,
                    started_ms: t_ms,
                    ended_ms: None,
                    running: true,
                    ok: None,
                    error: None,
                    share: None,
                    events: Vec::new(),
                    events_dropped: 0,
                };
                deploys.insert(service.to_owned(), fresh);
            }
            let Some(d) = deploys.get_mut(service) else {
                return;
            };
            if let deploy::Progress::Traffic { percent } = progress {
                d.share = Some(*percent);
            }
            if d.events.len() < MAX_EVENTS {
                d.events.push(LiveEvent {
                    t_ms,
                    progress: progress.clone(),
                });
            } else {
                d.events_dropped += 1;
            }
        }
        self.bump();
    }

    /// Records how the running deploy of `service` ended.
    pub fn finish(&self, service: &str, result: &Result<deploy::Deployed, deploy::DeployError>) {
        let ended = match result {
            Ok(done) => Ok(Some(done.version.as_str())),
            Err(e) => Err(e.to_string()),
        };
        self.end(service, ended);
    }

    /// Records how the running change of `service` ended: `Ok` with the
    /// version it moved to when known, or why it failed. Returns the
    /// strategy of the deploy that ended, when one was running and said
    /// how it deploys (a scaling does not).
    pub fn end(&self, service: &str, result: Result<Option<&str>, String>) -> Option<String> {
        let strategy = {
            let mut deploys = self
                .inner
                .deploys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let d = deploys.get_mut(service).filter(|d| d.running)?;
            d.running = false;
            d.ended_ms = Some(now_ms());
            d.ok = Some(result.is_ok());
            match result {
                Ok(version) => {
                    if let Some(v) = version {
                        v.clone_into(&mut d.version);
                    }
                }
                Err(e) => d.error = Some(e),
            }
            Some(d.strategy.clone()).filter(|s| !s.is_empty())
        };
        self.bump();
        strategy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(
        name: &str,
        stats: &balance::Stats,
        members: &[(&str, &balance::Stats)],
    ) -> PoolReading {
        PoolReading {
            name: name.into(),
            stats: stats.snapshot(),
            queue: proxy::QueueStats::default(),
            paused: false,
            held: 0,
            members: members
                .iter()
                .map(|(address, s)| proxy::MemberReading {
                    address: (*address).into(),
                    up: true,
                    in_flight: 0,
                    stats: s.snapshot(),
                    troubles: proxy::Troubles::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn rates_and_points_come_from_the_samples_differences() {
        let (pool, a, b) = (
            balance::Stats::new(),
            balance::Stats::new(),
            balance::Stats::new(),
        );
        let mut h = History::default();
        let t0 = Instant::now();
        h.record(t0, 1_000, &[reading("web", &pool, &[("a", &a), ("b", &b)])]);
        assert!(h.points("web", None).is_empty());
        // One second: 10 requests, 2 failed, on the pool; 8 on a, 2 on b.
        for i in 0..10 {
            pool.record(Duration::from_millis(if i == 0 { 200 } else { 1 }), i < 2);
        }
        for _ in 0..8 {
            a.record(Duration::from_millis(1), false);
        }
        for _ in 0..2 {
            b.record(Duration::from_millis(1), true);
        }
        h.record(
            t0 + Duration::from_secs(1),
            2_000,
            &[reading("web", &pool, &[("a", &a), ("b", &b)])],
        );
        let points = h.points("web", None);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].t_ms, 2_000);
        assert_eq!(points[0].requests_per_s, 10.0);
        assert_eq!(points[0].error_rate, Some(0.2));
        assert!(points[0].p99_ms.is_some_and(|p| p >= 200.0), "{points:?}");
        assert!(h.points("web", Some(2_000)).is_empty());
        let rates = h.member_rates("web", "a");
        assert_eq!((rates.requests_per_s, rates.errors_per_s), (8.0, 0.0));
        let both = h.members_rates("web", ["a", "b"].into_iter());
        assert_eq!(both.requests_per_s, 10.0);
        assert_eq!(both.error_rate, Some(0.2));
        // A member that left is forgotten; so is a pool.
        h.record(
            t0 + Duration::from_secs(2),
            3_000,
            &[reading("web", &pool, &[("a", &a)])],
        );
        assert_eq!(h.member_rates("web", "b"), Rates::default());
        h.record(t0 + Duration::from_secs(3), 4_000, &[]);
        assert!(h.points("web", None).is_empty());
    }

    #[test]
    fn route_rates_come_from_the_totals_differences() {
        let mut h = History::default();
        let t0 = Instant::now();
        let sample = |h: &mut History, at: u64, routes: &[(&str, u64)]| {
            h.record_routes(t0 + Duration::from_secs(at), |each| {
                for (label, total) in routes {
                    each(label, *total);
                }
            });
        };
        sample(&mut h, 0, &[("api", 100), ("web", 7)]);
        // A first reading has no rate yet.
        assert_eq!((h.route_rate("api"), h.route_rate("web")), (0.0, 0.0));
        sample(&mut h, 2, &[("web", 27), ("api", 160)]);
        assert_eq!((h.route_rate("api"), h.route_rate("web")), (30.0, 10.0));
        // A route that left is forgotten; one that came has no rate yet.
        sample(&mut h, 3, &[("web", 30), ("new", 5)]);
        assert_eq!(h.route_rate("web"), 3.0);
        assert_eq!((h.route_rate("api"), h.route_rate("new")), (0.0, 0.0));
        assert_eq!(h.routes.len(), 2);
        // Counts read at the same instant give no rate; none go backwards.
        sample(&mut h, 3, &[("web", 30), ("new", 9)]);
        assert_eq!(h.route_rate("new"), 0.0);
        sample(&mut h, 4, &[("web", 0), ("new", 9)]);
        assert_eq!(h.route_rate("web"), 0.0);
    }

    #[test]
    fn points_and_windows_are_bounded() {
        let pool = balance::Stats::new();
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..(POINTS as u64 + 50) {
            pool.record(Duration::from_millis(1), false);
            let now = t0 + Duration::from_secs(i);
            h.record(now, i * 1000, &[reading("web", &pool, &[])]);
        }
        assert_eq!(h.points("web", None).len(), POINTS);
        assert_eq!(h.pools["web"].window.len(), WINDOW + 1);
        // One request a second over the window.
        assert_eq!(h.pool_rates("web").requests_per_s, 1.0);
    }

    #[test]
    fn a_deploy_is_recorded_from_its_first_event_to_its_end() {
        let live = Live::new();
        let mut changes = live.subscribe();
        changes.mark_unchanged();
        let started = deploy::Progress::Started {
            service: "web".into(),
            version: "v2".into(),
            strategy: "canary".into(),
            instances: 1,
        };
        live.record("deploy", "web", true, &started);
        live.record(
            "deploy",
            "web",
            false,
            &deploy::Progress::Traffic { percent: 20 },
        );
        assert!(changes.has_changed().unwrap());
        let deploys = live.deploys();
        assert_eq!(deploys.len(), 1, "{deploys:?}");
        let d = &deploys[0];
        assert_eq!((d.service.as_str(), d.version.as_str()), ("web", "v2"));
        assert_eq!((d.running, d.share, d.events.len()), (true, Some(20), 2));
        assert_eq!(
            d.events[1].progress,
            deploy::Progress::Traffic { percent: 20 }
        );
        // A service without a deploy that started is left alone.
        live.finish(
            "nope",
            &Err(deploy::DeployError::UnknownService("nope".into())),
        );
        assert_eq!(live.deploys().len(), 1);
        live.finish(
            "web",
            &Err(deploy::DeployError::UnknownService("web".into())),
        );
        let d = &live.deploys()[0];
        assert_eq!((d.running, d.ok), (false, Some(false)));
        assert!(d.ended_ms.is_some() && d.error.is_some());
        // Events past the bound are counted, not kept.
        for _ in 0..MAX_EVENTS + 3 {
            live.record(
                "deploy",
                "web",
                false,
                &deploy::Progress::Traffic { percent: 50 },
            );
        }
        let d = &live.deploys()[0];
        assert_eq!((d.events.len(), d.events_dropped), (MAX_EVENTS, 5));
    }
}
