//! Cluster mode on one real etcd: how fast the front doors follow the registry.
//!
//! Starts a one-member etcd on loopback and `--front-doors` `baton serve` nodes whose pool discovers `web`, then
//! measures three things, each from the wall clock just before the cause to the timestamp of the last front door's
//! `discovered members applied` log line (the line follows the snapshot swap: from then on that front door routes by
//! the change):
//!
//! 1. **A node's death**: a `baton serve` node with two instances of `baton demo-app` registered, left running one
//!    TTL plus a phase spread across a renewal period (a third of the TTL) over the rounds, then `kill -9` of it and
//!    of its instances; until every front door has removed them. Once per `--ttls` value, `--death-rounds` times
//!    each.
//! 2. **A registry change**: a key written (then deleted) by a raw etcd client; until every front door routes by it.
//!    `--change-rounds` times each.
//! 3. **A fleet**: `--nodes` in-process registrants (the `cluster` crate's own `Etcd`, one connection and one lease
//!    each, as a baton node has) with `--instances` instances each; the initial fill, then single changes, a node
//!    leaving (its lease revoked: all its keys in one revision) and a burst (every node replaces one instance at
//!    once). Per change: the watch events a watcher of the prefix receives (what each front door's watch gets),
//!    the snapshot swaps of each front door, and the propagation time.
//!
//! ```sh
//! cargo build --release --features baton/cluster -p baton -p benchmarks
//! target/release/cluster_bench --json-out run.json   # Markdown on stdout
//! ```
//!
//! `bench/cluster.sh` runs it and records the figures in `docs/BENCHMARKS.md`. Exits 2 if the run could not be
//! carried out.

mod fleet;
mod measure;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use benchmarks::{runtime, sibling, spawn_baton};
use clap::Parser;
use etcd_client::{Client, PutOptions};
use measure::{FrontDoor, Stats, ms};
use testkit::etcd::Etcd;
use testkit::{Proc, TempDir};
use tokio::process::Command;

/// How fast front doors follow the registry.
#[derive(Debug, Parser)]
#[command(name = "cluster_bench")]
pub(crate) struct Args {
    /// The `baton` binary, built with `--features cluster` (default: `baton` next to this program).
    #[arg(long)]
    baton: Option<PathBuf>,
    /// Front doors (`baton serve` nodes that discover `web`).
    #[arg(long, default_value_t = 3)]
    front_doors: usize,
    /// Lease TTLs (seconds) of the node killed in the death rounds.
    #[arg(long, value_delimiter = ',', default_value = "3,10")]
    ttls: Vec<u64>,
    /// Deaths per TTL.
    #[arg(long, default_value_t = 5)]
    death_rounds: usize,
    /// Registry changes (a write, then a deletion, counts two).
    #[arg(long, default_value_t = 20)]
    change_rounds: usize,
    /// Registrants of the fleet simulation.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Instances of each registrant.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Single changes, and node departures, in the fleet.
    #[arg(long, default_value_t = 10)]
    fleet_rounds: usize,
    /// Directory for the configs and the control sockets (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// The key prefix every node of the run uses.
pub(crate) const PREFIX: &str = "/bench";
/// The lease TTL of the front doors and of the fleet's registrants.
pub(crate) const TTL_SECS: u64 = 10;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(&args)));
    match result {
        Ok((markdown, json)) => {
            print!("{markdown}");
            if let Some(path) = &args.json_out {
                if let Err(e) = std::fs::write(path, format!("{json:#}\n")) {
                    eprintln!("cluster_bench: could not write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cluster_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The place every node is started in: etcd, the temp dir, the binary.
pub(crate) struct Bed {
    pub(crate) etcd: Etcd,
    pub(crate) dir: PathBuf,
    pub(crate) baton: PathBuf,
    _temp: Option<TempDir>,
}

impl Bed {
    /// `[cluster]` and the discovering pool of a node named `node`.
    fn cluster_config(&self, node: &str, ttl: u64) -> String {
        format!(
            r#"[[listener]]
name = "http"
address = "127.0.0.1:0"

[cluster]
endpoints = [{endpoints}]
prefix = "{PREFIX}"
node = "{node}"
advertise = "127.0.0.1"
lease_ttl = "{ttl}s"

[pool.everywhere]
discover = "web"

[[route]]
pool = "everywhere"
"#,
            endpoints = self.etcd.toml_endpoints(),
        )
    }

    /// Starts `baton serve` on `config` as node `name`, ready.
    async fn serve(&self, name: &str, config: &str) -> anyhow::Result<Proc> {
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        let mut command = Command::new(&self.baton);
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .arg("--control")
            .arg(self.dir.join(format!("{name}.sock")));
        let mut process = spawn_baton(&mut command)?;
        process
            .wait_from(0, "baton ready", |l| l.contains(" ready"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", process.dump()))?;
        Ok(process)
    }

    /// The front doors, each routing to `members` discovered members.
    async fn front_doors(&self, n: usize) -> anyhow::Result<Vec<FrontDoor>> {
        let mut doors = Vec::new();
        for i in 0..n {
            let name = format!("door-{i}");
            let process = self
                .serve(&name, &self.cluster_config(&name, TTL_SECS))
                .await?;
            doors.push(FrontDoor { name, process });
        }
        Ok(doors)
    }
}

async fn run(args: &Args) -> anyhow::Result<(String, serde_json::Value)> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(TempDir::new("cluster-bench")),
    };
    let dir = match (&args.dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => unreachable!("a temp dir without --dir"),
    };
    let bed = Bed {
        etcd: Etcd::start(Ipv4Addr::LOCALHOST).await,
        dir,
        baton: sibling(&args.baton, "baton"),
        _temp: temp,
    };
    let mut doors = bed.front_doors(args.front_doors).await?;
    let mut md = String::new();
    let mut json = serde_json::Map::new();

    // 1. Deaths.
    md.push_str("### A node killed (`kill -9` of baton and its instances) until the last front door removed its instances\n\n");
    md.push_str("| lease TTL | rounds | median | range | median / TTL |\n|---|---|---|---|---|\n");
    let mut deaths = Vec::new();
    for &ttl in &args.ttls {
        let mut times = Vec::new();
        for round in 0..args.death_rounds {
            let took = death(&bed, &mut doors, ttl, round, args.death_rounds).await?;
            eprintln!("death round {round} (TTL {ttl} s): {took:?}");
            times.push(took);
        }
        let stats = Stats::of(&times);
        md.push_str(&format!(
            "| {ttl} s | {} | {} | {} | {:.2} |\n",
            times.len(),
            ms(stats.median),
            stats.range(),
            stats.median.as_secs_f64() / ttl as f64
        ));
        deaths.push(serde_json::json!({"ttl_s": ttl, "ms": stats.millis()}));
    }
    json.insert("deaths".into(), deaths.into());

    // 2. Registry changes.
    let changes = changes(&bed, &mut doors, args.change_rounds).await?;
    let stats = Stats::of(&changes);
    md.push_str(&format!(
        "\n### A registry change until every front door routes by it\n\n| changes | median | range |\n|---|---|---|\n| {} | {} | {} |\n",
        changes.len(),
        ms(stats.median),
        stats.range()
    ));
    json.insert("changes".into(), serde_json::json!({"ms": stats.millis()}));

    // 3. The fleet.
    let (fleet_md, fleet_json) = fleet::run(&bed, &mut doors, args).await?;
    md.push_str(&fleet_md);
    json.insert("fleet".into(), fleet_json);
    json.insert(
        "setup".into(),
        serde_json::json!({
            "front_doors": args.front_doors,
            "front_door_ttl_s": TTL_SECS,
            "nodes": args.nodes,
            "instances": args.instances,
        }),
    );
    Ok((md, json.into()))
}

/// One death: a node with two instances joins, every front door routes to them, then it is killed; the time from
/// the kill until the last front door has removed them.
async fn death(
    bed: &Bed,
    doors: &mut [FrontDoor],
    ttl: u64,
    round: usize,
    rounds: usize,
) -> anyhow::Result<Duration> {
    let name = format!("victim-{ttl}-{round}");
    let exe = bed.baton.display().to_string().replace('"', "\\\"");
    let config = format!(
        r#"{cluster}
[service.web]
command = ["{exe}", "demo-app", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
instances = 2
ready_timeout = "10s"

[service.web.health]
path = "/healthz"
interval = "100ms"
timeout = "80ms"
healthy_threshold = 1
"#,
        cluster = bed.cluster_config(&name, ttl)
    );
    let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
    let mut victim = bed.serve(&name, &config).await?;
    for (door, from) in doors.iter_mut().zip(&marks) {
        door.applied(*from, |members, _| members == 2).await?;
    }
    // A node's lease was renewed up to a third of the TTL before it dies. Killed right after it registered, it
    // would die with a fresh lease; so it runs one TTL (renewing) plus a phase spread over the rounds across that
    // third. A fixed wait, not a sleep for an event: the point is where the kill lands in the renewal cycle.
    let phase = Duration::from_secs(ttl).mul_f64((round as f64 + 0.5) / rounds as f64 / 3.0);
    tokio::time::sleep(Duration::from_secs(ttl) + phase).await;
    let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
    let pids = victim.instance_pids();
    let killed = SystemTime::now();
    victim.signal(libc::SIGKILL);
    for pid in pids {
        testkit::signal(pid, libc::SIGKILL);
    }
    let _ = victim.child.wait().await;
    victim.instances_stopped();
    let mut last = killed;
    for (door, from) in doors.iter_mut().zip(&marks) {
        let (_, at) = door.applied(*from, |members, _| members == 0).await?;
        last = last.max(at);
    }
    Ok(last.duration_since(killed).unwrap_or_default())
}

/// Registry changes by a raw client: an instance written under a lease, then deleted, in turn; for each, the time
/// until the last front door applied the change's revision.
async fn changes(
    bed: &Bed,
    doors: &mut [FrontDoor],
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut client = Client::connect(bed.etcd.endpoints(), None).await?;
    let lease = client.lease_grant(60, None).await?.id();
    let key = format!("{PREFIX}/services/web/instances/raw/app-1");
    let value = r#"{"service":"web","version":"v1","address":"127.0.0.1:9","node":"raw","state":"ready","registered_at":"2026-12-02T15:04:05Z"}"#;
    let mut times = Vec::new();
    for round in 0..rounds {
        let marks: Vec<usize> = doors.iter().map(FrontDoor::mark).collect();
        let started = SystemTime::now();
        let (revision, members) = match round % 2 {
            0 => {
                let put = client
                    .put(
                        key.clone(),
                        value,
                        Some(PutOptions::new().with_lease(lease)),
                    )
                    .await?;
                (put.header().map_or(0, |h| h.revision()), 1)
            }
            _ => {
                let del = client.delete(key.clone(), None).await?;
                (del.header().map_or(0, |h| h.revision()), 0)
            }
        };
        let mut last = started;
        for (door, from) in doors.iter_mut().zip(&marks) {
            let (_, at) = door
                .applied(*from, |n, r| n == members && r >= revision)
                .await?;
            last = last.max(at);
        }
        times.push(last.duration_since(started).unwrap_or_default());
    }
    client.lease_revoke(lease).await?;
    Ok(times)
}
