//! `handoff` lets any Rust server take part in a zero-downtime restart.
//!
//! A process manager (systemd, `baton exec`, `systemfd`) binds the listening
//! sockets once and hands them to each new generation of the server. The
//! server, in turn, must:
//!
//! 1. take the sockets it was given instead of binding its own
//!    ([`Listeners::inherit_or_bind`], the systemd `LISTEN_FDS` protocol);
//! 2. say when it is ready to serve and when it starts stopping
//!    ([`notify`], the systemd `sd_notify` protocol);
//! 3. on SIGTERM stop accepting, finish what is in flight and exit as soon as
//!    that is done, never sleeping out a fixed grace period
//!    ([`shutdown_signal`], [`Drain`]).
//!
//! With the `http` feature (on by default) [`http::Server`] does all three for a
//! hyper or axum service:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use handoff::{Listeners, http::Server};
//!
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! // Inherited sockets when started by systemd or `baton exec`, else bind.
//! let listeners = Listeners::inherit_or_bind(&["127.0.0.1:8080".parse()?])?;
//! let report = Server::new(listeners).serve(app).await?;
//! println!("drained: {report:?}");
//! # Ok(()) }
//! ```
//!
//! The core (`Listeners`, `notify`) depends on no async runtime; the `runtime`
//! feature adds tokio-based signal handling and drain waiting, and the `tls`
//! feature (off by default) HTTPS for [`http::Server`] through rustls.

#![deny(missing_docs)]

mod addr;
mod error;
pub mod fdpass;
mod inherit;
mod limits;
mod listener;
pub mod notify;
mod sys;
pub mod time;

#[cfg(feature = "runtime")]
mod drain;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "runtime")]
mod lifecycle;
#[cfg(feature = "runtime")]
mod signal;

pub use addr::{AddrParseError, ListenAddr};
pub use error::Error;
pub use inherit::{Inherited, LISTEN_FDS_START};
pub use limits::{OpenFilesLimit, raise_open_files_limit};
pub use listener::{Listener, Listeners, NamedListener};

#[cfg(feature = "runtime")]
pub use drain::{Drain, DrainGuard, DrainOutcome};
#[cfg(feature = "runtime")]
pub use lifecycle::{Lifecycle, Phase};
#[cfg(feature = "runtime")]
pub use signal::{ShutdownSignals, Signal, shutdown_signal};
