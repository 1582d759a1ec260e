//! Pools whose members speak HTTPS (`Pool::tls`): a test CA, members served by tokio-rustls, the proxy verifying them with the
//! pool's CA bundle — and refusing them (a connect failure, 502) when the
//! certificate is not the CA's or does not name the member.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring::default_provider;

use super::pki::Ca;
use super::{answer, config, get, start, within};

/// An HTTPS upstream (TLS 1.2/1.3, ALPN http/1.1) answering like
/// [`Upstream`](super::Upstream), with a certificate for `names` from `ca`.
struct TlsUpstream {
    addr: SocketAddr,
    served: watch::Receiver<usize>,
    /// TLS connections accepted (handshake completed).
    connections: Arc<AtomicUsize>,
}

impl TlsUpstream {
    async fn start(name: &'static str, ca: &Ca, names: &[&str]) -> TlsUpstream {
        let (cert, key) = ca.leaf(names);
        let mut tls = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count, served) = watch::channel(0);
        let count = Arc::new(count);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (acceptor, count) = (acceptor.clone(), count.clone());
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        count.send_modify(|n| *n += 1);
                        let response = answer(name, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            served,
            connections,
        }
    }

    fn served(&self) -> usize {
        *self.served.borrow()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A config routing everything to pool `app` of `members` over TLS.
fn tls_pool(members: &[SocketAddr], tls: config::UpstreamTls) -> config::Config {
    let mut cfg = config(&[("app", members)], "app");
    cfg.pools.get_mut("app").unwrap().forward.tls = Some(tls);
    cfg
}

/// A check of `/healthz` every 50 ms, one answer deciding.
fn healthz() -> config::HealthCheck {
    config::HealthCheck {
        path: "/healthz".to_owned(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        start_interval: Duration::from_millis(10),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        expect_status: config::StatusRange {
            first: 200,
            last: 299,
        },
    }
}

fn trusting(ca: &Ca, server_name: Option<&str>) -> config::UpstreamTls {
    config::UpstreamTls {
        ca_bundle: Some(ca.bundle().to_owned()),
        server_name: server_name.map(str::to_owned),
    }
}

#[tokio::test]
async fn https_members_are_reached_over_tls_verified_by_the_pools_ca() {
    tls::install_default_provider();
    let ca = Ca::new();
    let app = TlsUpstream::start("secure", &ca, &["127.0.0.1"]).await;
    let running = start(&tls_pool(&[app.addr], trusting(&ca, None))).await;
    for _ in 0..3 {
        let answer = get(running.addr, "/header/host").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body.unwrap(), "test", "the client's Host");
    }
    assert_eq!(get(running.addr, "/").await.body.unwrap(), "secure");
    assert_eq!(app.served(), 4);
    let member = running
        .proxy
        .member_stats("app", &app.addr.to_string())
        .unwrap()
        .snapshot();
    assert_eq!((member.requests(), member.failures()), (4, 0));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_connect_failure_and_a_502() {
    tls::install_default_provider();
    let (ca, other) = (Ca::new(), Ca::new());
    let app = TlsUpstream::start("secure", &ca, &["127.0.0.1"]).await;
    let running = start(&tls_pool(&[app.addr], trusting(&other, None))).await;

    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{answer:?}");
    assert_eq!(
        app.served(),
        0,
        "no request went over an unverified connection"
    );
    let member = running
        .proxy
        .member_stats("app", &app.addr.to_string())
        .unwrap()
        .snapshot();
    assert_eq!(
        (member.requests(), member.failures()),
        (1, 1),
        "counted as the member's connect failure: {member:?}"
    );
}

#[tokio::test]
async fn a_refused_member_is_never_sent_the_request_another_one_answers() {
    tls::install_default_provider();
    let (ca, other) = (Ca::new(), Ca::new());
    let good = TlsUpstream::start("good", &ca, &["127.0.0.1"]).await;
    let rogue = TlsUpstream::start("rogue", &other, &["127.0.0.1"]).await;
    let running = start(&tls_pool(&[good.addr, rogue.addr], trusting(&ca, None))).await;
    for _ in 0..4 {
        // A POST with a body: only a never-sent request may go elsewhere.
        let answer = super::request(running.addr, http::Method::POST, "/", "payload").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body.unwrap(), "good");
    }
    assert_eq!((good.served(), rogue.served()), (4, 0));
}

#[tokio::test]
async fn the_certificate_must_name_the_member_or_the_configured_server_name() {
    tls::install_default_provider();
    let ca = Ca::new();
    let app = TlsUpstream::start("named", &ca, &["app.internal"]).await;

    let by_address = start(&tls_pool(&[app.addr], trusting(&ca, None))).await;
    let answer = get(by_address.addr, "/").await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_GATEWAY,
        "127.0.0.1 is not named"
    );

    let by_name = start(&tls_pool(&[app.addr], trusting(&ca, Some("app.internal")))).await;
    let answer = get(by_name.addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body.unwrap(), "named");
}

#[tokio::test]
async fn active_checks_of_an_https_pool_speak_tls() {
    tls::install_default_provider();
    let ca = Ca::new();
    let first = TlsUpstream::start("first", &ca, &["127.0.0.1"]).await;
    let added = TlsUpstream::start("added", &ca, &["127.0.0.1"]).await;
    let mut cfg = tls_pool(&[first.addr], trusting(&ca, None));
    cfg.pools.get_mut("app").unwrap().health = Some(healthz());
    let running = start(&cfg).await;

    // A member added by a reload takes traffic once its checks pass: over
    // plain HTTP they never would.
    let mut next = cfg.clone();
    let member: config::UpstreamAddr = added.addr.into();
    next.pools
        .get_mut("app")
        .unwrap()
        .members
        .push(config::Member {
            address: member,
            weight: 1,
        });
    running.proxy.reload(&next).unwrap();
    let health = {
        let registry = running.proxy.registry.lock().unwrap();
        registry
            .member_health("app", &added.addr.to_string())
            .unwrap()
    };
    let mut availability = health.subscribe();
    within(availability.wait_for(|a| a.is_available()))
        .await
        .unwrap();
    assert!(added.served() >= 1, "probed over TLS");
    assert!(health.is_healthy());
}

#[tokio::test]
async fn a_reload_keeps_https_connections_and_a_rotated_ca_bundle_is_read_again() {
    tls::install_default_provider();
    let (ca, other) = (Ca::new(), Ca::new());
    let app = TlsUpstream::start("secure", &ca, &["127.0.0.1"]).await;
    let cfg = tls_pool(&[app.addr], trusting(&ca, None));
    let running = start(&cfg).await;
    assert_eq!(get(running.addr, "/").await.status, StatusCode::OK);

    // Same settings, same bundle: the same client config, so the pooled
    // connection is still the member's.
    running.proxy.reload(&cfg).unwrap();
    assert_eq!(get(running.addr, "/").await.status, StatusCode::OK);
    assert_eq!((app.served(), app.connections()), (2, 1));

    // The bundle now holds another CA: the next reload trusts only it.
    std::fs::copy(other.bundle(), ca.bundle()).unwrap();
    running.proxy.reload(&cfg).unwrap();
    let answer = get(running.addr, "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{answer:?}");
    assert_eq!(app.served(), 2);
}

#[tokio::test]
async fn a_config_whose_ca_bundle_cannot_be_read_is_refused_whole() {
    tls::install_default_provider();
    let ca = Ca::new();
    let app = TlsUpstream::start("secure", &ca, &["127.0.0.1"]).await;
    let cfg = tls_pool(&[app.addr], trusting(&ca, None));
    let running = start(&cfg).await;

    let mut broken = cfg.clone();
    broken.pools.get_mut("app").unwrap().forward.tls = Some(config::UpstreamTls {
        ca_bundle: Some(ca.bundle().with_extension("missing")),
        server_name: None,
    });
    let errors = running.proxy.reload(&broken).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("pool app: "), "{errors:?}");
    assert_eq!(
        get(running.addr, "/").await.status,
        StatusCode::OK,
        "unchanged"
    );
}

/// The probe others use (the deploy engine's readiness, smoke and target
/// checks): the pool's check and handshake, verified by the CA, and refused
/// by one that does not trust the member.
#[tokio::test]
async fn the_shared_probe_speaks_tls_like_the_pools_checks() {
    tls::install_default_provider();
    let (ca, other) = (Ca::new(), Ca::new());
    let app = TlsUpstream::start("probed", &ca, &["127.0.0.1"]).await;
    let health = healthz();
    let check = crate::active_check(&health, "/smoke");
    assert_eq!(
        (check.path.as_str(), check.expect.clone()),
        ("/smoke", 200..=299)
    );
    let addr = app.addr.to_string();
    let handshake = crate::tls_handshake(&trusting(&ca, None), "127.0.0.1").unwrap();
    let status = within(balance::probe_over(&addr, &check, Some(&handshake)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!((app.connections(), app.served()), (1, 1));

    let untrusting = crate::tls_handshake(&trusting(&other, None), "127.0.0.1").unwrap();
    let refused = within(balance::probe_over(&addr, &check, Some(&untrusting))).await;
    assert!(
        matches!(refused, Err(balance::ProbeError::Handshake { .. })),
        "{refused:?}"
    );
    assert_eq!(app.served(), 1);
}
