//! `GET /events`: a server-sent event stream of numbered ticks. It is the
//! long-lived stream of the test suite, so it must never pin a draining
//! process: when the drain starts it sends one `event: shutdown` and ends
//! cleanly instead of waiting to be cut at the deadline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use handoff::http::Draining;
use serde::Deserialize;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::routes::{App, bad_request};

/// Interval between ticks when the query does not say.
const DEFAULT_INTERVAL_MS: u64 = 200;
/// Shortest interval accepted; smaller values are raised to it.
const MIN_INTERVAL_MS: u64 = 10;

#[derive(Debug, Deserialize)]
pub struct EventsParams {
    interval_ms: Option<String>,
}

/// Streams `tick N VERSION` every `interval_ms` until the server drains.
pub async fn events(
    State(app): State<App>,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let interval_ms = match params {
        Ok(Query(EventsParams { interval_ms: None })) => DEFAULT_INTERVAL_MS,
        Ok(Query(EventsParams {
            interval_ms: Some(v),
        })) => match v.parse::<u64>() {
            Ok(ms) => ms.max(MIN_INTERVAL_MS),
            Err(_) => {
                return bad_request(format!(
                    "invalid query parameter interval_ms={v:?}: expected a whole number of milliseconds, e.g. /events?interval_ms=200\n"
                ));
            }
        },
        Err(e) => return bad_request(format!("invalid query string: {e}\n")),
    };
    tracing::info!(interval_ms, "event stream started");
    Sse::new(ticks(
        app.version,
        Duration::from_millis(interval_ms),
        app.draining,
    ))
    .into_response()
}

/// Where a stream is: still ticking, or said goodbye and must end.
enum Ticks {
    Running {
        n: u64,
        interval: Interval,
        version: Arc<str>,
        draining: Draining,
    },
    Done,
}

fn ticks(
    version: Arc<str>,
    period: Duration,
    draining: Draining,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    // The first tick comes one period after the request, not at once.
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = Ticks::Running {
        n: 0,
        interval,
        version,
        draining,
    };
    stream::unfold(start, |state| async move {
        let Ticks::Running {
            n,
            mut interval,
            version,
            draining,
        } = state
        else {
            return None;
        };
        // `biased`: a stream that is due a tick but sees the drain says
        // goodbye first rather than ticking once more.
        tokio::select! {
            biased;
            () = draining.wait() => {
                tracing::info!(ticks = n, "event stream ending: server is draining");
                let bye = Event::default()
                    .event("shutdown")
                    .data(format!("shutdown {version}"));
                Some((Ok(bye), Ticks::Done))
            }
            _ = interval.tick() => {
                let n = n + 1;
                let tick = Event::default().data(format!("tick {n} {version}"));
                Some((Ok(tick), Ticks::Running { n, interval, version, draining }))
            }
        }
    })
}
