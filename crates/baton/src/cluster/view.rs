//! The whole cluster for people and programs: `GET /v1/cluster` answers
//! with the registry's view (`cluster::View`) read by this node, and
//! `print` renders it as the cluster section of `baton status`. Without
//! cluster mode (no `[cluster]`, or a binary built without the feature)
//! the endpoint answers 404 saying so. Reads only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::control::{Ack, Ctx};

/// What `GET /v1/cluster` reads: this node's registry, when it is in a
/// cluster.
#[derive(Clone, Default)]
pub struct Viewer {
    #[cfg(feature = "cluster")]
    etcd: Option<cluster::Etcd>,
}

impl Viewer {
    #[cfg(feature = "cluster")]
    pub(super) fn new(etcd: cluster::Etcd) -> Viewer {
        Viewer { etcd: Some(etcd) }
    }
}

/// The answer without cluster mode.
const NOT_CLUSTER: &str = "this baton runs without [cluster]: it is not a node of a cluster, so there is no cluster to show";

/// `GET /v1/cluster`: 200 with the view; 404 without cluster mode; 503
/// when the registry cannot be read.
pub async fn view(State(ctx): State<Ctx>) -> Response {
    ctx.cluster.answer().await
}

impl Viewer {
    async fn answer(&self) -> Response {
        let refused = |status: StatusCode, message: String, exit: u8| {
            let ack = Ack {
                ok: false,
                errors: vec![message],
                services: Vec::new(),
                exit,
            };
            (status, Json(ack)).into_response()
        };
        #[cfg(feature = "cluster")]
        if let Some(etcd) = &self.etcd {
            return match etcd.view().await {
                Ok(view) => Json(view).into_response(),
                Err(e) => refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("could not read the cluster registry: {e}"),
                    crate::EXIT_TEMPFAIL,
                ),
            };
        }
        refused(StatusCode::NOT_FOUND, NOT_CLUSTER.to_owned(), 1)
    }
}

/// Prints the cluster section of `baton status` from the JSON of a view.
#[cfg(feature = "cluster")]
pub fn print(view: &serde_json::Value) {
    let view: cluster::View = match serde_json::from_value(view.clone()) {
        Ok(view) => view,
        Err(e) => {
            println!("\ncluster: could not read the view: {e}");
            return;
        }
    };
    println!();
    let truncated = if view.truncated {
        " (truncated: too many keys)"
    } else {
        ""
    };
    println!(
        "CLUSTER {} at revision {}, read by {}: {} node(s){truncated}",
        view.prefix,
        view.revision,
        view.read_by,
        view.nodes.len()
    );
    println!("{:<16} {:<18} {:>5}  INSTANCES", "NODE", "LEASE", "TTL");
    for node in &view.nodes {
        let instances: Vec<String> = node
            .instances
            .iter()
            .map(|i| {
                let state = if i.state == "ready" {
                    String::new()
                } else {
                    format!(" {}", i.state)
                };
                format!("{} {} {}{state}", i.service, i.version, i.address)
            })
            .collect();
        let mut instances = match instances.is_empty() {
            true => "-".to_owned(),
            false => instances.join(", "),
        };
        if !node.record {
            instances.push_str(" (no node record: not a baton node)");
        }
        println!(
            "{:<16} {:<18} {:>5}  {instances}",
            node.node,
            node.lease.as_deref().unwrap_or("-"),
            node.lease_ttl_left_s
                .map_or("-".to_owned(), |s| format!("{s}s")),
        );
    }
    if !view.services.is_empty() {
        println!();
        println!(
            "{:<16} {:<20} {:<12} {:<20} DEPLOY LOCK",
            "SERVICE", "DESIRED", "PREVIOUS", "READY"
        );
    }
    for service in &view.services {
        let (desired, previous) = match &service.desired {
            Some(d) => {
                let back = d
                    .desired
                    .rollback_of
                    .as_ref()
                    .map(|v| format!(", back from {v}"))
                    .unwrap_or_default();
                let strategy = match d.desired.strategy {
                    config::Strategy::Rolling => String::new(),
                    other => format!(", {other}"),
                };
                (
                    format!("{} (rev {}{strategy}{back})", d.desired.version, d.revision),
                    d.desired
                        .previous
                        .as_ref()
                        .map_or("-".to_owned(), ToString::to_string),
                )
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        let ready: Vec<String> = service
            .ready
            .iter()
            .map(|(version, n)| format!("{version}: {n}"))
            .collect();
        let lock = match &service.lock {
            Some(h) => format!("held by {} since {}", h.node, h.acquired_at),
            None => "free".to_owned(),
        };
        println!(
            "{:<16} {:<20} {:<12} {:<20} {lock}",
            service.service,
            desired,
            previous,
            ready.join(", ")
        );
        if let Some(active) = &service.active {
            println!(
                "  active {} (switched by {} at {}): front doors route to it only",
                active.version, active.by, active.at
            );
        }
        for slot in &service.slots {
            println!(
                "  slot {} held by {} since {}",
                slot.index, slot.holder.node, slot.holder.acquired_at
            );
        }
        for report in &service.nodes {
            let reason = report
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!(
                "  {:<14} {} {} (rev {}, {} instance(s)){reason}",
                report.node, report.state, report.version, report.desired, report.instances
            );
        }
    }
    for why in &view.invalid {
        println!("ignored: {why}");
    }
}

/// Without the feature this binary cannot read a view's types; the JSON
/// (`status --json`) has it all.
#[cfg(not(feature = "cluster"))]
pub fn print(_view: &serde_json::Value) {
    println!(
        "\ncluster: this baton was built without cluster support; `baton status --json` shows the cluster"
    );
}
