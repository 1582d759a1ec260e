//! End-to-end tests through the real `baton` binary and the real `hello`
//! app: one test binary (link time on 2 cores), one module per feature.

mod support;

mod admin;
mod certificates;
mod client_faults;
#[cfg(feature = "cluster")]
mod cluster;
mod control_socket;
mod dashboard;
mod deploy;
mod desired;
mod durations;
mod edge;
mod exec;
mod exec_faults;
mod https;
mod limits;
mod metrics;
mod openapi;
mod per_instance;
mod prometheus;
mod queue;
mod serve;
mod serve_streams;
mod socket_activation;
mod strategies;
mod systemd;
mod upgrade;
mod upgrade_health;
mod upgrade_streams;
mod workers;
