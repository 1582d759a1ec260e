//! The control API of `baton serve`: a small JSON API on a Unix socket
//! (mode 0600, so only baton's user can deploy). The CLI's side is in
//! `client.rs`; the types both sides share are here.
//!
//! - `POST /v1/deploy` and `POST /v1/rollback` answer with a stream of
//!   JSON lines: the deploy's progress events as they happen, then one
//!   `{"event":"result","outcome":…}` line. A request refused before
//!   anything changed (unknown service, bad version, a deploy already
//!   running) gets an error status and only the result line. The deploy
//!   runs on its own task: a client that goes away does not stop it.
//! - `GET /v1/status`: every service.
//! - `GET /v1/certificates`: every certificate served, and ACME's state.
//! - `GET /v1/cluster`: the whole cluster, as the registry shows it (404
//!   without cluster mode): in `cluster/view.rs`.
//! - `POST /v1/pause`, `POST /v1/resume`, `POST /v1/reload`: an `Ack`
//!   (a reload's lists the services it changes; their deploys go on).
//! - `GET /v1/config` (the live config and its revision) and
//!   `POST /v1/apply` (a config text applied, streamed like a deploy): in
//!   `reload.rs`.
//! - `GET /metrics`: the Prometheus text exposition (`metrics.rs`).
//! - `GET /v1/events`: the dashboard's stream of snapshots, and the
//!   dashboard's page itself (`dashboard.rs`).
//!
//! The same routes are served on TCP behind a bearer token when the config
//! has `[admin]` (`admin.rs`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use handoff::http::{Server, Stop};
use handoff::{Listener, Listeners, NamedListener};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// `POST /v1/deploy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// `POST /v1/rollback`, `/v1/resume`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub service: String,
}

/// `POST /v1/pause`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PauseRequest {
    pub service: String,
    /// How long a request may be held, in milliseconds (default 30 s).
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    /// How many requests may be held at once (default 10,000).
    #[serde(default)]
    pub max_requests: Option<usize>,
}

/// How a deploy or rollback ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    pub service: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<deploy::Traffic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exit code the CLI should end with.
    pub exit: u8,
}

/// The answer to pause, resume and reload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ack {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// A reload's: each service it changes, as `NAME: added` (`removed`,
    /// `changed`); their deploys run on after the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    pub exit: u8,
}

/// What the control API's handlers reach; the same on the Unix socket and
/// on the admin listener.
#[derive(Clone)]
pub struct Ctx {
    pub engine: deploy::Engine,
    pub proxy: Arc<proxy::Proxy>,
    pub reload: Arc<crate::reload::Reloader>,
    pub counters: Arc<Counters>,
    pub certs: crate::certs::Certs,
    pub upgrader: crate::upgrade::Upgrader,
    pub live: crate::dashboard::Live,
    pub cluster: crate::cluster::Viewer,
}

/// `POST /v1/upgrade`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UpgradeRequest {
    /// How long the new process may take to be ready, in milliseconds
    /// (default 30 s).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Every route of the control API.
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/deploy", post(deploy))
        .route("/v1/rollback", post(rollback))
        .route("/v1/status", get(status))
        .route("/v1/certificates", get(certificates))
        .route("/v1/cluster", get(crate::cluster::view))
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/reload", post(reload))
        .route("/v1/upgrade", post(upgrade))
        .route("/v1/config", get(crate::reload::live_config))
        .route("/v1/apply", post(crate::reload::apply))
        .route("/metrics", get(metrics))
        .route("/v1/events", get(crate::dashboard::events))
        .merge(crate::dashboard::assets())
        .with_state(ctx)
}

/// Binds the control socket (mode 0600) and serves `app` on it until
/// `stop`.
pub fn start(
    path: &Path,
    app: Router,
    stop: watch::Receiver<Stop>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // 0600 before anyone can connect, whatever the umask; in an upgrade's
    // new process, the old one's socket.
    let listener = crate::upgrade::own_listener("control", || {
        Listener::bind_unix(path, 0o600)
            .with_context(|| format!("could not open the control socket {}", path.display()))
    })?;
    let server = Server::new(Listeners::from_listeners(vec![NamedListener {
        name: "control".into(),
        listener,
    }]))
    .notify(false)
    // A deploy's stream may outlive the drain; it is cut at baton's exit.
    .drain_timeout(Duration::from_secs(1))
    .with_stop(stop);
    let path = path.to_owned();
    Ok(tokio::spawn(async move {
        if let Err(e) = server.serve(app).await {
            tracing::error!(error = %e, "control socket failed");
        }
        // After an upgrade the new process serves on the same file.
        if !crate::upgrade::handed_over() {
            let _ = std::fs::remove_file(&path);
        }
    }))
}

async fn deploy(State(ctx): State<Ctx>, Json(req): Json<DeployRequest>) -> Response {
    let mut outcome = Outcome {
        service: req.service.clone(),
        version: req.version.clone().unwrap_or_default(),
        strategy: req.strategy.clone(),
        ..Outcome::default()
    };
    let version = match req.version.as_deref().map(config::Version::from_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return refused(outcome, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let strategy = match req.strategy.as_deref().map(config::Strategy::from_str) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return refused(outcome, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut targets = Vec::with_capacity(req.targets.len());
    for t in &req.targets {
        match t.parse::<config::UpstreamAddr>() {
            Ok(addr) => targets.push(addr),
            Err(e) => {
                let message = format!("--target {t:?}: {e}");
                return refused(outcome, StatusCode::BAD_REQUEST, message);
            }
        }
    }
    outcome.version = version
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let request = deploy::DeployRequest {
        service: req.service,
        version,
        strategy,
        targets,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (engine, counters, live) = (ctx.engine.clone(), ctx.counters.clone(), ctx.live);
    let (service, requested) = (request.service.clone(), request.strategy);
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let reporter = live.tee("deploy", &service, deploy::Reporter::new(tx));
        let result = engine.deploy(request, reporter).await;
        live.finish(&service, &result);
        let count = Count {
            kind: Kind::Deploy,
            service: &service,
            requested,
            started,
        };
        count.record(&counters, &engine, &result);
        result
    });
    stream(outcome, rx, task).await
}

async fn rollback(State(ctx): State<Ctx>, Json(req): Json<ServiceRequest>) -> Response {
    let outcome = Outcome {
        service: req.service.clone(),
        ..Outcome::default()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (engine, counters, live) = (ctx.engine.clone(), ctx.counters.clone(), ctx.live);
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let reporter = live.tee("rollback", &req.service, deploy::Reporter::new(tx));
        let result = engine.rollback(&req.service, reporter).await;
        live.finish(&req.service, &result);
        let count = Count {
            kind: Kind::Rollback,
            service: &req.service,
            requested: None,
            started,
        };
        count.record(&counters, &engine, &result);
        result
    });
    stream(outcome, rx, task).await
}

/// Which endpoint started a deploy task, for its count.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Deploy,
    Rollback,
}

/// A deploy or rollback task, to be counted in `baton_deploys_total` when
/// it ends — on its own task, so that it is counted even when the client
/// that asked for it went away.
struct Count<'a> {
    kind: Kind,
    service: &'a str,
    /// The strategy the request asked for, if any.
    requested: Option<config::Strategy>,
    /// When the task started, for `baton_deploy_duration_seconds`.
    started: std::time::Instant,
}

impl Count<'_> {
    /// Counts the task if it ran: one refused before it started (unknown
    /// service, bad request, another deploy running) is not counted, so
    /// the service label is always a service of the config.
    fn record(
        &self,
        counters: &Counters,
        engine: &deploy::Engine,
        result: &Result<deploy::Deployed, deploy::DeployError>,
    ) {
        let (failed, strategy) = match result {
            Ok(done) => (false, done.strategy.to_string()),
            Err(deploy::DeployError::Failed(_)) => {
                // The strategy asked for, else the service's own.
                let strategy = match self.requested {
                    Some(s) => s.to_string(),
                    None => engine
                        .status()
                        .into_iter()
                        .find(|s| s.name == self.service)
                        .map_or_else(|| "unknown".to_owned(), |s| s.strategy),
                };
                (true, strategy)
            }
            Err(_) => return,
        };
        let outcome = match (self.kind, failed) {
            (Kind::Deploy, false) => DeployOutcome::Deployed,
            (Kind::Deploy, true) => DeployOutcome::Failed,
            (Kind::Rollback, false) => DeployOutcome::RolledBack,
            (Kind::Rollback, true) => DeployOutcome::RollbackFailed,
        };
        counters.deploy(self.service, &strategy, outcome, self.started.elapsed());
    }
}

/// Waits for the deploy to start (its first progress event) or to be
/// refused; streams the rest.
async fn stream(
    mut outcome: Outcome,
    mut rx: mpsc::UnboundedReceiver<deploy::Progress>,
    task: tokio::task::JoinHandle<Result<deploy::Deployed, deploy::DeployError>>,
) -> Response {
    let Some(first) = rx.recv().await else {
        // Every sender is gone before any progress: refused, or over.
        let (status, outcome) = finish(outcome, task.await);
        return (status, ndjson(&result_line(&outcome))).into_response();
    };
    if let deploy::Progress::Started {
        version, strategy, ..
    } = &first
    {
        outcome.version = version.clone();
        outcome.strategy = Some(strategy.clone());
    }
    let head =
        futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(line(&first)) });
    let rest = futures_util::stream::unfold(
        (rx, Some(task), Some(outcome)),
        |(mut rx, mut task, mut outcome)| async move {
            if let Some(p) = rx.recv().await {
                return Some((Ok(line(&p)), (rx, task, outcome)));
            }
            let (task, outcome) = (task.take()?, outcome.take()?);
            let (_, outcome) = finish(outcome, task.await);
            Some((Ok(result_line(&outcome)), (rx, None, None)))
        },
    );
    let body = Body::from_stream(futures_util::StreamExt::chain(head, rest));
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

fn finish(
    mut outcome: Outcome,
    result: Result<Result<deploy::Deployed, deploy::DeployError>, tokio::task::JoinError>,
) -> (StatusCode, Outcome) {
    match result {
        Ok(Ok(done)) => {
            outcome.ok = true;
            outcome.version = done.version;
            outcome.strategy = Some(done.strategy.to_string());
            outcome.duration_ms = Some(done.duration.as_millis() as u64);
            outcome.traffic = Some(done.traffic);
            outcome.exit = 0;
            (StatusCode::OK, outcome)
        }
        Ok(Err(e)) => {
            let (status, exit) = match &e {
                deploy::DeployError::UnknownService(_) => (StatusCode::NOT_FOUND, EXIT_USAGE),
                deploy::DeployError::BadRequest(_) => (StatusCode::BAD_REQUEST, EXIT_USAGE),
                deploy::DeployError::Busy(_)
                | deploy::DeployError::Cluster(_)
                | deploy::DeployError::Upgrading
                | deploy::DeployError::RollbackWindow(_) => (StatusCode::CONFLICT, EXIT_TEMPFAIL),
                deploy::DeployError::NothingToRollBack(_) => (StatusCode::CONFLICT, 1),
                deploy::DeployError::NotRunning(_) => (StatusCode::SERVICE_UNAVAILABLE, 1),
                deploy::DeployError::Failed(_) => (StatusCode::UNPROCESSABLE_ENTITY, 1),
            };
            outcome.error = Some(e.to_string());
            outcome.exit = exit;
            (status, outcome)
        }
        Err(e) => {
            outcome.error = Some(format!("the deploy task failed: {e}"));
            outcome.exit = 1;
            (StatusCode::INTERNAL_SERVER_ERROR, outcome)
        }
    }
}

fn refused(mut outcome: Outcome, status: StatusCode, message: String) -> Response {
    outcome.error = Some(message);
    outcome.exit = EXIT_USAGE;
    (status, ndjson(&result_line(&outcome))).into_response()
}

fn ndjson(line: &Bytes) -> ([(axum::http::HeaderName, &'static str); 1], Bytes) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        line.clone(),
    )
}

fn line(p: &deploy::Progress) -> Bytes {
    let mut v = serde_json::to_vec(p).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn result_line(outcome: &Outcome) -> Bytes {
    let mut v = serde_json::to_vec(&serde_json::json!({"event": "result", "outcome": outcome}))
        .unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn metrics(State(ctx): State<Ctx>) -> Response {
    // Rendering a large exposition (thousands of routes) takes tens of
    // milliseconds of CPU: on a blocking thread, never on a worker of the
    // runtime that serves requests.
    let rendered = tokio::task::spawn_blocking(move || {
        let certs = ctx.certs.report();
        crate::metrics::render(&ctx.proxy, &ctx.engine, &ctx.counters, &certs)
    })
    .await;
    let Ok(text) = rendered else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

async fn certificates(State(ctx): State<Ctx>) -> Json<crate::certs::CertificatesReport> {
    Json(ctx.certs.report())
}

async fn status(State(ctx): State<Ctx>) -> Json<Vec<deploy::ServiceStatus>> {
    Json(ctx.engine.status())
}

async fn pause(State(ctx): State<Ctx>, Json(req): Json<PauseRequest>) -> (StatusCode, Json<Ack>) {
    let hold = deploy::Hold {
        max_wait: Duration::from_millis(req.max_wait_ms.unwrap_or(30_000)),
        max_requests: req.max_requests.unwrap_or(10_000),
    };
    ack(ctx.engine.pause(&req.service, hold))
}

async fn resume(
    State(ctx): State<Ctx>,
    Json(req): Json<ServiceRequest>,
) -> (StatusCode, Json<Ack>) {
    ack(ctx.engine.resume(&req.service))
}

fn ack(result: Result<(), deploy::DeployError>) -> (StatusCode, Json<Ack>) {
    match result {
        Ok(()) => (
            StatusCode::OK,
            Json(Ack {
                ok: true,
                ..Ack::default()
            }),
        ),
        Err(e) => {
            let (status, exit) = match e {
                deploy::DeployError::UnknownService(_) => (StatusCode::NOT_FOUND, EXIT_USAGE),
                _ => (StatusCode::CONFLICT, 1),
            };
            (
                status,
                Json(Ack {
                    ok: false,
                    errors: vec![e.to_string()],
                    exit,
                    ..Ack::default()
                }),
            )
        }
    }
}

async fn upgrade(
    State(ctx): State<Ctx>,
    Json(req): Json<UpgradeRequest>,
) -> (StatusCode, Json<Ack>) {
    let timeout = req
        .timeout_ms
        .map_or(crate::upgrade::DEFAULT_TIMEOUT, Duration::from_millis);
    // On its own task: the upgrade completes (or is undone) whatever the
    // client does.
    let upgrader = ctx.upgrader.clone();
    let result = tokio::spawn(async move { upgrader.run(timeout).await }).await;
    match result {
        Ok(Ok(_pid)) => (
            StatusCode::OK,
            Json(Ack {
                ok: true,
                ..Ack::default()
            }),
        ),
        Ok(Err(e)) => {
            let status = if e.exit() == EXIT_TEMPFAIL {
                StatusCode::CONFLICT
            } else {
                // The new process failed, not this request.
                StatusCode::BAD_GATEWAY
            };
            (
                status,
                Json(Ack {
                    ok: false,
                    errors: vec![e.to_string()],
                    exit: e.exit(),
                    ..Ack::default()
                }),
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(Ack {
                ok: false,
                errors: vec![format!("the upgrade task failed: {e}")],
                exit: 1,
                ..Ack::default()
            }),
        ),
    }
}

async fn reload(State(ctx): State<Ctx>, body: Bytes) -> (StatusCode, Json<Ack>) {
    let req: crate::reload::ReloadRequest = if body.is_empty() {
        crate::reload::ReloadRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                let errors = vec![format!("bad request: {e}")];
                let ack = Ack {
                    errors,
                    exit: EXIT_USAGE,
                    ..Ack::default()
                };
                return (StatusCode::BAD_REQUEST, Json(ack));
            }
        }
    };
    // Counted by the reload path itself, as a SIGHUP's is.
    let request = crate::reload::Request {
        force: req.force,
        ..crate::reload::Request::default()
    };
    match ctx.reload.reload(request).await {
        Ok(applied) => {
            let ok = applied.certificate_errors.is_empty();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            let services = applied
                .reloaded
                .services
                .iter()
                .map(|s| format!("{}: {}", s.name, s.change))
                .collect();
            let ack = Ack {
                ok,
                errors: applied.certificate_errors,
                services,
                exit: u8::from(!ok),
            };
            (status, Json(ack))
        }
        Err(refusal) => {
            // A bad file is exit 1 here, as it always was for a reload.
            let exit = match refusal {
                crate::reload::Refusal::Invalid(_) => 1,
                _ => refusal.exit(),
            };
            let ack = Ack {
                errors: refusal.messages(),
                exit,
                ..Ack::default()
            };
            (StatusCode::UNPROCESSABLE_ENTITY, Json(ack))
        }
    }
}

use crate::metrics::{Counters, DeployOutcome};
use crate::{EXIT_TEMPFAIL, EXIT_USAGE};
