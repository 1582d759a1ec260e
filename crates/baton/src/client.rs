//! The CLI's side of the control socket: `baton deploy`, `rollback`,
//! `status`, `pause`, `resume` and `reload` against a running
//! `baton serve`. A deploy's progress is shown live (a spinner on a
//! terminal, one line per step otherwise, on stderr) and ends with a
//! summary on stdout; `--json` prints only the outcome, as JSON.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ControlAddr, ControlArgs};
use crate::control::{Ack, DeployRequest, Outcome, PauseRequest, ServiceRequest};

/// The environment variable that holds the admin token of an `http://`
/// control (unless `--token-file` names a file).
const TOKEN_VARIABLE: &str = "BATON_TOKEN";

/// Where the control API is, with the token an `http://` one needs.
pub enum Endpoint {
    /// The `--control` Unix socket.
    Socket(std::path::PathBuf),
    /// The `[admin]` listener (`HOST:PORT`) and its bearer token.
    Http { authority: String, token: String },
}

impl Endpoint {
    /// The endpoint of `args`, reading the token of an `http://` one.
    pub fn of(args: &ControlArgs) -> anyhow::Result<Endpoint> {
        let authority = match &args.control {
            ControlAddr::Socket(path) => return Ok(Endpoint::Socket(path.clone())),
            ControlAddr::Http(authority) => authority.clone(),
        };
        let token = match &args.token_file {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("could not read the token file {}", file.display()))?,
            None => std::env::var(TOKEN_VARIABLE).map_err(|_| {
                anyhow::anyhow!(
                    "--control http://… needs the admin token: --token-file FILE or {TOKEN_VARIABLE}"
                )
            })?,
        };
        let token = token.trim_end_matches(['\n', '\r']).to_owned();
        Ok(Endpoint::Http { authority, token })
    }
}

/// Runs a deploy (or a rollback: `path` says which) and shows it.
pub fn deploy(to: &ControlArgs, path: &str, body: &impl serde::Serialize, verb: &str) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let endpoint = match Endpoint::of(to) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    match runtime.block_on(request_deploy(&endpoint, path, body, !to.json)) {
        Ok(outcome) => {
            if to.json {
                println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
            } else {
                summary(&outcome, verb);
            }
            ExitCode::from(outcome.exit)
        }
        Err(e) => fail(e),
    }
}

/// Sends a deploy or rollback and follows it to its outcome, showing the
/// progress on stderr when `show`.
pub async fn request_deploy(
    control: &Endpoint,
    path: &str,
    body: &impl serde::Serialize,
    show: bool,
) -> anyhow::Result<Outcome> {
    let body = serde_json::to_vec(body)?;
    let response = call(control, "POST", path, Some(body)).await?;
    follow(response, !show).await
}

/// Every service's status.
pub async fn fetch_status(control: &Endpoint) -> anyhow::Result<Vec<deploy::ServiceStatus>> {
    let response = call(control, "GET", "/v1/status", None).await?;
    parse(&body(response).await?)
}

pub fn deploy_request(args: &crate::cli::DeployArgs) -> DeployRequest {
    DeployRequest {
        service: args.service.clone(),
        version: args.version.clone(),
        strategy: args.strategy.map(|s| s.to_string()),
        targets: args.target.clone(),
    }
}

pub fn rollback_request(service: &str) -> ServiceRequest {
    ServiceRequest {
        service: service.to_owned(),
    }
}

/// Reads the progress lines until the result, showing each.
pub async fn follow<T: serde::de::DeserializeOwned>(
    response: hyper::Response<Incoming>,
    json: bool,
) -> anyhow::Result<T> {
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let display = Display::new(json);
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let value: serde_json::Value = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "unexpected answer from baton: {}",
                    String::from_utf8_lossy(&line)
                )
            })?;
            if value["event"] == "result" {
                display.finish();
                return serde_json::from_value(value["outcome"].clone())
                    .context("unexpected result from baton");
            }
            if let Ok(p) = serde_json::from_value::<deploy::Progress>(value) {
                display.show(&p);
            }
        }
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame
                    .context("the answer from baton broke off")?
                    .into_data()
                {
                    buf.extend_from_slice(&data);
                }
            }
            None => {
                display.finish();
                anyhow::bail!(
                    "baton closed the connection before the deploy ended (is it stopping?); see `baton status`"
                );
            }
        }
    }
}

/// The live view of a deploy.
struct Display {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
}

impl Display {
    fn new(json: bool) -> Display {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (tty && !json).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Display {
            bar,
            quiet: json,
            started: Instant::now(),
        }
    }

    fn show(&self, p: &deploy::Progress) {
        let text = describe(p);
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  {text}"));
                bar.set_message(text);
            }
            None if !self.quiet => {
                eprintln!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One progress event in words.
pub fn describe(p: &deploy::Progress) -> String {
    use deploy::Progress::*;
    match p {
        Started {
            service,
            version,
            strategy,
            instances,
        } => format!("{service}: deploying {version} ({strategy}, {instances} instances)"),
        Ready { address, ready, of } => format!("ready {ready}/{of}: {address}"),
        Smoke {
            address,
            path,
            status,
        } => format!("smoke check GET {path} on {address}: {status}"),
        Traffic { percent } => format!("traffic on the new version: {percent}%"),
        Judged {
            percent,
            canary_requests,
            canary_error_rate,
            canary_p99_ms,
            stable_p99_ms,
        } => format!(
            "step {percent}% passed: {canary_requests} canary requests, {:.2}% errors, p99 {} (stable {})",
            canary_error_rate * 100.0,
            ms(*canary_p99_ms),
            ms(*stable_p99_ms)
        ),
        Draining { version } => format!("draining and stopping {version}"),
        Scaling { service, from, to } => {
            format!("{service}: scaling from {from} to {to} instances")
        }
        RollingBack { reason } => format!("rolling back: {reason}"),
        Node {
            node,
            state,
            version,
            reason,
        } => match reason {
            Some(reason) => format!("node {node}: {state} {version}: {reason}"),
            None => format!("node {node}: {state} {version}"),
        },
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
}

fn summary(o: &Outcome, verb: &str) {
    if !o.ok {
        eprintln!(
            "baton: {}",
            o.error.as_deref().unwrap_or("the request failed")
        );
        return;
    }
    println!(
        "{verb} {} {} ({}) in {:.1} s",
        o.service,
        o.version,
        o.strategy.as_deref().unwrap_or("?"),
        o.duration_ms.unwrap_or_default() as f64 / 1000.0
    );
    if let Some(t) = &o.traffic {
        println!(
            "  requests during the deploy: {}, failed: {}, p99: {}",
            t.requests,
            t.failures,
            ms(t.p99_ms)
        );
    }
}

/// `baton status`.
pub fn status(to: &ControlArgs) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let endpoint = Endpoint::of(to)?;
        let response = call(&endpoint, "GET", "/v1/status", None).await?;
        let bytes = body(response).await?;
        let services = parse::<Vec<deploy::ServiceStatus>>(&bytes)?;
        let drift = crate::desired::drift_line(&endpoint).await;
        // A baton without the endpoint (older) shows no certificates.
        let response = call(&endpoint, "GET", "/v1/certificates", None).await?;
        let certs = match response.status() {
            http::StatusCode::OK => parse(&body(response).await?)?,
            _ => crate::certs::CertificatesReport::default(),
        };
        let cluster = fetch_cluster(&endpoint).await?;
        anyhow::Ok((
            services,
            String::from_utf8_lossy(&bytes).into_owned(),
            certs,
            drift,
            cluster,
        ))
    });
    let (services, raw, certs, drift, cluster) = match result {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if to.json {
        // The services as the server sent them (a newer one's fields
        // included), with the certificates and the cluster (null without
        // cluster mode).
        let services: serde_json::Value =
            serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
        let mut all = serde_json::json!({ "services": services, "certificates": certs });
        match cluster {
            Cluster::View(view) => all["cluster"] = view,
            Cluster::None => all["cluster"] = serde_json::Value::Null,
            Cluster::Unreadable(why) => {
                all["cluster"] = serde_json::Value::Null;
                all["cluster_error"] = why.into();
            }
        }
        println!("{all}");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<16} {:<11} {:<14} {:<11} {:>6}  STATE / LAST DEPLOY",
        "SERVICE", "KIND", "VERSION", "STRATEGY", "ROUTED"
    );
    for s in &services {
        let mut state = Vec::new();
        if s.deploying {
            state.push("deploying".to_owned());
        }
        if s.paused {
            state.push("paused".to_owned());
        }
        if s.sets.len() > 1 {
            let sets: Vec<String> = s
                .sets
                .iter()
                .map(|set| {
                    let standby = if set.standby { ", standby" } else { "" };
                    format!("{} {}%{standby}", set.version, set.share)
                })
                .collect();
            state.push(sets.join(" + "));
        }
        if let Some(d) = s.history.last() {
            state.push(format!("{} {} ({})", d.started, d.version, d.outcome));
        }
        if let Some(why) = &s.registry_unreachable {
            state.push(format!(
                "registry unreachable: {why}; routing to the last known members"
            ));
        }
        println!(
            "{:<16} {:<11} {:<14} {:<11} {:>6}  {}",
            s.name,
            s.kind,
            s.version.as_deref().unwrap_or("-"),
            s.strategy,
            s.members.len(),
            state.join("; ")
        );
    }
    print_certificates(&certs);
    match &cluster {
        Cluster::View(view) => crate::cluster::print(view),
        Cluster::None => {}
        Cluster::Unreadable(why) => println!("\ncluster: {why}"),
    }
    match drift {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("baton: could not compare the config with the file: {e:#}"),
    }
    ExitCode::SUCCESS
}

/// What `GET /v1/cluster` gave.
enum Cluster {
    /// The view, as the server sent it.
    View(serde_json::Value),
    /// No cluster mode (or a baton without the endpoint).
    None,
    /// A node whose registry could not be read: why.
    Unreadable(String),
}

async fn fetch_cluster(endpoint: &Endpoint) -> anyhow::Result<Cluster> {
    let response = call(endpoint, "GET", "/v1/cluster", None).await?;
    let status = response.status();
    let bytes = body(response).await?;
    Ok(match status {
        http::StatusCode::OK => Cluster::View(parse(&bytes)?),
        http::StatusCode::NOT_FOUND => Cluster::None,
        _ => {
            let why = parse::<Ack>(&bytes)
                .map(|ack| ack.errors.join("; "))
                .unwrap_or_else(|_| format!("the cluster view answered {status}"));
            Cluster::Unreadable(why)
        }
    })
}

/// The certificates part of `baton status`: nothing without HTTPS.
fn print_certificates(report: &crate::certs::CertificatesReport) {
    if !report.certificates.is_empty() {
        println!();
        println!(
            "{:<12} {:<6} {:<22} {:<30} CERTIFICATE",
            "LISTENER", "SOURCE", "EXPIRES", "NAMES"
        );
        for c in &report.certificates {
            println!(
                "{:<12} {:<6} {:<22} {:<30} {}",
                c.listener,
                c.source,
                c.not_after.as_deref().unwrap_or("not issued yet"),
                c.names.join(","),
                c.file.as_deref().unwrap_or("-"),
            );
        }
    }
    if let Some(acme) = &report.acme {
        let last = match (acme.failures, &acme.last_error) {
            (0, _) if acme.issued > 0 || acme.renew_at.is_some() => "last renewal ok".to_owned(),
            (0, _) => "no renewal yet".to_owned(),
            (n, Some(e)) => format!("last renewal failed ({n} in a row): {e}"),
            (n, None) => format!("last renewal failed ({n} in a row)"),
        };
        let next = acme
            .renew_at
            .as_deref()
            .map(|t| format!(", renews at {t}"))
            .unwrap_or_default();
        println!(
            "ACME {}: {}{next}; {last} ({} ordered, {} issued since start)",
            acme.names.join(","),
            acme.state,
            acme.orders,
            acme.issued
        );
    }
}

/// `baton pause`, `resume`, `reload`.
pub fn ack(to: &ControlArgs, path: &str, body: Option<Vec<u8>>, done: &str) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let response = call(&Endpoint::of(to)?, "POST", path, body).await?;
        parse::<Ack>(&self::body(response).await?)
    });
    match result {
        Ok(ack) => {
            if to.json {
                println!("{}", serde_json::to_string(&ack).unwrap_or_default());
            } else if ack.ok {
                println!("{done}");
                for s in &ack.services {
                    println!("  {s}");
                }
            } else {
                for e in &ack.errors {
                    eprintln!("baton: {e}");
                }
            }
            ExitCode::from(ack.exit)
        }
        Err(e) => fail(e),
    }
}

pub fn pause_body(args: &crate::cli::PauseArgs) -> Option<Vec<u8>> {
    serde_json::to_vec(&PauseRequest {
        service: args.service.clone(),
        max_wait_ms: Some(args.max_wait.as_millis() as u64),
        max_requests: Some(args.max_requests),
    })
    .ok()
}

pub fn service_body(service: &str) -> Option<Vec<u8>> {
    serde_json::to_vec(&rollback_request(service)).ok()
}

pub fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("baton: {e:#}");
    ExitCode::FAILURE
}

pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        format!(
            "unexpected answer from baton: {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

pub async fn body(response: hyper::Response<Incoming>) -> anyhow::Result<Bytes> {
    Ok(response.into_body().collect().await?.to_bytes())
}

pub async fn call(
    control: &Endpoint,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<hyper::Response<Incoming>> {
    use http_body_util::Full;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    let (mut sender, request) = match control {
        Endpoint::Socket(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .with_context(|| {
                    format!(
                        "could not connect to baton's control socket {} (is `baton serve --control` running?)",
                        socket.display()
                    )
                })?;
            (handshake(stream).await?, request.header("host", "baton"))
        }
        Endpoint::Http { authority, token } => {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .with_context(|| {
                    format!("could not connect to baton's admin listener {authority}")
                })?;
            let request = request
                .header("host", authority.as_str())
                .header("authorization", format!("Bearer {token}"));
            (handshake(stream).await?, request)
        }
    };
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = sender
        .send_request(request)
        .await
        .context("the request to baton failed")?;
    if response.status() == http::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "baton refused the admin token (401): check --token-file or {TOKEN_VARIABLE}"
        );
    }
    Ok(response)
}

async fn handshake<S>(
    stream: S,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("could not talk to baton")?;
    tokio::spawn(conn);
    Ok(sender)
}
