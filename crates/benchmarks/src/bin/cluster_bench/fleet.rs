//! The fleet simulation: `--nodes` registrants in this process, each the `cluster` crate's own `Etcd` (its own
//! connection and lease, renewed every third of the TTL, as a baton node has), with `--instances` instances each,
//! against the same etcd and front doors. The instances' addresses are never dialled (the front doors' pool has no
//! health check and gets no traffic): what is measured is the registry and the front doors' discovery.

use std::time::{Duration, SystemTime};

use cluster::{Etcd, InstanceKey, Options, Registrant, Registry, State};
use etcd_client::Client;

use crate::measure::{FrontDoor, Stats, Watcher, ms};
use crate::{Args, Bed, PREFIX, TTL_SECS};

/// One registrant and the keys of its instances.
struct Node {
    etcd: Etcd,
    keys: Vec<InstanceKey>,
}

/// The figures of one kind of change.
struct Row {
    what: String,
    changes: usize,
    events: Vec<u64>,
    swaps: Vec<usize>,
    times: Vec<Duration>,
}

impl Row {
    fn new(what: &str) -> Row {
        Row {
            what: what.to_owned(),
            changes: 0,
            events: Vec::new(),
            swaps: Vec::new(),
            times: Vec::new(),
        }
    }

    /// One change: the watch events it caused, each front door's swaps, the time to the last one.
    fn record(&mut self, events: u64, swaps: Vec<usize>, took: Duration) {
        self.changes += 1;
        self.events.push(events);
        self.swaps.extend(swaps);
        self.times.push(took);
    }

    fn markdown(&self) -> String {
        let stats = Stats::of(&self.times);
        format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            self.what,
            self.changes,
            spread(&self.events),
            spread(&self.swaps),
            ms(stats.median),
            stats.range()
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "what": self.what,
            "changes": self.changes,
            "watch_events": self.events,
            "swaps_per_front_door": self.swaps,
            "ms": Stats::of(&self.times).millis(),
        })
    }
}

/// `n` or `lowest–highest`.
fn spread<T: Ord + Copy + std::fmt::Display>(values: &[T]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
        (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
        _ => "n/a".to_owned(),
    }
}

/// Instance `instance` of node `node`, at an address no other node's instance has (a front door merges equal
/// addresses): 127.0.X.Y, from the node's number.
fn registrant(node: usize, instance: &str, port: u16) -> Registrant {
    let (host, last) = (1 + node / 250, 1 + node % 250);
    Registrant {
        service: "web".parse().expect("a valid name"),
        id: format!("i{instance}").parse().expect("a valid name"),
        version: "v1".parse().expect("a valid version"),
        address: format!("127.0.{host}.{last}:{port}")
            .parse()
            .expect("an address"),
        state: State::Ready,
        weight: 1,
    }
}

async fn connect(bed: &Bed, node: usize) -> anyhow::Result<Etcd> {
    let settings = config::Cluster {
        endpoints: bed.etcd.endpoints(),
        prefix: PREFIX.to_owned(),
        node: Some(format!("sim-{node}")),
        advertise: "127.0.0.1".to_owned(),
        lease_ttl: Duration::from_secs(TTL_SECS),
        credentials: None,
        tls: None,
    };
    Ok(Etcd::connect(&settings, Options::for_ttl(settings.lease_ttl)).await?)
}

/// Registers `instances` instances of node `node`.
async fn register_all(
    etcd: &Etcd,
    node: usize,
    instances: usize,
) -> anyhow::Result<Vec<InstanceKey>> {
    let mut keys = Vec::new();
    for i in 0..instances {
        let port = 10_000 + i as u16;
        keys.push(
            etcd.register(registrant(node, &i.to_string(), port))
                .await?,
        );
    }
    Ok(keys)
}

/// Waits until every front door applied a set of `members` at `revision` or later; the last one's time after
/// `started`, and each one's swaps since its mark.
async fn converged(
    doors: &mut [FrontDoor],
    marks: &[usize],
    members: usize,
    revision: i64,
    started: SystemTime,
) -> anyhow::Result<(Duration, Vec<usize>)> {
    let mut last = started;
    let mut swaps = Vec::new();
    for (door, from) in doors.iter_mut().zip(marks) {
        let (next, at) = door
            .applied(*from, |n, r| n == members && r >= revision)
            .await?;
        last = last.max(at);
        swaps.push(door.swaps(*from, next));
    }
    Ok((last.duration_since(started).unwrap_or_default(), swaps))
}

pub(crate) async fn run(
    bed: &Bed,
    doors: &mut [FrontDoor],
    args: &Args,
) -> anyhow::Result<(String, serde_json::Value)> {
    let total = args.nodes * args.instances;
    let mut client = Client::connect(bed.etcd.endpoints(), None).await?;
    let watcher = Watcher::start(&mut client, &format!("{PREFIX}/services/web/instances/")).await?;
    let mut nodes = Vec::new();
    for n in 0..args.nodes {
        nodes.push(Node {
            etcd: connect(bed, n).await?,
            keys: Vec::new(),
        });
    }
    let mut rows = Vec::new();

    // The initial fill: every node registers its instances, all nodes at once.
    let mut fill = Row::new(&format!(
        "fill: {} nodes register {} instances each, all at once",
        args.nodes, args.instances
    ));
    let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
    let events_before = watcher.events();
    let started = SystemTime::now();
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let etcd = node.etcd.clone();
        let instances = args.instances;
        tasks.push(tokio::spawn(async move {
            register_all(&etcd, n, instances).await
        }));
    }
    for (node, task) in nodes.iter_mut().zip(tasks) {
        node.keys = task.await??;
    }
    watcher.until_events(events_before + total as u64).await?;
    let (took, swaps) = converged(doors, &marks, total, watcher.revision(), started).await?;
    fill.record(watcher.events() - events_before, swaps, took);
    fill.changes = total;
    rows.push(fill);

    // Single changes: one instance deregistered, then registered again.
    let mut single = Row::new("one instance deregistered or registered");
    for round in 0..args.fleet_rounds {
        let n = (round * 37) % args.nodes;
        for removal in [true, false] {
            let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
            let events_before = watcher.events();
            let started = SystemTime::now();
            let (members, revision) = match removal {
                true => (
                    total - 1,
                    nodes[n].etcd.deregister(&nodes[n].keys[0]).await?,
                ),
                false => {
                    let key = nodes[n].etcd.register(registrant(n, "0", 10_000)).await?;
                    nodes[n].keys[0] = key;
                    watcher.until_events(events_before + 1).await?;
                    (total, watcher.revision())
                }
            };
            let (took, swaps) = converged(doors, &marks, members, revision, started).await?;
            watcher.until_events(events_before + 1).await?;
            single.record(watcher.events() - events_before, swaps, took);
        }
    }
    rows.push(single);

    // A node leaves (its lease revoked: all its keys go in one revision), then joins again.
    let mut leave = Row::new(&format!(
        "a node leaves (lease revoked: {} keys at once)",
        args.instances
    ));
    let mut join = Row::new(&format!(
        "a node joins ({} instances registered one after the other)",
        args.instances
    ));
    for round in 0..args.fleet_rounds {
        let n = (round * 53 + 11) % args.nodes;
        let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
        let events_before = watcher.events();
        let started = SystemTime::now();
        nodes[n].etcd.close().await?;
        watcher
            .until_events(events_before + args.instances as u64)
            .await?;
        let (took, swaps) = converged(
            doors,
            &marks,
            total - args.instances,
            watcher.revision(),
            started,
        )
        .await?;
        leave.record(watcher.events() - events_before, swaps, took);

        let etcd = connect(bed, n).await?;
        let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
        let events_before = watcher.events();
        let started = SystemTime::now();
        let keys = register_all(&etcd, n, args.instances).await?;
        watcher
            .until_events(events_before + args.instances as u64)
            .await?;
        let (took, swaps) = converged(doors, &marks, total, watcher.revision(), started).await?;
        nodes[n] = Node { etcd, keys };
        join.record(watcher.events() - events_before, swaps, took);
    }
    rows.push(leave);
    rows.push(join);

    // A burst: every node replaces one of its instances at once (a deregistration and a registration each).
    let mut burst = Row::new(&format!(
        "burst: all {} nodes replace one instance at once ({} changes)",
        args.nodes,
        args.nodes * 2
    ));
    let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
    let events_before = watcher.events();
    let started = SystemTime::now();
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let etcd = node.etcd.clone();
        let old = node.keys[1].clone();
        tasks.push(tokio::spawn(async move {
            etcd.deregister(&old).await?;
            etcd.register(registrant(n, "new", 10_999)).await
        }));
    }
    for (node, task) in nodes.iter_mut().zip(tasks) {
        node.keys[1] = task.await??;
    }
    watcher
        .until_events(events_before + 2 * args.nodes as u64)
        .await?;
    let (took, swaps) = converged(doors, &marks, total, watcher.revision(), started).await?;
    burst.record(watcher.events() - events_before, swaps, took);
    burst.changes = 2 * args.nodes;
    rows.push(burst);

    for node in &nodes {
        let _ = node.etcd.close().await;
    }
    let mut md = format!(
        "\n### A fleet: {} nodes × {} instances ({total} registered instances), {} front doors watching\n\n",
        args.nodes,
        args.instances,
        doors.len()
    );
    md.push_str("| change | changes | watch events received per front door | snapshot swaps per front door | time to the last front door (median) | range |\n|---|---|---|---|---|---|\n");
    for row in &rows {
        md.push_str(&row.markdown());
    }
    let json = rows.iter().map(Row::json).collect::<Vec<_>>();
    Ok((md, json.into()))
}
