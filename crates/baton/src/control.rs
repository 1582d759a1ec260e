//! The control socket of `baton serve`: a small JSON API on a Unix socket
//! (mode 0600, so only baton's user can deploy), and the client side the
//! CLI uses. Today it carries deploys; status, rollback, pause and the
//! rest of the admin API come with the rest of the deploy engine.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use handoff::http::{Server, Stop};
use handoff::{ListenAddr, Listener, Listeners, NamedListener};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// `POST /v1/deploy`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRequest {
    pub service: String,
    pub version: String,
}

/// The answer to a deploy: `generation` on success, `error` otherwise.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeployResponse {
    pub service: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Binds the control socket (mode 0600) and serves it until `stop`.
pub fn start(
    path: &Path,
    engine: deploy::Engine,
    stop: watch::Receiver<Stop>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let listener = Listener::bind(&ListenAddr::Unix(path.to_owned()))
        .with_context(|| format!("could not open the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("could not restrict {} to mode 0600", path.display()))?;
    let server = Server::new(Listeners::from_listeners(vec![NamedListener {
        name: "control".into(),
        listener,
    }]))
    .notify(false)
    .with_stop(stop);
    let app = Router::new()
        .route("/v1/deploy", post(deploy))
        .route("/v1/rollback", post(rollback))
        .route("/v1/status", axum::routing::get(status))
        .with_state(engine);
    let path = path.to_owned();
    Ok(tokio::spawn(async move {
        if let Err(e) = server.serve(app).await {
            tracing::error!(error = %e, "control socket failed");
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn deploy(
    State(engine): State<deploy::Engine>,
    Json(req): Json<DeployRequest>,
) -> (StatusCode, Json<DeployResponse>) {
    let mut answer = DeployResponse {
        service: req.service.clone(),
        version: req.version.clone(),
        ..DeployResponse::default()
    };
    let version = match config::Version::from_str(&req.version) {
        Ok(v) => v,
        Err(e) => {
            answer.error = Some(e.to_string());
            return (StatusCode::BAD_REQUEST, Json(answer));
        }
    };
    reply(answer, engine.deploy(&req.service, version).await)
}

/// Fills in the outcome of a deploy or rollback.
fn reply(
    mut answer: DeployResponse,
    outcome: Result<deploy::Deployed, deploy::DeployError>,
) -> (StatusCode, Json<DeployResponse>) {
    match outcome {
        Ok(done) => {
            answer.generation = Some(done.generation);
            answer.duration_ms = Some(done.duration.as_millis() as u64);
            (StatusCode::OK, Json(answer))
        }
        Err(e) => {
            let status = error_status(&e);
            answer.error = Some(e.to_string());
            (status, Json(answer))
        }
    }
}

/// `POST /v1/rollback`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub service: String,
}

async fn rollback(
    State(engine): State<deploy::Engine>,
    Json(req): Json<RollbackRequest>,
) -> (StatusCode, Json<DeployResponse>) {
    let mut answer = DeployResponse {
        service: req.service.clone(),
        ..DeployResponse::default()
    };
    let outcome = engine.rollback(&req.service).await.map(|(version, done)| {
        answer.version = version.to_string();
        done
    });
    reply(answer, outcome)
}

async fn status(State(engine): State<deploy::Engine>) -> Json<Vec<deploy::ServiceStatus>> {
    Json(engine.status())
}

fn error_status(e: &deploy::DeployError) -> StatusCode {
    match e {
        deploy::DeployError::UnknownService(_) => StatusCode::NOT_FOUND,
        deploy::DeployError::NotSupervised(_)
        | deploy::DeployError::NotRunning(_)
        | deploy::DeployError::NothingToRollBack(_) => StatusCode::CONFLICT,
        deploy::DeployError::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Sends a deploy request over the control socket and waits for the
/// outcome.
pub async fn request_deploy(
    socket: &PathBuf,
    req: &DeployRequest,
) -> anyhow::Result<(u16, DeployResponse)> {
    let body = serde_json::to_vec(req)?;
    let (status, bytes) = call(socket, "POST", "/v1/deploy", Some(body)).await?;
    Ok((status, parse(&bytes)?))
}

/// Sends a rollback request and waits for the outcome.
pub async fn request_rollback(
    socket: &PathBuf,
    service: &str,
) -> anyhow::Result<(u16, DeployResponse)> {
    let body = serde_json::to_vec(&RollbackRequest {
        service: service.to_owned(),
    })?;
    let (status, bytes) = call(socket, "POST", "/v1/rollback", Some(body)).await?;
    Ok((status, parse(&bytes)?))
}

/// Fetches every service's status as JSON.
pub async fn request_status(socket: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let (_, bytes) = call(socket, "GET", "/v1/status", None).await?;
    parse(&bytes)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "unexpected answer from baton: {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

async fn call(
    socket: &PathBuf,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(u16, bytes::Bytes)> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "could not connect to baton's control socket {}",
                socket.display()
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("could not talk to baton")?;
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "baton")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))?;
    let response = sender
        .send_request(request)
        .await
        .context("the request to baton failed")?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
