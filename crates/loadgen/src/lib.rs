//! `loadgen`: a failure-counting load client for HTTP/1.1, HTTP/2, WebSocket and server-sent events.
//!
//! It exists to *prove* zero-downtime claims: the end-to-end tests, the bench scripts and `baton demo` run it against
//! a service while that service is restarted, and then demand that [`Report::failures`] is zero. So the one thing this
//! crate must never do is hide a failure: it drives [`hyper`], `h2` and WebSocket client connections directly (no
//! pool, no retry), counts every refused connection, reset, timeout, non-2xx status, truncated or wrong body, and
//! never counts a request that was answered correctly. See [`LoadConfig`] for the kinds of traffic and [`Load`] for
//! the lifecycle.
//!
//! # What counts as a failure
//!
//! Every request is counted once, when it ends, as a success or as one [`FailureKind`]. A request is one exchange
//! for the HTTP kinds, one echo round trip on a WebSocket, one `tick` event of an event stream.
//!
//! - **Any kind**: a refused connection, a timeout (the request not completely answered within the request
//!   timeout), a non-2xx status, a body shorter than announced or not the expected one.
//! - **HTTP/1.1 keep-alive**: a connection the server closed without `Connection: close` on its last response, met
//!   when the next request is due (the keep-alive close race), or closed while a request is in flight (`reset`).
//!   A `Connection: close` is the announced end: the worker reconnects, and that is not a failure.
//! - **WebSocket**: the socket ending without a close frame (`reset`), or closed by the server with any code but
//!   1001 (`ws_close_NNNN`; no code at all is `ws_close_1005`). A close with **1001 (going away)** — what a
//!   draining server sends — is the announced end: the worker opens a new socket and sends the message whose echo
//!   had not arrived again; the request counts once, by how it ends there.
//! - **Server-sent events**: a stream that breaks (`reset`, `truncated`), ends in the middle of an event
//!   (`truncated`), or skips a tick (`missing_event`: `tick N` not followed by `tick N+1` on the same stream).
//!   A stream that ends cleanly between two events, or that says `event: shutdown`, is the announced end: the
//!   worker opens a new stream and waits for its first tick.
//! - **HTTP/2**: a stream reset by the server (`stream_reset`, with any code), a connection closed without GOAWAY,
//!   or closed while the request was being answered, or with a GOAWAY carrying an error (`reset`). A GOAWAY
//!   without error is the announced end when it says the request was not processed: received before the request
//!   was sent, or naming a last stream id below the request's (the two crossed on the wire; the protocol
//!   guarantees such a stream was never processed). The worker sends the request on a new connection.
//!
//! A request may meet at most three announced ends in a row (a server that keeps saying goodbye serves nobody);
//! the fourth makes it a failure (`other`). Announced ends are counted per worker kind
//! ([`WorkerTally::announced_ends`]), so a test can check that streams really moved.
//!
//! ```no_run
//! # async fn demo() {
//! use loadgen::{Load, LoadConfig, Phase};
//! let load = Load::start(LoadConfig::new("127.0.0.1:8080".parse().unwrap()));
//! load.wait_for_requests(100).await;
//! load.set_phase(Phase::Switching);
//! // ... restart the service ...
//! load.set_phase(Phase::Steady);
//! load.stop().await.assert_no_failures();
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod conn;
mod failure;
mod http2;
mod load;
mod plan;
mod report;
mod sse;
mod stats;
mod worker;
mod ws;

pub use config::{InvalidLoad, LoadConfig, Problem};
pub use failure::FailureKind;
pub use load::Load;
pub use plan::WorkerKind;
pub use report::{LatencySummary, PhaseLatency, Report, WorkerTally};
pub use stats::Phase;
