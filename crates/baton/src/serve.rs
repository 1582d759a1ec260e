//! `baton serve` and `baton check`: load the config (every error at once,
//! exit 64), take or bind the listeners, run the proxy, and turn signals
//! into its control: SIGHUP reloads the file (a bad file is refused and the
//! running config keeps serving), SIGTERM/SIGINT drain, a second one closes
//! what is left.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use handoff::http::Stop;
use handoff::{Listener, Listeners, NamedListener};
use proxy::Proxy;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::EXIT_USAGE;
use crate::cli::{CheckArgs, ServeArgs};

pub fn check(args: CheckArgs) -> ExitCode {
    match config::load(&args.file) {
        Ok(cfg) => {
            if let Err(e) = crate::cluster::supported(&cfg) {
                eprintln!("{}: error: {e}", args.file.display());
                return ExitCode::from(EXIT_USAGE);
            }
            tls::install_default_provider();
            if let Err(e) = crate::cluster::check_files(&cfg) {
                eprintln!("{}: error: {e}", args.file.display());
                return ExitCode::from(EXIT_USAGE);
            }
            // The certificates are read too: a file that loads but would not
            // serve is an error worth knowing before a restart.
            if let Err(errors) = https(&cfg, &tls::AcmeCerts::default()) {
                for e in &errors {
                    eprintln!("{}: error: {e}", args.file.display());
                }
                return ExitCode::from(EXIT_USAGE);
            }
            println!(
                "{}: ok ({} listeners, {} pools, {} routes)",
                args.file.display(),
                cfg.listeners.len(),
                cfg.pools.len(),
                cfg.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

pub fn main(args: ServeArgs) -> ExitCode {
    // Taken before the runtime starts its threads, so LISTEN_* is cleared;
    // in an upgrade's new process, the old one's sockets.
    let inherited = match crate::upgrade::receive() {
        Ok(Some(handed)) => handed,
        Ok(None) => match Listeners::inherit() {
            Ok(l) => l.map(Listeners::into_vec).unwrap_or_default(),
            Err(e) => {
                eprintln!("baton: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Err(e) => {
            eprintln!("baton: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The text is kept: it is the live config `baton diff` compares with.
    let (loaded, source) = match std::fs::read_to_string(&args.config) {
        Ok(text) => (
            config::parse(&text, &args.config.display().to_string()),
            text,
        ),
        Err(_) => (config::load(&args.config), String::new()),
    };
    let cfg = match loaded {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = crate::cluster::supported(&cfg) {
        eprintln!("{}: error: {e}", args.config.display());
        return ExitCode::from(EXIT_USAGE);
    }
    if cfg.acme.is_some() && args.state.is_none() {
        eprintln!(
            "baton: {}: [acme] keeps its account and certificates in the state directory: add --state DIR",
            args.config.display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    // The one crypto provider of the process (ring), before any TLS config.
    tls::install_default_provider();
    let acme_certs = tls::AcmeCerts::default();
    let server_tls = match https(&cfg, &acme_certs) {
        Ok(t) => t,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: error: {e}", args.config.display());
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let listeners = match take_or_bind(&cfg, inherited) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baton: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // `[proxy] workers` threads serve the data plane (see `serve_runtime`).
    let workers = cfg.proxy.workers.threads();
    let runtime = match crate::serve_runtime(workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    tracing::info!(
        workers = runtime.metrics().num_workers(),
        "data plane threads"
    );
    let store = match &args.state {
        Some(dir) => match deploy::Store::open(dir) {
            Ok(store) => Some(store),
            Err(e) => {
                // The error names the path and what could not be done to it.
                eprintln!("baton: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // The admin token is read now: a missing or weak one is a usage error
    // before anything listens.
    let admin = match &cfg.admin {
        Some(a) => match crate::admin::Token::read(&a.token) {
            Ok(token) => Some((a.listen, token)),
            Err(e) => {
                eprintln!("baton: {}: {e:#}", args.config.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    let api = Endpoints {
        socket: args.control.clone(),
        admin,
    };
    let state_dir = args.state.clone();
    let https = Https {
        listeners: server_tls,
        acme_certs,
        state_dir,
    };
    match runtime.block_on(run(args.config, source, api, store, cfg, listeners, https)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("baton: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the control API is served: the `--control` Unix socket (no
/// token: its mode is 0600) and `[admin]`'s TCP address with its token.
struct Endpoints {
    socket: Option<PathBuf>,
    admin: Option<(std::net::SocketAddr, crate::admin::Token)>,
}

/// The HTTPS side of `baton serve`: a `ServerTls` per TLS listener (by
/// name), the certificates ACME obtains, and where it keeps them.
struct Https {
    listeners: Vec<(String, tls::ServerTls)>,
    acme_certs: tls::AcmeCerts,
    state_dir: Option<PathBuf>,
}

/// Reads and checks every TLS listener's certificates.
pub(crate) fn https(
    cfg: &config::Config,
    acme: &tls::AcmeCerts,
) -> Result<Vec<(String, tls::ServerTls)>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for l in &cfg.listeners {
        let Some(t) = &l.tls else { continue };
        match tls::ServerTls::new(t, t.acme.then(|| acme.clone())) {
            Ok(st) => out.push((l.name.clone(), st)),
            Err(e) => errors.push(format!("listener {:?}: {e}", l.name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Pairs each `[[listener]]` with an inherited socket of the same name, or
/// binds it; prints one `listening on ADDR` line per listener.
fn take_or_bind(
    cfg: &config::Config,
    mut inherited: Vec<NamedListener>,
) -> anyhow::Result<Vec<(NamedListener, config::Listener)>> {
    use std::io::Write;
    let mut out = Vec::with_capacity(cfg.listeners.len());
    let mut stdout = std::io::stdout().lock();
    for l in &cfg.listeners {
        let socket = match inherited.iter().position(|s| s.name == l.name) {
            Some(i) => inherited.swap_remove(i).listener,
            None => Listener::bind(&l.address)?,
        };
        let addr = socket
            .local_addr()
            .context("could not read a listener's address")?;
        writeln!(stdout, "listening on {addr}")?;
        tracing::info!(listener = %l.name, %addr, "listening");
        out.push((
            NamedListener {
                name: l.name.clone(),
                listener: socket,
            },
            l.clone(),
        ));
    }
    stdout.flush()?;
    for unused in inherited {
        tracing::warn!(name = %unused.name, "inherited socket matches no [[listener]]; closing it");
    }
    Ok(out)
}

async fn run(
    path: PathBuf,
    source: String,
    endpoints: Endpoints,
    store: Option<deploy::Store>,
    cfg: config::Config,
    listeners: Vec<(NamedListener, config::Listener)>,
    https: Https,
) -> anyhow::Result<ExitCode> {
    let mut hup = signal(SignalKind::hangup()).context("could not handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("could not handle SIGUSR2")?;

    // The engine runs the supervised services and gives the proxy a pool
    // per service; until their instances are ready those pools are empty.
    if store.is_none() && !cfg.services.is_empty() {
        tracing::info!("no --state directory: deployed versions are not kept across restarts");
    }
    let engine = deploy::Engine::new(cfg.clone(), store).context("could not read the state")?;
    // With [cluster]: connected now (a wrong endpoint or password is said at
    // start), so that every instance the engine starts is registered.
    let mut node = crate::cluster::join(&cfg, &engine).await?;
    let mut acme_status = None;
    let proxy = match Proxy::new(&engine.effective()) {
        Ok(mut p) => {
            for (name, st) in &https.listeners {
                p = p.with_server_tls(name.clone(), st.clone());
            }
            if let Some(acme) = &cfg.acme {
                let challenges = tls::Challenges::default();
                p = p.with_challenges(challenges.clone());
                let dir = https.state_dir.clone().context("[acme] needs --state")?;
                let client =
                    tls::AcmeClient::new(acme.clone(), dir, https.acme_certs.clone(), challenges);
                acme_status = Some((acme.names.clone(), client.status()));
                client.spawn();
            }
            Arc::new(p)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: error: {e}", path.display());
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    crate::upgrade::start_engine(&engine, proxy.clone()).await?;
    if let Some(node) = &mut node {
        node.follow(&engine);
    }
    let (stop, stop_rx) = watch::channel(Stop::Run);
    crate::upgrade::remember_listeners(&listeners);
    let upgrader = crate::upgrade::Upgrader::new(engine.clone(), proxy.clone(), stop.clone())?;
    let listener_names: Vec<String> = cfg.listeners.iter().map(|l| l.name.clone()).collect();
    // Certificates are re-read when their files change, and on every reload.
    let certificates: Vec<tls::ServerTls> =
        https.listeners.iter().map(|(_, t)| t.clone()).collect();
    let _watch = tls::watch(certificates.clone(), std::time::Duration::from_secs(2));
    let counters = Arc::new(crate::metrics::Counters::default());
    let live = crate::dashboard::Live::new();
    let reloader = Arc::new(crate::reload::Reloader::new(
        path.clone(),
        source,
        engine.clone(),
        listener_names,
        certificates,
        counters.clone(),
        live.clone(),
    ));
    let api = {
        let uses_acme = |name: &str| {
            cfg.listeners
                .iter()
                .any(|l| l.name == name && l.tls.as_ref().is_some_and(|t| t.acme))
        };
        let certs = crate::certs::Certs {
            listeners: https
                .listeners
                .iter()
                .map(|(name, t)| (name.clone(), t.clone(), uses_acme(name)))
                .collect(),
            acme: acme_status,
        };
        live.sample(proxy.clone(), stop_rx.clone());
        crate::control::router(crate::control::Ctx {
            live,
            engine: engine.clone(),
            proxy: proxy.clone(),
            reload: reloader.clone(),
            counters: counters.clone(),
            certs,
            upgrader: upgrader.clone(),
            cluster: node
                .as_ref()
                .map(crate::cluster::Node::viewer)
                .unwrap_or_default(),
        })
    };
    let mut control = Vec::new();
    if let Some(socket) = &endpoints.socket {
        control.push(crate::control::start(socket, api.clone(), stop_rx.clone())?);
    }
    if let Some((listen, token)) = endpoints.admin {
        control.push(crate::admin::start(listen, token, api, stop_rx.clone())?);
    }
    let mut serving = tokio::spawn(proxy.clone().serve(
        listeners,
        cfg.proxy.clone(),
        stop_rx,
        || {
            tracing::info!("ready");
            if let Err(e) = handoff::notify::ready() {
                tracing::warn!(error = %e, "could not notify the service manager");
            }
            crate::upgrade::ready();
        },
    ));
    loop {
        tokio::select! {
            // Deploys the reload starts run on; the signal loop goes on.
            _ = hup.recv() => drop(reloader.reload_file(false).await),
            _ = term.recv() => begin_stop(&stop),
            _ = int.recv() => begin_stop(&stop),
            _ = usr2.recv() => {
                let upgrader = upgrader.clone();
                tokio::spawn(async move { upgrader.run(crate::upgrade::DEFAULT_TIMEOUT).await });
            }
            report = &mut serving => {
                let report = report.context("the proxy task failed")?;
                // Nothing reaches the services any more: stop them (unless a
                // new baton runs them now, and then it is the one in the
                // cluster registry too).
                let services_clean = crate::upgrade::handed_over() || engine.shutdown().await;
                if let Some(node) = node
                    && !crate::upgrade::handed_over()
                {
                    node.leave().await;
                }
                for task in control {
                    let _ = task.await;
                }
                return Ok(if report.drained && services_clean {
                    tracing::info!(connections = report.connections, pid = std::process::id(), "stopped");
                    ExitCode::SUCCESS
                } else {
                    tracing::warn!("stopped with connections cut at the drain deadline");
                    ExitCode::FAILURE
                });
            }
        }
    }
}

fn begin_stop(stop: &watch::Sender<Stop>) {
    let next = if *stop.borrow() == Stop::Run {
        tracing::info!("draining (signal again to close everything now)");
        let _ = handoff::notify::stopping();
        Stop::Drain
    } else {
        tracing::warn!("second stop signal: closing every connection now");
        Stop::Now
    };
    stop.send_replace(next);
}
