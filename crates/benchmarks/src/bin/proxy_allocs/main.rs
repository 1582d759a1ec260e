//! `proxy_allocs`: what baton's data plane allocates per proxied request, and what it holds per idle client
//! connection, counted exactly by a counting global allocator on the proxy's own thread.
//!
//! One process, three parts, each on its own thread so that only the proxy's allocations are counted:
//!
//! - a backend (hyper, one thread) that answers `GET /` with 1 KiB and echoes `POST /echo`;
//! - the proxy (`proxy::Proxy::serve`, the code `baton serve` runs) on a single-threaded runtime, one listener,
//!   one pool with the backend, one catch-all route, optionally with an access log;
//! - the client, on the main thread: plain blocking sockets (rustls over them with `--tls`), keep-alive, one request
//!   at a time.
//!
//! It prints allocations and bytes per request for a keep-alive `GET /` (1 KiB answer) and a keep-alive
//! `POST /echo` (1 KiB each way), then the heap the proxy holds per idle keep-alive client connection (each
//! answered once, then silent) right after the answers and after `--settle`, and after they all closed. With
//! `--tls` the listener is HTTPS (a test CA's certificate, rustls on both sides), with `--no-park` idle connections
//! are never parked, with `--h2` the idle connections speak HTTP/2 (h2c with prior knowledge, or ALPN `h2`). A timing benchmark this is not: the counts are the same on any machine (`bench/dataplane.sh`
//! records them).

mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// Counts the proxy's allocations per request and its heap per idle connection.
#[derive(Debug, Parser)]
struct Args {
    /// Requests measured per kind (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Requests sent before counting, per kind (fills pools and buffers).
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Idle client connections held for the memory count.
    #[arg(long, default_value_t = 2_000)]
    idle: usize,
    /// How long the idle connections stay silent before the second reading.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Serve HTTPS: TLS 1.3 with a test CA's certificate.
    #[arg(long)]
    tls: bool,
    /// The idle connections speak HTTP/2: h2c with prior knowledge, or ALPN `h2` with `--tls` (the requests
    /// counted stay HTTP/1.1).
    #[arg(long)]
    h2: bool,
    /// Never park idle client connections (baton parks them after `proxy::PARK_IDLE`): what parking saves.
    #[arg(long)]
    no_park: bool,
    /// Also write an access log (combined format) to this file.
    #[arg(long)]
    access_log: Option<String>,
    /// Print one JSON object instead of lines of text.
    #[arg(long)]
    json: bool,
    /// Write the backtrace of every allocation counted during the measured requests to DIR/sites-GET.txt and
    /// DIR/sites-POST.txt (slow; use a few requests): where the allocations come from. And the backtrace of every
    /// allocation the proxy made for one idle connection (the first) and still holds after `--settle` to
    /// DIR/sites-idle.txt: what an idle connection holds.
    #[arg(long, value_name = "DIR")]
    sites: Option<std::path::PathBuf>,
}

const BODY: [u8; 1024] = [b'x'; 1024];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backend = start_backend()?;
    let park = (!args.no_park).then_some(proxy::PARK_IDLE);
    let dir = testkit::TempDir::new("proxy-allocs");
    let tls = args.tls.then(|| Pki::new(&dir));
    let (addr, stop) = start_proxy(backend, args.access_log.as_deref(), park, tls.as_ref())?;
    let proxy = Connector {
        addr,
        tls: tls.as_ref().map(|pki| pki.client.clone()),
    };
    let idle_connector = Connector {
        addr,
        tls: tls.map(|pki| if args.h2 { pki.client_h2 } else { pki.client }),
    };

    let get = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: proxy_allocs\r\n\r\n".to_vec();
    let mut post = format!(
        "POST /echo HTTP/1.1\r\nHost: bench\r\nUser-Agent: proxy_allocs\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    post.extend_from_slice(&BODY);

    let sites = args.sites.as_deref();
    let get_counts = per_request(&proxy, &get, args.warmup, args.requests, sites).context("GET")?;
    let post_counts =
        per_request(&proxy, &post, args.warmup, args.requests, sites).context("POST")?;

    // Idle connections: each answered once, then silent.
    let before = counting::counts();
    let mut idle = Vec::with_capacity(args.idle);
    for i in 0..args.idle {
        // Only the first connection's: what one holds.
        counting::trace_live(sites.is_some() && i == 0);
        let mut conn = idle_connector.connect()?;
        match args.h2 {
            true => exchange_h2(&mut conn)?,
            false => exchange(&mut conn, &get)?,
        }
        idle.push(conn);
    }
    counting::trace_live(false);
    let held_at_once = counting::counts().live.saturating_sub(before.live);
    std::thread::sleep(args.settle);
    let held_settled = counting::counts().live.saturating_sub(before.live);
    if let Some(dir) = sites {
        let path = dir.join("sites-idle.txt");
        std::fs::write(&path, counting::take_live().join("\n=====\n"))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    drop(idle);
    // The proxy notices the closes as it polls them: wait until its heap stops shrinking.
    let mut last = u64::MAX;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = counting::counts().live;
        if now == last {
            break;
        }
        last = now;
    }
    let held_closed = last.saturating_sub(before.live);
    let _ = stop.send(());

    let per_conn = |bytes: u64| bytes as f64 / args.idle.max(1) as f64;
    if args.json {
        let json = serde_json::json!({
            "requests": args.requests,
            "get": get_counts.json(),
            "post": post_counts.json(),
            "idle_connections": args.idle,
            "settle_s": args.settle.as_secs_f64(),
            "idle_bytes_per_conn_at_once": per_conn(held_at_once),
            "idle_bytes_per_conn_settled": per_conn(held_settled),
            "bytes_held_after_close": held_closed,
            "access_log": args.access_log.is_some(),
            "tls": args.tls,
            "idle_h2": args.h2,
            "park_idle_s": park.map(|d| d.as_secs_f64()),
        });
        println!("{json}");
    } else {
        println!(
            "keep-alive GET /      : {:.2} allocations, {:.0} bytes per request",
            get_counts.allocs, get_counts.bytes
        );
        println!(
            "keep-alive POST /echo : {:.2} allocations, {:.0} bytes per request",
            post_counts.allocs, post_counts.bytes
        );
        println!(
            "{} idle {} connections: {:.0} bytes each right after their answer, {:.0} after {:?}; {} bytes held after they closed",
            args.idle,
            if args.h2 { "HTTP/2" } else { "HTTP/1.1" },
            per_conn(held_at_once),
            per_conn(held_settled),
            args.settle,
            held_closed
        );
    }
    Ok(())
}

/// Allocations and bytes per request.
struct PerRequest {
    allocs: f64,
    bytes: f64,
}

impl PerRequest {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "allocations": self.allocs, "bytes": self.bytes })
    }
}

/// Sends `request` `warmup + n` times over one keep-alive connection; counts the last `n`.
/// With `sites`, the backtrace of each counted allocation goes to `sites/sites-METHOD.txt`.
fn per_request(
    proxy: &Connector,
    request: &[u8],
    warmup: u64,
    n: u64,
    sites: Option<&std::path::Path>,
) -> anyhow::Result<PerRequest> {
    let mut conn = proxy.connect()?;
    for _ in 0..warmup {
        exchange(&mut conn, request)?;
    }
    let before = counting::counts();
    counting::trace_sites(sites.is_some());
    for _ in 0..n {
        exchange(&mut conn, request)?;
    }
    counting::trace_sites(false);
    let after = counting::counts();
    if let Some(dir) = sites {
        let name =
            String::from_utf8_lossy(request.split(|&b| b == b' ').next().unwrap_or(b"request"));
        let path = dir.join(format!("sites-{name}.txt"));
        std::fs::write(&path, counting::take_sites().join("\n=====\n"))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    let n = n.max(1) as f64;
    Ok(PerRequest {
        allocs: (after.allocs - before.allocs) as f64 / n,
        bytes: (after.bytes - before.bytes) as f64 / n,
    })
}

/// Where the client connects, and how.
struct Connector {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A client connection: plain, or TLS over a blocking socket.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Connector {
    fn connect(&self) -> anyhow::Result<Conn> {
        let addr = self.addr;
        let tcp =
            TcpStream::connect(addr).with_context(|| format!("could not connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let Some(config) = &self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let mut tls =
            rustls::StreamOwned::new(rustls::ClientConnection::new(config.clone(), name)?, tcp);
        // The handshake, now: an idle connection is one that has completed it.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Conn::Tls(Box::new(tls)))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The test CA's certificate for the proxy, and a client that trusts it.
struct Pki {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    client: Arc<rustls::ClientConfig>,
    /// A client that offers only `h2`.
    client_h2: Arc<rustls::ClientConfig>,
}

impl Pki {
    fn new(dir: &testkit::TempDir) -> Pki {
        let ca = testkit::pki::Ca::new("proxy_allocs CA");
        let (cert, key) = ca.leaf(&["localhost"], 1).write(dir.path(), "localhost");
        let client =
            testkit::client::client_trusting(std::slice::from_ref(&ca.der), &[b"http/1.1"]);
        let client_h2 = testkit::client::client_trusting(std::slice::from_ref(&ca.der), &[b"h2"]);
        Pki {
            cert,
            key,
            client,
            client_h2,
        }
    }
}

/// Writes `request` and reads one `200` answer with a `Content-Length` body.
fn exchange(conn: &mut Conn, request: &[u8]) -> anyhow::Result<()> {
    conn.write_all(request)?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            bail!("the proxy closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("unexpected answer: {head}");
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("answer without Content-Length")?;
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            bail!("the proxy closed the connection mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// One HTTP/2 exchange on a new connection: the client's preface, an empty SETTINGS frame and `GET /` on stream 1
/// (HPACK: indexed `:method GET`, `:scheme`, `:path /`, a literal `:authority`), the server's SETTINGS
/// acknowledged, until stream 1 ends; its status must be 200.
fn exchange_h2(conn: &mut Conn) -> anyhow::Result<()> {
    const SETTINGS: u8 = 4;
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const END_STREAM: u8 = 1;
    const ACK: u8 = 1;
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let scheme = match conn {
        Conn::Tls(tls) if tls.conn.alpn_protocol() != Some(b"h2") => {
            bail!("the proxy did not agree to HTTP/2 (ALPN)")
        }
        Conn::Tls(_) => 0x87,
        Conn::Plain(_) => 0x86,
    };
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(
        HEADERS,
        0x4 | END_STREAM,
        1,
        &[0x82, scheme, 0x84, 0x01, 5, b'b', b'e', b'n', b'c', b'h'],
    ));
    conn.write_all(&hello)?;
    let mut status = None;
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head)?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        conn.read_exact(&mut payload)?;
        if kind == SETTINGS && flags & ACK == 0 {
            conn.write_all(&frame(SETTINGS, ACK, 0, &[]))?;
        }
        if stream == 1 && kind == HEADERS && status.is_none() {
            // `:status 200` is index 8 of HPACK's static table; nothing asked for padding or priority.
            status = Some(payload.first() == Some(&0x88));
        }
        if stream == 1 && (kind == HEADERS || kind == DATA) && flags & END_STREAM != 0 {
            return match status {
                Some(true) => Ok(()),
                _ => bail!("stream 1 ended without :status 200"),
            };
        }
    }
}

/// The backend on a thread of its own: `GET /` → 1 KiB, `POST /echo` → the body.
fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("backend listener");
                loop {
                    let Ok((io, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = io.set_nodelay(true);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(answer);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(io), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(addr)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.method() == hyper::Method::POST {
        let body = req.into_body().collect().await?.to_bytes();
        Ok(Response::new(Full::new(body)))
    } else {
        Ok(Response::new(Full::new(Bytes::from_static(&BODY))))
    }
}

/// The proxy on a counted thread of its own; returns its address and what stops it.
fn start_proxy(
    backend: SocketAddr,
    access_log: Option<&str>,
    park: Option<Duration>,
    tls: Option<&Pki>,
) -> anyhow::Result<(SocketAddr, mpsc::Sender<()>)> {
    let mut text =
        "[[listener]]\naddress = \"127.0.0.1:0\"\nmax_connections = 100000\n".to_string();
    if let Some(pki) = tls {
        text.push_str(&format!(
            "[listener.tls]\ncertificates = [{{ cert = {:?}, key = {:?} }}]\n",
            pki.cert.display().to_string(),
            pki.key.display().to_string()
        ));
    }
    text.push_str(&format!(
        "\n[pool.app]\nmembers = [{{ address = \"{backend}\" }}]\n\n[[route]]\npool = \"app\"\n"
    ));
    if let Some(path) = access_log {
        text.push_str(&format!("\n[access_log]\npath = \"{path}\"\n"));
    }
    let config = config::parse(&text, "proxy_allocs.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("proxy".into())
        .spawn(move || {
            counting::count_this_thread();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let cfg = config.listeners[0].clone();
                let mut proxy = proxy::Proxy::new(&config)
                    .expect("proxy config")
                    .with_park_idle(park);
                if let Some(tls_cfg) = &cfg.tls {
                    tls::install_default_provider();
                    let server = tls::ServerTls::new(tls_cfg, None).expect("listener TLS");
                    proxy = proxy.with_server_tls(cfg.name.clone(), server);
                }
                let proxy = Arc::new(proxy);
                let socket = handoff::Listener::bind(&cfg.address).expect("bind");
                let addr = socket.local_addr().expect("address");
                let named = handoff::NamedListener {
                    name: cfg.name.clone(),
                    listener: socket,
                };
                let (stop, stop_watch) = tokio::sync::watch::channel(handoff::http::Stop::Run);
                let serving = tokio::spawn(proxy.serve(
                    vec![(named, cfg)],
                    config.proxy.clone(),
                    stop_watch,
                    || {},
                ));
                let _ = addr_tx.send(addr);
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                let _ = stop.send(handoff::http::Stop::Now);
                let _ = serving.await;
            });
        })?;
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the proxy did not start")?;
    let text_addr = match addr {
        handoff::ListenAddr::Tcp(a) => a,
        other => bail!("unexpected listener address {other:?}"),
    };
    Ok((text_addr, stop_tx))
}
