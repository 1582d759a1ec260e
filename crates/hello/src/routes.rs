//! The HTTP surface of `hello`: the router, its plain handlers and the
//! `x-instance` header on every response. Owns request handling only; it
//! never binds, signals or decides when the process stops.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use handoff::http::Draining;
use serde::Deserialize;

use crate::faults::RequestFaults;
use crate::{events, ws};

/// Header naming the process that answered: `VERSION/PID`.
pub const X_INSTANCE: HeaderName = HeaderName::from_static("x-instance");

/// Largest body `/echo` accepts; larger ones get 413.
const ECHO_LIMIT: usize = 8 * 1024 * 1024;

/// Longest `/slow` sleep; larger requests are capped to it.
const SLOW_CAP_MS: u64 = 600_000;

/// What the handlers share; built once at start-up.
#[derive(Clone)]
pub struct App {
    /// The version shown in responses.
    pub version: Arc<str>,
    /// Whether `/healthz` reports failure.
    pub fail_health: bool,
    /// Errors and latency for the ordinary requests (`/`, `/users/{id}`).
    pub faults: Arc<RequestFaults>,
    /// Tells long-lived streams that the server is draining.
    pub draining: Draining,
    /// `/slow` requests being served, for the log line at the drain.
    pub slow_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// Builds the router with every route and the `x-instance` header.
pub fn router(app: App) -> Router {
    let instance = HeaderValue::from_str(&format!("{}/{}", app.version, std::process::id()))
        .expect("the version was validated as a header value by the CLI");
    Router::new()
        .route("/", get(root))
        .route("/users/{id}", get(user))
        .route("/healthz", get(healthz))
        .route("/echo", post(echo).layer(DefaultBodyLimit::max(ECHO_LIMIT)))
        .route("/slow", get(slow))
        .route("/events", get(events::events))
        .route("/ws", get(ws::ws))
        .fallback(not_found)
        .with_state(app)
        // Added last so it also covers the fallback and axum's 405 answers.
        .layer(map_response_with_state(instance, add_instance))
}

async fn add_instance(State(instance): State<HeaderValue>, mut response: Response) -> Response {
    response.headers_mut().insert(X_INSTANCE, instance);
    response
}

async fn root(State(app): State<App>) -> Response {
    if let Some(failure) = app.faults.inject(&app.version).await {
        return failure;
    }
    format!("Hello, 你好,Rust服务器! ({})\n", app.version).into_response()
}

async fn user(State(app): State<App>, Path(id): Path<String>) -> Response {
    if let Some(failure) = app.faults.inject(&app.version).await {
        return failure;
    }
    format!("user {id}\n").into_response()
}

async fn healthz(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.fail_health {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Returns the request body unchanged, with the request's content type.
async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        response.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    response
}

#[derive(Debug, Deserialize)]
struct SlowParams {
    ms: Option<String>,
}

async fn slow(
    State(app): State<App>,
    params: Result<Query<SlowParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ms = match params {
        Ok(Query(SlowParams { ms: Some(ms) })) => match ms.parse::<u64>() {
            Ok(ms) => ms.min(SLOW_CAP_MS),
            Err(_) => {
                return bad_request(format!(
                    "invalid query parameter ms={ms:?}: expected a whole number of milliseconds, e.g. /slow?ms=500\n"
                ));
            }
        },
        Ok(Query(SlowParams { ms: None })) => {
            return bad_request(
                "missing query parameter ms: expected a whole number of milliseconds, e.g. /slow?ms=500\n"
                    .to_owned(),
            );
        }
        Err(e) => return bad_request(format!("invalid query string: {e}\n")),
    };
    // End-to-end tests wait on this line to know a request is in flight.
    tracing::info!(ms, "slow request started");
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    app.slow_in_flight
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _counted = Counted(app.slow_in_flight.clone());
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n").into_response()
}

/// A 400 with a plain-text explanation.
pub fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}
