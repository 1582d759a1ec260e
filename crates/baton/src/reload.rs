//! The reload path of `baton serve` (SIGHUP, `baton reload`, `baton
//! apply`): a config text is parsed off the runtime's thread, handed to the
//! deploy engine (routes, pools and services in one go), and on success it
//! becomes the *live config*: its text and revision (a hash of the text),
//! which `GET /v1/config` serves to `baton diff`, `apply` and `status`
//! (the handlers of `GET /v1/config` and `POST /v1/apply` are here; the
//! routes are `control.rs`'s, with the others).
//!
//! `baton apply` sends its file through the control API (`POST /v1/apply`)
//! instead of copying it into place first: the revision check and the
//! refusal of a bad or refused config then happen before anything is
//! written, and only a config that was applied replaces the file at
//! `--config` (written atomically: a temporary file renamed over it), so a
//! restart or a SIGHUP keeps it.
//!
//! Every refusal leaves the running config serving, the file on disk as
//! it was, and the live revision unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::control::Ctx;
use crate::dashboard::Live;
use crate::metrics::{Counters, DeployOutcome};

/// The config `baton serve` runs, as last applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveConfig {
    /// Where `baton serve` reads its config (`--config`).
    pub path: PathBuf,
    /// The text applied.
    pub source: String,
    /// Its revision.
    pub revision: String,
    /// The revision of the file on disk now; `None` when it cannot be read.
    pub disk_revision: Option<String>,
    /// Why the file on disk cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_error: Option<String>,
}

/// The revision of a config text: 64-bit FNV-1a, in hex. Stable across
/// builds and machines (unlike std's hasher), so that a revision printed
/// by `baton diff` can be checked by the `baton apply` that follows.
pub fn revision(source: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `POST /v1/reload` (an empty body is `force: false`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadRequest {
    /// Apply a config that removes every service, or changes one being
    /// deployed (after that deploy).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/apply`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The new config's text.
    pub source: String,
    /// Refuse unless the live config still has this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// As for a reload.
    #[serde(default)]
    pub force: bool,
}

/// How an apply (or a reload) ended: the last line of `/v1/apply`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// Applied, and every deploy it started succeeded.
    pub ok: bool,
    /// The live revision afterwards (unchanged when refused).
    pub revision: String,
    /// Each service the config changed and how its change ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceOutcome>,
    /// Why it was refused, or what went wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The exit code the CLI should end with.
    pub exit: u8,
}

/// One service's change in an apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceOutcome {
    /// The service.
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// Its change completed (a deploy that failed was rolled back).
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a config was not applied; nothing changed.
#[derive(Debug)]
pub enum Refusal {
    /// The text is not a valid config (exit 64).
    Invalid(Vec<String>),
    /// The live config is not the one the caller saw.
    Stale {
        /// The caller's.
        expected: String,
        /// The live one.
        live: String,
    },
    /// The engine refused it (busy services exit 75, the rest 1).
    Engine(deploy::ReloadError),
}

impl Refusal {
    pub fn messages(&self) -> Vec<String> {
        match self {
            Refusal::Invalid(errors) => errors.clone(),
            Refusal::Stale { expected, live } => vec![format!(
                "the running config changed since revision {expected} (it is {live} now): nothing was applied; run `baton diff` again"
            )],
            Refusal::Engine(e) => vec![e.to_string()],
        }
    }

    pub fn exit(&self) -> u8 {
        match self {
            Refusal::Invalid(_) => crate::EXIT_USAGE,
            Refusal::Engine(deploy::ReloadError::Busy(_)) => crate::EXIT_TEMPFAIL,
            _ => 1,
        }
    }
}

/// What a reload was asked to do.
#[derive(Default)]
pub struct Request {
    /// See [`ReloadRequest::force`].
    pub force: bool,
    /// The text to apply; `None`: the file at `--config`.
    pub source: Option<String>,
    /// See [`ApplyRequest::revision`].
    pub revision: Option<String>,
    /// Where the deploys report.
    pub reporter: deploy::Reporter,
}

/// A config that was applied.
pub struct Applied {
    /// What the engine does about it.
    pub reloaded: deploy::Reloaded,
    /// Certificates that were refused (the current ones keep serving,
    /// whatever the file did).
    pub certificate_errors: Vec<String>,
}

/// The reload path, shared by the signal handler and the control API.
pub struct Reloader {
    path: PathBuf,
    engine: deploy::Engine,
    listener_names: Vec<String>,
    certificates: Vec<tls::ServerTls>,
    counters: Arc<Counters>,
    /// Follows each service's change a reload starts.
    watcher: Arc<Follow>,
    /// The live config; held across a whole reload, so that a revision
    /// check and the apply it guards are one step.
    live: tokio::sync::Mutex<(String, String)>,
}

/// Shows each service's change a reload starts on the dashboard, as a
/// `baton deploy` is shown, and counts its deploys in
/// `baton_deploys_total` (a scaling is shown, not counted).
struct Follow {
    dashboard: Live,
    counters: Arc<Counters>,
    /// When each running change started.
    started: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl deploy::Watcher for Follow {
    fn started(&self, service: &str, reporter: deploy::Reporter) -> deploy::Reporter {
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(service.to_owned(), std::time::Instant::now());
        self.dashboard.tee("reload", service, reporter)
    }

    fn ended(&self, service: &str, result: &Result<(), deploy::DeployError>) {
        let started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(service);
        let ended = result.as_ref().map(|()| None).map_err(ToString::to_string);
        let Some(strategy) = self.dashboard.end(service, ended) else {
            return;
        };
        let outcome = match result {
            Ok(()) => DeployOutcome::Deployed,
            Err(deploy::DeployError::Failed(_)) => DeployOutcome::Failed,
            // Never ran (the service went away meanwhile): not counted.
            Err(_) => return,
        };
        let took = started.map_or(std::time::Duration::ZERO, |t| t.elapsed());
        self.counters.deploy(service, &strategy, outcome, took);
    }
}

impl Reloader {
    /// The reload path of a `baton serve` started from `source` (the text
    /// of the file at `path`).
    pub fn new(
        path: PathBuf,
        source: String,
        engine: deploy::Engine,
        listener_names: Vec<String>,
        certificates: Vec<tls::ServerTls>,
        counters: Arc<Counters>,
        dashboard: Live,
    ) -> Reloader {
        let rev = revision(&source);
        let watcher = Arc::new(Follow {
            dashboard,
            counters: counters.clone(),
            started: std::sync::Mutex::default(),
        });
        Reloader {
            path,
            engine,
            listener_names,
            certificates,
            counters,
            watcher,
            live: tokio::sync::Mutex::new((source, rev)),
        }
    }

    /// The live config, and the revision of the file on disk.
    pub async fn live(&self) -> LiveConfig {
        let (source, rev) = self.live.lock().await.clone();
        let path = self.path.clone();
        let disk = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (disk_revision, disk_error) = match disk {
            Ok(text) => (Some(revision(&text)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        LiveConfig {
            path: self.path.clone(),
            source,
            revision: rev,
            disk_revision,
            disk_error,
        }
    }

    /// Re-reads the file (SIGHUP, `baton reload`), logging the outcome and
    /// counting it; returns the errors when refused.
    pub async fn reload_file(&self, force: bool) -> Result<Applied, Vec<String>> {
        let request = Request {
            force,
            ..Request::default()
        };
        self.reload(request).await.map_err(|r| r.messages())
    }

    /// Applies a config; on `Err` nothing changed. Counted as a reload.
    pub async fn reload(&self, request: Request) -> Result<Applied, Refusal> {
        let _ = handoff::notify::notify(&[handoff::notify::State::Reloading]);
        let mut live = self.live.lock().await;
        let result = self.reload_locked(&mut live, request).await;
        self.counters.reload(
            result
                .as_ref()
                .is_ok_and(|a| a.certificate_errors.is_empty()),
        );
        if let Err(refusal) = &result {
            for e in refusal.messages() {
                tracing::error!("{e}");
            }
            tracing::error!("config refused; the running config keeps serving");
        }
        let _ = handoff::notify::ready();
        result
    }

    async fn reload_locked(
        &self,
        live: &mut (String, String),
        request: Request,
    ) -> Result<Applied, Refusal> {
        if let Some(expected) = &request.revision
            && *expected != live.1
        {
            return Err(Refusal::Stale {
                expected: expected.clone(),
                live: live.1.clone(),
            });
        }
        let started = std::time::Instant::now();
        // Parsing runs off the runtime's thread, and so does the build
        // inside the engine's reload: with a single-threaded runtime, a
        // 10,000-route config must not stall requests.
        let path = self.path.clone();
        let given = request.source.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let source = match given {
                Some(s) => s,
                None => std::fs::read_to_string(&path).map_err(|e| {
                    vec![format!("{}: could not read the file: {e}", path.display())]
                })?,
            };
            config::parse(&source, &path.display().to_string())
                .map(|cfg| (source, cfg))
                .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
        })
        .await
        .unwrap_or_else(|e| Err(vec![format!("could not reload: {e}")]));
        let parsed_in = started.elapsed();
        let (source, cfg) = parsed.map_err(Refusal::Invalid)?;
        if cfg
            .listeners
            .iter()
            .map(|l| &l.name)
            .ne(self.listener_names.iter())
        {
            tracing::warn!("listener changes take effect at the next restart");
        }
        let running = tokio::runtime::Handle::current().metrics().num_workers();
        let configured = cfg.proxy.workers.threads().get();
        if configured != running {
            tracing::warn!(
                running,
                configured,
                "a change of [proxy] workers takes effect at the next restart"
            );
        }
        let options = deploy::ReloadOptions {
            force: request.force,
            reporter: request.reporter,
            watcher: Some(self.watcher.clone()),
        };
        let reloaded = self
            .engine
            .reload(cfg, options)
            .await
            .map_err(Refusal::Engine)?;
        *live = (source.clone(), revision(&source));
        tracing::info!(
            config = %self.path.display(),
            revision = %live.1,
            services_changed = reloaded.services.len(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            parse_ms = parsed_in.as_secs_f64() * 1000.0,
            "config reloaded"
        );
        // The file and the certificates are two things, each all or
        // nothing: a refused certificate leaves the current one serving,
        // whatever the file did. (Certificate files are also watched.)
        let mut certificate_errors = Vec::new();
        for t in &self.certificates {
            match t.reload() {
                Ok(true) => tracing::info!(files = ?t.files(), "certificates reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(
                        "{e}; the current certificate keeps serving (the config itself was reloaded)"
                    );
                    certificate_errors.push(format!(
                        "config reloaded, but a certificate was refused: {e}"
                    ));
                }
            }
        }
        Ok(Applied {
            reloaded,
            certificate_errors,
        })
    }

    /// `POST /v1/apply`'s work: applies `req` and, once applied, writes
    /// its text to the file at `--config`.
    async fn apply(
        self: Arc<Self>,
        req: ApplyRequest,
        reporter: deploy::Reporter,
    ) -> Result<Applied, (Refusal, String)> {
        let request = Request {
            force: req.force,
            source: Some(req.source.clone()),
            revision: req.revision,
            reporter,
        };
        match self.reload(request).await {
            Ok(mut applied) => {
                if let Err(e) = write_atomically(&self.path, &req.source).await {
                    let message = format!(
                        "config applied, but {} could not be replaced: {e} (it differs from the running config)",
                        self.path.display()
                    );
                    tracing::error!("{message}");
                    applied.certificate_errors.push(message);
                }
                Ok(applied)
            }
            Err(refusal) => {
                let live = self.live.lock().await.1.clone();
                Err((refusal, live))
            }
        }
    }
}

/// Replaces `path` by `text`: a temporary file beside it, synced, renamed
/// over it (the directory synced too), so that a crash leaves one or the
/// other.
async fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let (path, text) = (path.to_owned(), text.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.baton-apply"));
        let mut file = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            let _ = file.set_permissions(meta.permissions());
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// `GET /v1/config`: the live config and the revision of the file on disk.
pub async fn live_config(State(ctx): State<Ctx>) -> Json<LiveConfig> {
    Json(ctx.reload.live().await)
}

/// Streams the deploys' progress as JSON lines, then one
/// `{"event":"result","outcome":ApplyOutcome}` line. A refusal is only the
/// result line, with an error status.
pub async fn apply(State(ctx): State<Ctx>, Json(req): Json<ApplyRequest>) -> Response {
    let reloader = ctx.reload.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reloaded = reloader.clone().apply(req, deploy::Reporter::new(tx)).await;
    let (reloaded, mut errors) = match reloaded {
        Ok(a) => (a.reloaded, a.certificate_errors),
        Err((refusal, live)) => {
            let status = match &refusal {
                Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
                Refusal::Stale { .. } => StatusCode::CONFLICT,
                Refusal::Engine(deploy::ReloadError::Busy(_)) => StatusCode::CONFLICT,
                Refusal::Engine(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let outcome = ApplyOutcome {
                ok: false,
                revision: live,
                services: Vec::new(),
                errors: refusal.messages(),
                exit: refusal.exit(),
            };
            return (status, ndjson(result_line(&outcome))).into_response();
        }
    };
    let revision = reloader.live.lock().await.1.clone();
    let changes: Vec<(String, String)> = reloaded
        .services
        .iter()
        .map(|s| (s.name.clone(), s.change.to_string()))
        .collect();
    let mut done = reloaded.done;
    let body = async_stream(move |out| async move {
        let results = loop {
            tokio::select! {
                Some(p) = rx.recv() => out.send(line(&p)),
                results = &mut done => break results.unwrap_or_default(),
            }
        };
        while let Ok(p) = rx.try_recv() {
            out.send(line(&p));
        }
        let services: Vec<ServiceOutcome> = changes
            .into_iter()
            .map(|(name, change)| {
                let error = results
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, r)| r.as_ref().err().map(ToString::to_string));
                ServiceOutcome {
                    name,
                    change,
                    ok: error.is_none(),
                    error,
                }
            })
            .collect();
        errors.extend(
            services
                .iter()
                .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name))),
        );
        let ok = errors.is_empty();
        out.send(result_line(&ApplyOutcome {
            ok,
            revision,
            services,
            errors,
            exit: if ok { 0 } else { 1 },
        }));
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

/// A body fed by a task through a channel: the task runs even when the
/// client goes away (its sends then go nowhere).
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(Sender) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(f(Sender(tx)));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

struct Sender(mpsc::UnboundedSender<Bytes>);

impl Sender {
    fn send(&self, bytes: Bytes) {
        let _ = self.0.send(bytes);
    }
}

fn ndjson(line: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], Bytes) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        line,
    )
}

fn line(p: &deploy::Progress) -> Bytes {
    let mut v = serde_json::to_vec(p).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn result_line(outcome: &ApplyOutcome) -> Bytes {
    let mut v = serde_json::to_vec(&serde_json::json!({"event": "result", "outcome": outcome}))
        .unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_stable_and_tell_texts_apart() {
        // FNV-1a's published test vectors.
        assert_eq!(revision(""), "cbf29ce484222325");
        assert_eq!(revision("a"), "af63dc4c8601ec8c");
        assert_ne!(revision("[[listener]]\n"), revision("[[listener]] \n"));
    }
}
