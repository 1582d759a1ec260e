//! HTTPS through the real `baton serve`: protocol and cipher policy as
//! `curl` (OpenSSL) sees it, certificates by SNI, h2 by ALPN, the redirect
//! to HTTPS and HSTS, certificate reload under load, broken certificates
//! refused at reload, and ACME against the real pebble. Certificates are
//! made at test time (rcgen) in the test's directory; upstreams are `hello`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::date_time_ymd;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, HandshakeKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::pebble::{Pebble, free_port};
use crate::support::tls::{
    Ca, Curl, HttpsConn, Leaf, cert_entry, client_any, client_trusting, connect, curl,
    curl_client_hello, replace, served,
};
use crate::support::{
    self, EVENT_TIMEOUT, TempDir, baton_serve, baton_serve_with, exchange, request, run_baton,
    start_hello,
};

const TLS11: u16 = 0x0302;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;

fn write_config(dir: &TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A pool of one `hello` and a catch-all route to it.
fn pool(upstream: &str) -> String {
    format!(
        "[pool.app]\nmembers = [{{ address = \"{upstream}\" }}]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"app\"\n"
    )
}

/// Runs `curl ARGS https://name:PORT/` at 127.0.0.1 (`addr`'s port),
/// trusting only `ca`.
async fn curl_to(args: &[&str], name: &str, addr: &str, ca: &Path) -> Curl {
    let port = addr.rsplit(':').next().unwrap();
    let (ca, resolve) = (ca.display().to_string(), format!("{name}:{port}:127.0.0.1"));
    let url = format!("https://{name}:{port}/");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--cacert", &ca, "--resolve", &resolve, &url]);
    curl(&all).await
}

/// The highest version a ClientHello offers.
fn max_version(versions: &[u16]) -> u16 {
    versions.iter().copied().max().unwrap()
}

/// A 1.3-only listener refuses a client capped at TLS 1.2; a 1.2 listener
/// limited to one suite by `cipher_suites` refuses a client offering only a
/// weak (CBC) suite, and a strong one not in its list, and accepts the
/// listed one; the default listener refuses TLS 1.1 and accepts 1.2 and
/// 1.3. Each refused ClientHello is captured once by the test itself, to
/// show that curl really offered what the case says (so the refusal is
/// baton's, not curl's own policy), and every refusal is a TLS alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_cipher_suites_are_enforced_for_curl() {
    let dir = TempDir::new("https-policy");
    let ca = Ca::new("baton e2e CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    // rcgen makes ECDSA P-256 keys (ring cannot generate RSA ones), so the
    // suites that matter here are the ECDHE_ECDSA ones.
    let cert = cert_entry(&ca.leaf(&["site.test"], 1).write(dir.path(), "site"));
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            r#"[[listener]]
name = "tls13"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{cert}]
min_version = "1.3"

[[listener]]
name = "tls12"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{cert}]
max_version = "1.2"
cipher_suites = ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]

[[listener]]
name = "default"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{cert}]

{}"#,
            pool(&upstream)
        ),
    );
    let (mut baton, _) = baton_serve(&path).await;
    let [tls13, tls12, default] = <[String; 3]>::try_from(baton.listening(3).await).unwrap();
    // What curl offers; which listener; the outcome: the version and suite
    // negotiated, or the alert baton ends the handshake with. curl exits 35
    // (SSL connect error) on such an alert. OpenSSL 3 offers TLS 1.1 only
    // at security level 0.
    let only_12 = |ciphers| vec!["--tlsv1.2", "--tls-max", "1.2", "--ciphers", ciphers];
    let cases: Vec<(Vec<&str>, &str, Result<&str, &str>)> = vec![
        // TLS 1.3 only.
        (
            vec!["--tls-max", "1.2"],
            &tls13,
            Err("alert protocol version"),
        ),
        (vec![], &tls13, Ok("TLSv1.3")),
        // TLS 1.2 with one suite: a weak (CBC) suite, and a strong one not
        // in the list, are refused; the listed one, and a client offering
        // everything, get 1.2 and that suite.
        (
            only_12("ECDHE-ECDSA-AES128-SHA"),
            &tls12,
            Err("alert handshake failure"),
        ),
        (
            only_12("ECDHE-ECDSA-AES128-GCM-SHA256"),
            &tls12,
            Err("alert handshake failure"),
        ),
        (
            only_12("ECDHE-ECDSA-CHACHA20-POLY1305"),
            &tls12,
            Ok("TLSv1.2 / ECDHE-ECDSA-CHACHA20-POLY1305"),
        ),
        (
            vec![],
            &tls12,
            Ok("TLSv1.2 / ECDHE-ECDSA-CHACHA20-POLY1305"),
        ),
        // The defaults: 1.2 and 1.3, never 1.1. rustls ends a TLS 1.1
        // ClientHello with handshake_failure (it lacks the
        // signature_algorithms extension, checked before the version).
        (
            vec![
                "--tlsv1.1",
                "--tls-max",
                "1.1",
                "--ciphers",
                "DEFAULT@SECLEVEL=0",
            ],
            &default,
            Err("alert handshake failure"),
        ),
        (
            vec!["--tlsv1.2", "--tls-max", "1.2"],
            &default,
            Ok("TLSv1.2"),
        ),
        (vec![], &default, Ok("TLSv1.3")),
    ];
    for (offer, addr, outcome) in cases {
        let mut args = vec!["-v", "-o", "/dev/null"];
        args.extend(&offer);
        let c = curl_to(&args, "site.test", addr, &ca_file).await;
        match outcome {
            Ok(negotiated) => {
                assert_eq!(c.code, 0, "{offer:?}: {c:?}");
                let line = format!("SSL connection using {negotiated}");
                assert!(c.stderr.contains(&line), "{offer:?}: {}", c.stderr);
            }
            Err(alert) => {
                assert_eq!(c.code, 35, "{offer:?}: {c:?}");
                assert!(c.stderr.contains(alert), "{offer:?}: {}", c.stderr);
            }
        }
    }

    // What curl really sent in the refused cases, caught by the test.
    let hello = curl_client_hello(&["--tls-max", "1.2"]).await;
    assert_eq!(max_version(&hello.versions), TLS12, "{hello:?}");
    let hello = curl_client_hello(&only_12("ECDHE-ECDSA-AES128-SHA")).await;
    assert_eq!(
        (hello.cipher_suites.as_slice(), max_version(&hello.versions)),
        (&[0xc009][..], TLS12),
        "only TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: {hello:?}"
    );
    let hello = curl_client_hello(&only_12("ECDHE-ECDSA-AES128-GCM-SHA256")).await;
    assert_eq!(hello.cipher_suites, [0xc02b], "{hello:?}");
    let hello = curl_client_hello(&[
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT@SECLEVEL=0",
    ])
    .await;
    assert_eq!(hello.versions, [TLS11], "{hello:?}");
    let hello = curl_client_hello(&[]).await;
    assert_eq!(max_version(&hello.versions), TLS13, "{hello:?}");
}

/// Three certificates on one listener: each name gets its own (curl
/// verifies the name against the test CA, and `%{certs}` shows the
/// subject), a wildcard covers one label, and a client without SNI or with
/// a name no certificate covers gets the first, the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_by_name_and_the_first_is_the_default() {
    let dir = TempDir::new("https-sni");
    let ca = Ca::new("baton e2e CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let default = ca.leaf(&["default.test"], 1);
    let a = ca.leaf(&["a.test"], 2);
    let b = ca.leaf(&["b.test", "*.b.test"], 3);
    let entries: Vec<String> = [(&default, "default"), (&a, "a"), (&b, "b")]
        .iter()
        .map(|(leaf, stem)| cert_entry(&leaf.write(dir.path(), stem)))
        .collect();
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
             [listener.tls]\ncertificates = [{}]\n\n{}",
            entries.join(", "),
            pool(&upstream)
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;

    for (name, subject) in [
        ("default.test", "default.test"),
        ("a.test", "a.test"),
        ("b.test", "b.test"),
        ("x.b.test", "b.test"),
    ] {
        let c = curl_to(
            &["-o", "/dev/null", "-w", "%{certs}"],
            name,
            &addr,
            &ca_file,
        )
        .await;
        assert_eq!(c.code, 0, "{name}: {c:?}");
        let leaf = c.stdout.split("Subject:").nth(1).unwrap_or_default();
        let leaf_subject = leaf.lines().next().unwrap_or_default();
        assert!(
            leaf_subject.contains(&format!("CN = {subject}"))
                || leaf_subject.contains(&format!("CN={subject}")),
            "{name} was served {leaf_subject:?}:\n{}",
            c.stdout
        );
    }

    // The exact certificates, by a rustls client that accepts any.
    let cases: [(Option<&str>, &Leaf); 5] = [
        (Some("a.test"), &a),
        (Some("B.TEST"), &b),
        (Some("x.b.test"), &b),
        (Some("unknown.test"), &default),
        (None, &default),
    ];
    for (sni, want) in cases {
        let stream = connect(&addr, client_any(sni.is_some()), sni.unwrap_or("a.test"))
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni:?}: {e}"));
        assert!(
            served(&stream) == want.der,
            "SNI {sni:?} got the wrong certificate"
        );
    }
}

/// ALPN offers h2: curl speaks HTTP/2 to baton and the upstream answers
/// (its `x-instance`); HTTP/1.1 still works, and so does a rustls client
/// that offers only h2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_alpn_reaches_the_upstream() {
    let dir = TempDir::new("https-h2");
    let ca = Ca::new("baton e2e CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let cert = cert_entry(&ca.leaf(&["app.test"], 1).write(dir.path(), "app"));
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
             [listener.tls]\ncertificates = [{cert}]\n\n{}",
            pool(&upstream)
        ),
    );
    let (_baton, addr) = baton_serve(&path).await;

    for (flag, version, status_line) in [
        ("--http2", "2", "HTTP/2 200"),
        ("--http1.1", "1.1", "HTTP/1.1 200"),
    ] {
        let c = curl_to(
            &[flag, "-i", "-w", "\n%{http_version}"],
            "app.test",
            &addr,
            &ca_file,
        )
        .await;
        assert_eq!(c.code, 0, "{c:?}");
        assert_eq!(c.stdout.lines().last(), Some(version), "{}", c.stdout);
        assert!(c.stdout.starts_with(status_line), "{}", c.stdout);
        assert!(
            c.stdout.to_ascii_lowercase().contains("\nx-instance: v1/"),
            "the upstream did not answer:\n{}",
            c.stdout
        );
    }

    let config = client_trusting(std::slice::from_ref(&ca.der), &[b"h2"]);
    let stream = connect(&addr, config, "app.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut conn = HttpsConn::over(stream).await.unwrap();
    for _ in 0..3 {
        let answer = conn.get("app.test", "/").await.unwrap();
        assert_eq!(
            (answer.status, answer.version),
            (200, http::Version::HTTP_2)
        );
        assert!(answer.headers.contains_key("x-instance"), "{answer:?}");
    }
}

/// A plain listener with `redirect_https = 8443` sends GET and HEAD to
/// `https://HOST:8443/path?query` with 301, other methods with 308, and
/// adds no HSTS; every response of the TLS listener carries the configured
/// `Strict-Transport-Security`, baton's own 404 included, over HTTP/1.1 and
/// h2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_redirects_to_https_and_tls_responses_carry_hsts() {
    let dir = TempDir::new("https-redirect");
    let ca = Ca::new("baton e2e CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let cert = cert_entry(&ca.leaf(&["app.test"], 1).write(dir.path(), "app"));
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            r#"[[listener]]
name = "https"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{cert}]
[listener.tls.hsts]
max_age = "5m"
include_subdomains = true

[[listener]]
name = "http"
address = "127.0.0.1:0"
redirect_https = 8443

[pool.app]
members = [{{ address = "{upstream}" }}]
[[route]]
host = "app.test"
pool = "app"
"#
        ),
    );
    let (mut baton, https) = baton_serve(&path).await;
    let plain = baton.listening(2).await[1].clone();

    for (method, target, status, location) in [
        (
            "GET",
            "/a/b?x=1&y=two",
            301,
            "https://app.test:8443/a/b?x=1&y=two",
        ),
        ("HEAD", "/", 301, "https://app.test:8443/"),
        ("DELETE", "/items/7", 308, "https://app.test:8443/items/7"),
    ] {
        let r = request(&plain, method, "app.test:8080", target, "").await;
        assert_eq!(r.status, status, "{method} {target}: {r:?}");
        assert_eq!(r.header("location"), Some(location), "{method} {target}");
        assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    }
    // A POST with a body: 308, so that the client sends it again.
    let post = b"POST /form?id=7 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
                 Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let r = tokio::time::timeout(EVENT_TIMEOUT, exchange(&plain, post))
        .await
        .expect("POST timed out");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://app.test:8443/form?id=7")
    );

    let hsts = "strict-transport-security: max-age=300; includesubdomains";
    for (flag, host) in [
        ("--http1.1", "app.test"),
        ("--http2", "app.test"),
        // No route for this host: baton's own 404.
        ("--http1.1", "other.test"),
        ("--http2", "other.test"),
    ] {
        let header = format!("Host: {host}");
        let c = curl_to(&[flag, "-i", "-H", &header], "app.test", &https, &ca_file).await;
        assert_eq!(c.code, 0, "{c:?}");
        let head = c.stdout.to_ascii_lowercase();
        let want = if host == "app.test" { "200" } else { "404" };
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1));
        assert_eq!(status, Some(want), "{flag} {host}: {}", c.stdout);
        assert!(head.contains(hsts), "{flag} {host}: no HSTS:\n{}", c.stdout);
    }
}

/// What the reload-under-load clients saw.
#[derive(Default)]
struct Seen {
    /// Requests on a new connection each.
    fresh: Vec<Fresh>,
    /// Requests answered on each keep-alive connection (the time each was
    /// answered), and the leaf that connection got.
    kept: Vec<(CertificateDer<'static>, Vec<Instant>)>,
    failures: Vec<String>,
}

/// A request on a new connection: when the handshake began, when the
/// response was read, the leaf the connection has, and whether the
/// handshake resumed a session (then the server sent no certificate: the
/// leaf is the one of the session's first handshake).
struct Fresh {
    begun: Instant,
    done: Instant,
    leaf: CertificateDer<'static>,
    resumed: bool,
}

/// Clients that run until stopped (or `LOAD_LIMIT`) and publish what they
/// see.
struct Clients {
    seen: Mutex<Seen>,
    changed: watch::Sender<()>,
    stop: AtomicBool,
}

/// No load loop runs longer than this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(25);

impl Clients {
    fn record(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap());
        self.changed.send_replace(());
    }

    fn running(&self, started: Instant) -> bool {
        !self.stop.load(Ordering::SeqCst) && started.elapsed() < LOAD_LIMIT
    }

    /// Waits until `done` holds for what was seen (bounded).
    async fn wait(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let mut changed = self.changed.subscribe();
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                assert!(
                    seen.failures.is_empty(),
                    "failures while waiting for {what}: {:?}",
                    seen.failures
                );
                if done(&seen) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

/// A new connection (and handshake) per request.
async fn fresh_connections(clients: Arc<Clients>, addr: String, config: Arc<ClientConfig>) {
    let begun = Instant::now();
    while clients.running(begun) {
        let started = Instant::now();
        let result = async {
            let stream = connect(&addr, config.clone(), "a.test")
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let leaf = served(&stream);
            let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
            let mut conn = HttpsConn::over(stream).await?;
            let answer = conn.get("a.test", "/").await?;
            if answer.status != 200 || !answer.headers.contains_key("x-instance") {
                return Err(format!("answer: {answer:?}"));
            }
            Ok((leaf, resumed))
        }
        .await;
        clients.record(|seen| match result {
            Ok((leaf, resumed)) => seen.fresh.push(Fresh {
                begun: started,
                done: Instant::now(),
                leaf,
                resumed,
            }),
            Err(e) => seen.failures.push(e),
        });
    }
}

/// Requests one after another on one connection (h2 or HTTP/1.1 by
/// `config`'s ALPN); slot `slot` of `Seen::kept`.
async fn keep_alive(clients: Arc<Clients>, addr: String, config: Arc<ClientConfig>, slot: usize) {
    let stream = match connect(&addr, config, "a.test").await {
        Ok(stream) => stream,
        Err(e) => return clients.record(|seen| seen.failures.push(format!("keep-alive: {e}"))),
    };
    let leaf = served(&stream);
    clients.record(|seen| seen.kept[slot].0 = leaf);
    let mut conn = match HttpsConn::over(stream).await {
        Ok(conn) => conn,
        Err(e) => return clients.record(|seen| seen.failures.push(e)),
    };
    let begun = Instant::now();
    while clients.running(begun) {
        let result = conn.get("a.test", "/").await;
        clients.record(|seen| match result {
            Ok(answer) if answer.status == 200 => seen.kept[slot].1.push(Instant::now()),
            Ok(answer) => seen.failures.push(format!("keep-alive {slot}: {answer:?}")),
            Err(e) => seen.failures.push(format!("keep-alive {slot}: {e}")),
        });
    }
}

/// The certificate files are replaced (same name, new key and serial)
/// while clients make a new connection per request and two keep-alive
/// connections (HTTP/1.1 and h2) send requests; SIGHUP. No request fails
/// (resumed sessions included), every full handshake begun after baton
/// logged the reload gets the new certificate, and the keep-alive
/// connections keep working with the one they started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_under_load_fails_no_request() {
    let _heavy = support::heavy().await;
    let dir = TempDir::new("https-reload-load");
    let ca = Ca::new("baton e2e CA");
    let old = ca.leaf(&["a.test"], 1);
    let cert = cert_entry(&old.write(dir.path(), "a"));
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
             [listener.tls]\ncertificates = [{cert}]\n\n{}",
            pool(&upstream)
        ),
    );
    let (mut baton, addr) = baton_serve(&path).await;

    let clients = Arc::new(Clients {
        seen: Mutex::new(Seen {
            kept: vec![(CertificateDer::from(Vec::new()), Vec::new()); 2],
            ..Seen::default()
        }),
        changed: watch::Sender::new(()),
        stop: AtomicBool::new(false),
    });
    let roots = std::slice::from_ref(&ca.der);
    let mut tasks = Vec::new();
    // One client resumes sessions (TLS 1.3 tickets) as browsers do, one
    // makes a full handshake every time.
    let resuming = client_trusting(roots, &[b"http/1.1"]);
    let mut full = (*resuming).clone();
    full.resumption = Resumption::disabled();
    for config in [resuming, Arc::new(full)] {
        tasks.push(tokio::spawn(fresh_connections(
            clients.clone(),
            addr.clone(),
            config,
        )));
    }
    for (slot, alpn) in [(0, &b"http/1.1"[..]), (1, &b"h2"[..])] {
        let config = client_trusting(roots, &[alpn]);
        tasks.push(tokio::spawn(keep_alive(
            clients.clone(),
            addr.clone(),
            config,
            slot,
        )));
    }
    clients
        .wait("traffic before the reload", |s| {
            s.fresh.iter().filter(|f| !f.resumed).count() >= 20
                && s.kept.iter().all(|(_, done)| done.len() >= 20)
        })
        .await;

    let new = ca.leaf(&["a.test"], 2);
    let replaced_at = Instant::now();
    new.write(dir.path(), "a");
    baton.signal(libc::SIGHUP);
    // SIGHUP's reload or the file watcher's, whichever comes first.
    baton.wait_for("certificates reloaded").await;
    let reloaded_at = Instant::now();
    clients
        .wait("traffic after the reload", |s| {
            s.fresh
                .iter()
                .filter(|f| !f.resumed && f.begun > reloaded_at)
                .count()
                >= 30
                && s.kept
                    .iter()
                    .all(|(_, done)| done.iter().filter(|t| **t > reloaded_at).count() >= 20)
        })
        .await;
    clients.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(EVENT_TIMEOUT, task)
            .await
            .expect("a load client did not stop")
            .unwrap();
    }

    let seen = clients.seen.lock().unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}",
        seen.failures
    );
    let before: Vec<_> = seen.fresh.iter().filter(|f| f.done < replaced_at).collect();
    let after: Vec<_> = seen
        .fresh
        .iter()
        .filter(|f| !f.resumed && f.begun > reloaded_at)
        .collect();
    assert!(before.len() >= 20 && after.len() >= 30);
    assert!(
        before.iter().all(|f| f.leaf == old.der),
        "old certificate before"
    );
    let stale = after.iter().filter(|f| f.leaf != new.der).count();
    assert_eq!(
        stale, 0,
        "full handshakes after the reload that got the old certificate"
    );
    // A session begun before the reload may still be resumed (the server
    // sends no certificate then): that works too, and is no failure.
    let resumed = seen.fresh.iter().filter(|f| f.resumed).count();
    assert!(resumed > 0, "the resuming client never resumed");
    for (leaf, done) in &seen.kept {
        assert!(
            *leaf == old.der,
            "a keep-alive connection began with the old certificate"
        );
        assert!(done.iter().filter(|t| **t > reloaded_at).count() >= 20);
    }
    eprintln!(
        "{} new connections ({resumed} resumed), {} keep-alive requests, 0 failures",
        seen.fresh.len(),
        seen.kept.iter().map(|(_, d)| d.len()).sum::<usize>()
    );
}

/// A broken certificate at reload is refused: `baton reload` exits 1 and
/// says what is wrong, the log says refused (the file watcher's too), and
/// new handshakes keep getting the certificate loaded before. Once the
/// files are right again, reload succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_certificates_are_refused_at_reload_and_the_old_one_keeps_serving() {
    let dir = TempDir::new("https-refuse");
    let ca = Ca::new("baton e2e CA");
    let good = ca.leaf(&["a.test"], 1);
    let (cert, key) = good.write(dir.path(), "a");
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let path = write_config(
        &dir,
        &format!(
            "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
             [listener.tls]\ncertificates = [{}]\n\n{}",
            cert_entry(&(cert.clone(), key.clone())),
            pool(&upstream)
        ),
    );
    let control = dir.path().join("control.sock");
    let control = control.to_str().unwrap();
    let (mut baton, addr) = baton_serve_with(&path, &["--control", control]).await;
    let trusting = client_trusting(std::slice::from_ref(&ca.der), &[]);
    let serves_good = || async {
        let stream = connect(&addr, trusting.clone(), "a.test").await.unwrap();
        assert!(
            served(&stream) == good.der,
            "the good certificate is not served"
        );
    };
    serves_good().await;

    // A key that is not the certificate's.
    let stranger = ca.leaf(&["a.test"], 2);
    replace(&key, &stranger.key_pem);
    let (code, out) = run_baton(&["reload", "--control", control]).await;
    assert_eq!(code, 1, "{out}");
    let mismatch = format!(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    );
    assert!(out.contains(&mismatch), "{out}");
    assert!(out.contains("a certificate was refused"), "{out}");
    baton
        .wait_line("the refusal logged", |l| {
            l.contains("the current certificate keeps serving")
        })
        .await;
    assert!(baton.lines().iter().any(|l| l.contains(&mismatch)));
    // The watcher sees the change on its own and refuses it too.
    baton.wait_for("new TLS certificates refused").await;
    serves_good().await;

    replace(&key, &good.key_pem);
    let (code, out) = run_baton(&["reload", "--control", control]).await;
    assert_eq!(code, 0, "the good files again: {out}");
    serves_good().await;

    // An expired certificate, with its own key.
    let expired = ca.leaf_with(&["a.test"], 3, |p| {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    });
    expired.write(dir.path(), "a");
    let (code, out) = run_baton(&["reload", "--control", control]).await;
    assert_eq!(code, 1, "{out}");
    let why = format!(
        "the certificate in {} expired on 2001-01-01T00:00:00Z",
        cert.display()
    );
    assert!(out.contains(&why), "{out}");
    baton
        .wait_count("the current certificate keeps serving", 2)
        .await;
    assert!(baton.lines().iter().any(|l| l.contains(&why)));
    serves_good().await;
}

/// ACME through the binary: pebble (its HTTP-01 validation aimed at
/// baton's plain listener, which also redirects) issues a certificate for
/// acme.test; baton serves it (verified against pebble's root) and routes
/// over it; the state files are 0600; a restarted baton serves the stored
/// certificate at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_from_pebble_is_served_and_kept_across_a_restart() {
    let dir = TempDir::new("https-acme");
    // Pebble must know the port before baton binds it.
    let http_port = free_port();
    let pebble = Pebble::start(dir.path(), http_port).await;
    let (_hello, upstream) = start_hello(&["--app-version", "v1"]).await;
    let state = dir.path().join("state");
    let path = write_config(
        &dir,
        &format!(
            r#"[[listener]]
name = "https"
address = "127.0.0.1:0"
[listener.tls]
acme = true

[[listener]]
name = "http"
address = "127.0.0.1:{http_port}"
redirect_https = true

[acme]
directory = "{}"
ca_bundle = "{}"
contact = ["mailto:ops@acme.test"]
names = ["acme.test"]

{}"#,
            pebble.directory,
            pebble.ca_bundle.display(),
            pool(&upstream)
        ),
    );
    let state_arg = state.to_str().unwrap();
    let control = dir.path().join("control.sock");
    let control_arg = control.to_str().unwrap();
    let (mut baton, https) =
        baton_serve_with(&path, &["--state", state_arg, "--control", control_arg]).await;
    let plain = format!("127.0.0.1:{http_port}");
    assert_eq!(baton.listening(2).await, [https.clone(), plain.clone()]);
    let root = pebble.root_ca().await;
    let trusting = client_trusting(std::slice::from_ref(&root), &[]);

    // Handshakes fail until the certificate is issued; poll them.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let stream = loop {
        match connect(&https, trusting.clone(), "acme.test").await {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no certificate from pebble within {EVENT_TIMEOUT:?}: {e}\n{}",
                    baton.dump()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    baton.wait_for("obtained a certificate").await;
    // `baton status` shows the certificate and ACME's last result, once the
    // task has recorded it (just after its log line).
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let status = loop {
        let (code, out) = run_baton(&["status", "--control", control_arg]).await;
        assert_eq!(code, 0, "{out}");
        if out.contains("ACME acme.test: waiting") || Instant::now() > deadline {
            break out;
        }
    };
    assert!(
        status.contains("last renewal ok (1 ordered, 1 issued since start)"),
        "{status}"
    );
    let row = status
        .lines()
        .find(|l| l.contains(" acme ") && l.contains("acme.test"))
        .unwrap_or_else(|| panic!("no ACME certificate row:\n{status}"));
    assert!(!row.contains("not issued yet"), "{row}");
    let issued = served(&stream);
    let mut conn = HttpsConn::over(stream).await.unwrap();
    let answer = conn.get("acme.test", "/").await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.headers.contains_key("x-instance"));

    // The plain listener redirects, but answered the challenge.
    let r = request(&plain, "GET", "acme.test", "/x?y=1", "").await;
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://acme.test/x?y=1"))
    );
    let r = request(
        &plain,
        "GET",
        "acme.test",
        "/.well-known/acme-challenge/gone",
        "",
    )
    .await;
    assert_eq!(r.status, 404, "an unknown token is not redirected: {r:?}");

    let acme_dir = state.join("acme");
    assert_eq!(mode(&acme_dir), 0o700);
    let mut files: Vec<String> = std::fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["account.json", "certificate.json"]);
    for file in &files {
        assert_eq!(mode(&acme_dir.join(file)), 0o600, "{file}");
    }

    // A restart serves the stored certificate from its first handshake.
    baton.signal(libc::SIGTERM);
    assert!(baton.wait_exit().await.success());
    drop(baton);
    let (restarted, https) = baton_serve_with(&path, &["--state", state_arg]).await;
    let stream = connect(&https, trusting.clone(), "acme.test")
        .await
        .expect("the stored certificate is served at once");
    assert!(
        served(&stream) == issued,
        "the same certificate after a restart"
    );
    assert!(
        !restarted
            .lines()
            .iter()
            .any(|l| l.contains("ordered a certificate")),
        "no new order after a restart"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
