//! `loadgen`: a failure-counting HTTP/1.1 load client.
//!
//! It exists to *prove* zero-downtime claims: the end-to-end tests, the bench scripts and `baton demo` run it against
//! a service while that service is restarted, and then demand that [`Report::failures`] is zero. So the one thing this
//! crate must never do is hide a failure: it drives [`hyper`] client connections directly (no pool, no retry), counts
//! every refused connection, reset, timeout, non-2xx status, truncated or wrong body, and never counts a request that
//! was answered correctly. See [`LoadConfig`] for the kinds of traffic and [`Load`] for the lifecycle.
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
mod load;
mod plan;
mod report;
mod stats;
mod worker;

pub use config::LoadConfig;
pub use failure::FailureKind;
pub use load::Load;
pub use plan::WorkerKind;
pub use report::{LatencySummary, PhaseLatency, Report, WorkerTally};
pub use stats::Phase;
