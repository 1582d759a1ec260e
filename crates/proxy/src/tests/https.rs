//! What listeners do because of HTTPS: ACME HTTP-01 challenges and
//! redirects to `https://` on plain listeners, HSTS and
//! `X-Forwarded-Proto: https` on TLS listeners — served over real TLS
//! (`tls::ServerTls`, a certificate from the test's CA). The listener's TLS
//! settings are set on the typed config, as validation would.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION, STRICT_TRANSPORT_SECURITY};
use http::{Method, Request, StatusCode};
use http_body_util::{Empty, Full};

use super::pki::Ca;
use super::{Answer, Upstream, closed_port, config, get, send, send_tls, serve, start};
use crate::Proxy;

const TOKEN: &str = "Xk3_-tok9";
const KEY_AUTHORIZATION: &str = "Xk3_-tok9.thumbprint";

/// `method path` with `Host: host` (none when `None`) and a small body for
/// methods other than GET and HEAD.
async fn call(addr: SocketAddr, method: Method, host: Option<&str>, path: &str) -> Answer {
    let mut builder = Request::builder().method(method.clone()).uri(path);
    if let Some(host) = host {
        builder = builder.header(HOST, host);
    }
    if method == Method::GET || method == Method::HEAD {
        send(addr, builder.body(Empty::<Bytes>::new()).unwrap()).await
    } else {
        let body = Full::new(Bytes::from_static(b"payload"));
        send(addr, builder.body(body).unwrap()).await
    }
}

/// The same over HTTPS to `localhost`, trusting `ca`.
async fn call_tls(addr: SocketAddr, ca: &Ca, method: Method, path: &str) -> Answer {
    let builder = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, "localhost");
    if method == Method::GET || method == Method::HEAD {
        let request = builder.body(Empty::<Bytes>::new()).unwrap();
        send_tls(addr, ca, "localhost", request).await
    } else {
        let request = builder.body(Full::new(Bytes::from_static(b"payload")));
        send_tls(addr, ca, "localhost", request.unwrap()).await
    }
}

/// Makes `cfg`'s first listener HTTPS (a certificate for `localhost` from
/// `ca`, and `hsts`) and builds its proxy.
fn https_proxy(cfg: &mut config::Config, ca: &Ca, hsts: Option<config::Hsts>) -> Proxy {
    tls::install_default_provider();
    let settings = config::Tls {
        certificates: vec![ca.leaf_files(&["localhost"])],
        acme: false,
        min_version: config::TlsVersion::Tls12,
        max_version: config::TlsVersion::Tls13,
        cipher_suites: None,
        hsts,
    };
    let server_tls = tls::ServerTls::new(&settings, None).unwrap();
    let listener = &mut cfg.listeners[0];
    listener.tls = Some(settings);
    let name = listener.name.clone();
    Proxy::new(cfg).unwrap().with_server_tls(name, server_tls)
}

fn challenges() -> tls::Challenges {
    let challenges = tls::Challenges::default();
    challenges.insert(TOKEN.to_owned(), KEY_AUTHORIZATION.to_owned());
    challenges
}

fn challenge_path(token: &str) -> String {
    format!("{}{token}", tls::CHALLENGE_PREFIX)
}

fn year_of_hsts() -> config::Hsts {
    config::Hsts {
        max_age: Duration::from_secs(31_536_000),
        include_subdomains: true,
        preload: false,
    }
}

#[tokio::test]
async fn plain_listeners_answer_acme_challenges_themselves() {
    let app = Upstream::start("app").await;
    let cfg = config(&[("app", &[app.addr])], "app");
    let running = serve(
        Proxy::new(&cfg).unwrap().with_challenges(challenges()),
        &cfg,
    )
    .await;

    let answer = get(running.addr, &challenge_path(TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.headers[CONTENT_TYPE], "text/plain");
    assert_eq!(answer.body.unwrap(), KEY_AUTHORIZATION);

    let head = call(
        running.addr,
        Method::HEAD,
        Some("test"),
        &challenge_path(TOKEN),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body.unwrap(), "", "HEAD: no body");

    let unknown = get(running.addr, &challenge_path("unknown-token")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    let post = call(
        running.addr,
        Method::POST,
        Some("test"),
        &challenge_path(TOKEN),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED, "{post:?}");
    assert_eq!(
        app.served(),
        0,
        "the challenge path never reaches upstreams"
    );

    // Everything else is routed as usual.
    assert_eq!(get(running.addr, "/").await.body.unwrap(), "app");
}

#[tokio::test]
async fn without_the_challenges_store_the_challenge_path_is_routed() {
    let app = Upstream::start("app").await;
    let cfg = config(&[("app", &[app.addr])], "app");
    let running = start(&cfg).await;
    let answer = get(running.addr, &challenge_path(TOKEN)).await;
    assert_eq!(answer.body.unwrap(), "app");
}

#[tokio::test]
async fn tls_listeners_do_not_answer_challenges() {
    let app = Upstream::start("app").await;
    let mut cfg = config(&[("app", &[app.addr])], "app");
    let ca = Ca::new();
    let proxy = https_proxy(&mut cfg, &ca, None).with_challenges(challenges());
    let running = serve(proxy, &cfg).await;
    let answer = call_tls(running.addr, &ca, Method::GET, &challenge_path(TOKEN)).await;
    assert_eq!(answer.body.unwrap(), "app", "routed like any path");
}

#[tokio::test]
async fn redirect_https_sends_every_request_to_https_but_the_challenge_path() {
    let app = Upstream::start("app").await;
    let mut cfg = config(&[("app", &[app.addr])], "app");
    cfg.listeners[0].redirect_https = Some(443);
    let running = serve(
        Proxy::new(&cfg).unwrap().with_challenges(challenges()),
        &cfg,
    )
    .await;
    let addr = running.addr;

    let answer = call(addr, Method::GET, Some("example.com:8080"), "/a/b?x=1&y=2").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY, "{answer:?}");
    assert_eq!(
        answer.headers[LOCATION], "https://example.com/a/b?x=1&y=2",
        "host without its port, path and query kept, no :443"
    );
    assert_eq!(answer.body.unwrap(), "");

    let head = call(addr, Method::HEAD, Some("example.com"), "/").await;
    assert_eq!(head.status, StatusCode::MOVED_PERMANENTLY);
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let answer = call(addr, method.clone(), Some("example.com"), "/form?id=7").await;
        assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT, "{method}");
        assert_eq!(answer.headers[LOCATION], "https://example.com/form?id=7");
    }

    let no_host = call(addr, Method::GET, None, "/").await;
    assert_eq!(no_host.status, StatusCode::BAD_REQUEST, "{no_host:?}");

    // ACME must reach its challenge over plain HTTP.
    let challenge = call(
        addr,
        Method::GET,
        Some("example.com"),
        &challenge_path(TOKEN),
    )
    .await;
    assert_eq!(challenge.status, StatusCode::OK, "{challenge:?}");
    assert_eq!(challenge.body.unwrap(), KEY_AUTHORIZATION);

    assert_eq!(app.served(), 0, "nothing is forwarded");
    // Not counted as the pool's: no pool was involved.
    let pool = running.proxy.pool_stats("app").unwrap().snapshot();
    assert_eq!(pool.requests(), 0);
}

#[tokio::test]
async fn redirects_to_another_port_name_it() {
    let app = Upstream::start("app").await;
    let mut cfg = config(&[("app", &[app.addr])], "app");
    cfg.listeners[0].redirect_https = Some(8443);
    let running = start(&cfg).await;
    let answer = call(running.addr, Method::GET, Some("[::1]:8080"), "/x").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(answer.headers[LOCATION], "https://[::1]:8443/x");
    // Without the challenges store the challenge path is still exempt.
    let challenge = call(
        running.addr,
        Method::GET,
        Some("a.test"),
        &challenge_path(TOKEN),
    )
    .await;
    assert_eq!(challenge.body.unwrap(), "app");
}

#[tokio::test]
async fn tls_listeners_send_hsts_on_every_response_and_x_forwarded_proto_https() {
    let app = Upstream::start("app").await;
    let dead = closed_port();
    let source = format!(
        "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
         [pool.app]\nmembers = [{{ address = \"{}\" }}]\n\
         [pool.dead]\nmembers = [{{ address = \"{dead}\" }}]\n\
         [[route]]\npath_prefix = \"/dead\"\npool = \"dead\"\n\
         [[route]]\npath_prefix = \"/\"\nmethods = [\"GET\"]\npool = \"app\"\n",
        app.addr
    );
    let mut cfg = config::parse(&source, "test.toml").unwrap();
    let ca = Ca::new();
    let running = serve(https_proxy(&mut cfg, &ca, Some(year_of_hsts())), &cfg).await;
    let addr = running.addr;
    let hsts = "max-age=31536000; includeSubDomains";

    let proto = call_tls(addr, &ca, Method::GET, "/header/x-forwarded-proto").await;
    assert_eq!(proto.status, StatusCode::OK, "{proto:?}");
    assert_eq!(proto.headers[STRICT_TRANSPORT_SECURITY], hsts);
    assert_eq!(proto.body.unwrap(), "https");

    // The upstream's own is replaced: one header, ours.
    let replaced = call_tls(addr, &ca, Method::GET, "/with-hsts").await;
    let values: Vec<_> = replaced
        .headers
        .get_all(STRICT_TRANSPORT_SECURITY)
        .iter()
        .collect();
    assert_eq!(values, [hsts]);

    // Upstream errors, our 502, our 405: all of them.
    let answers = [
        call_tls(addr, &ca, Method::GET, "/status/503").await,
        call_tls(addr, &ca, Method::GET, "/status/301").await,
        call_tls(addr, &ca, Method::GET, "/dead").await,
        call_tls(addr, &ca, Method::POST, "/").await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [503, 301, 502, 405]);
    for answer in &answers {
        assert_eq!(
            answer.headers[STRICT_TRANSPORT_SECURITY], hsts,
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn no_hsts_on_plain_listeners_nor_on_tls_ones_without_it() {
    let app = Upstream::start("app").await;
    let cfg = config(&[("app", &[app.addr])], "app");
    let plain = start(&cfg).await;
    let answer = get(plain.addr, "/header/x-forwarded-proto").await;
    assert!(!answer.headers.contains_key(STRICT_TRANSPORT_SECURITY));
    assert_eq!(answer.body.unwrap(), "http");

    // A TLS listener without `hsts` sends none either.
    let mut with_tls = cfg.clone();
    let ca = Ca::new();
    let tls_without_hsts = serve(https_proxy(&mut with_tls, &ca, None), &with_tls).await;
    let path = "/header/x-forwarded-proto";
    let answer = call_tls(tls_without_hsts.addr, &ca, Method::GET, path).await;
    assert!(!answer.headers.contains_key(STRICT_TRANSPORT_SECURITY));
    assert_eq!(answer.body.unwrap(), "https");
}
