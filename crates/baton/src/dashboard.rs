//! The live dashboard: a page served by the control API (the Unix socket
//! and the `[admin]` listener) that follows `GET /v1/events`, a stream of
//! snapshots (server-sent events), and redraws itself from each one.
//!
//! The page, its script and its style are compiled into the binary
//! (`include_str!`) and load nothing from elsewhere; they are the only
//! routes the admin listener serves without the token, because they hold
//! no data: every number comes from the API, which the page calls with the
//! token in an `Authorization` header (kept in the tab's
//! `sessionStorage`, never in a URL or a cookie, so another site cannot
//! make the browser send it). The page's Content-Security-Policy lets it
//! run only its own script and talk only to its own origin.
//!
//! A snapshot is the proxy's and the engine's state when it is built,
//! with rates and graphs from what [`Live`] samples once a second and the
//! deploys' progress events as they came; a stream sends one after every
//! change (each sample, each progress event) and ends when baton stops.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::control::Ctx;

mod live;
mod view;

pub use live::Live;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// The page's policy: its own script, style and API only; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The paths of the page and its assets.
const ASSETS: [&str; 4] = [
    "/",
    "/dashboard",
    "/dashboard/app.js",
    "/dashboard/style.css",
];

/// Whether a request is for the page or its assets, which the admin
/// listener serves without the token (they hold no data).
pub fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && ASSETS.contains(&path)
}

/// The page and its assets.
pub fn assets() -> Router<Ctx> {
    Router::new()
        .route(ASSETS[0], get(index))
        .route(ASSETS[1], get(index))
        .route(
            ASSETS[2],
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            ASSETS[3],
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /v1/events`: a `snapshot` event now, then one after every change
/// (at least once a second), until baton stops or the client goes away.
pub async fn events(State(ctx): State<Ctx>) -> Response {
    let changes = ctx.live.subscribe();
    let state = (ctx, changes, None::<u64>, true);
    let stream =
        futures_util::stream::unfold(state, |(ctx, mut changes, since, first)| async move {
            if !first && changes.changed().await.is_err() {
                return None;
            }
            if ctx.live.closed() {
                return None;
            }
            changes.mark_unchanged();
            // A snapshot of thousands of routes takes milliseconds to read
            // and serialize, once a second for each viewer: on a blocking
            // thread, never on a worker of the runtime that serves requests.
            let reading = ctx.clone();
            let built = tokio::task::spawn_blocking(move || {
                let ctx = reading;
                let now = view::Readings {
                    services: ctx.engine.status(),
                    certificates: ctx.certs.report(),
                    pools: ctx.proxy.readings(),
                    routes: ctx.proxy.route_readings(),
                    listeners: ctx.proxy.listener_readings(),
                };
                let snapshot = view::snapshot(&ctx.live, now, since);
                let mut bytes = b"event: snapshot\ndata: ".to_vec();
                // Plain data: serializing it cannot fail.
                let _ = serde_json::to_writer(&mut bytes, &snapshot);
                bytes.extend_from_slice(b"\n\n");
                (Bytes::from(bytes), snapshot.newest_point().or(since))
            })
            .await;
            // The runtime is shutting down: the stream ends.
            let (bytes, since) = built.ok()?;
            let event = Ok::<_, Infallible>(bytes);
            Some((event, (ctx, changes, since, false)))
        });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_and_its_assets_are_public() {
        for path in ASSETS {
            assert!(is_public(&Method::GET, path), "{path}");
            assert!(!is_public(&Method::POST, path), "{path}");
        }
        for path in [
            "/v1/events",
            "/v1/status",
            "/metrics",
            "/dashboard/",
            "/dashboard/x",
        ] {
            assert!(!is_public(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            // SVG's namespace is a name, not an address that is loaded.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for outside in ["http://", "https://", "//cdn", "@import", "eval("] {
                assert!(!text.contains(outside), "{outside}");
            }
        }
        // No inline script or style: the policy would refuse them.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(INDEX_HTML.contains("src=\"/dashboard/app.js\""));
        // Nothing the API sends is parsed as HTML.
        assert!(!APP_JS.contains("innerHTML"));
    }
}
