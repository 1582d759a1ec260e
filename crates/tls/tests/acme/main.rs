//! The ACME client against a real ACME server: Debian's `pebble`, started by
//! each test on free loopback ports, with `pebble-challtestsrv` as its DNS
//! (every name resolves to 127.0.0.1) and a small HTTP server here that
//! answers HTTP-01 challenges from `Challenges`, as the proxy does in
//! production. Validation is real (no `PEBBLE_VA_ALWAYS_VALID`). A missing
//! `pebble` fails the tests: `scripts/test` installs it.

mod support;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use config::Acme;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use tls::{AcmeCerts, AcmeClient, AcmePhase, AcmeStatus, Challenges};
use tokio::sync::watch;
use x509_parser::extensions::GeneralName;

use support::{Ca, Logs, Pebble, TempDir};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn obtains_a_certificate_then_a_restart_serves_it_from_disk_without_an_order() {
    let logs = Logs::capture();
    let pebble = Pebble::start(None).await;
    let names = vec!["baton.test".to_owned(), "www.baton.test".to_owned()];
    let cfg = pebble.acme_config(&names, 30 * DAY);
    let state = pebble.tmp.path().join("state");

    // First start: nothing stored, so an account and an order.
    let certs = AcmeCerts::default();
    let client = AcmeClient::new(
        cfg.clone(),
        state.clone(),
        certs.clone(),
        pebble.challenges(),
    );
    let mut status = client.status();
    let task = client.spawn();
    let issued = wait_issued(&mut status, 1).await;
    assert_eq!(issued.orders, 1);

    let served = certs.get("baton.test").expect("the certificate is served");
    assert!(Arc::ptr_eq(&served, &certs.get("WWW.baton.test").unwrap()));
    assert_eq!(dns_names(&served), names);
    served.keys_match().expect("the key is the certificate's");
    let root = pebble.root_ca().await;
    for name in &names {
        verify_chain(&served, &root, name);
    }
    let not_after = issued.not_after.expect("the status has the expiry");
    match issued.phase {
        AcmePhase::Waiting { renew_at } => assert_eq!(renew_at, not_after - 30 * DAY),
        other => panic!("after issuance the task waits to renew, not {other:?}"),
    }

    // Pebble fetched a key authorization per name; none is answered now.
    let answered = pebble.answered();
    assert!(answered.len() >= names.len(), "answered: {answered:?}");
    for (token, _) in &answered {
        assert_eq!(
            pebble.challenges.answer(token),
            None,
            "still answering {token}"
        );
    }

    // The state directory: 0700, its files 0600, no temporary file left.
    let acme_dir = state.join("acme");
    assert_eq!(mode(&acme_dir), 0o700);
    let mut files: Vec<String> = fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["account.json", "certificate.json"]);
    for file in &files {
        assert_eq!(mode(&acme_dir.join(file)), 0o600, "{file}");
    }

    task.abort();
    let _ = task.await;

    // Restart with the same state directory: the certificate is served
    // before the task has run, and the task only waits to renew it.
    let hits_before = pebble.hits();
    let orders_before = pebble.orders_logged();
    assert_eq!(orders_before, 1, "pebble logs each new order");
    let certs = AcmeCerts::default();
    let client = AcmeClient::new(cfg, state, certs.clone(), pebble.challenges());
    let mut status = client.status();
    let task = client.spawn();
    let reloaded = certs
        .get("baton.test")
        .expect("served at once after a restart");
    assert_eq!(reloaded.cert, served.cert);
    let waiting = wait_for(&mut status, "waiting to renew", WAIT, |s| {
        matches!(s.phase, AcmePhase::Waiting { .. })
    })
    .await;
    assert_eq!((waiting.orders, waiting.issued), (0, 0));
    assert_eq!(waiting.not_after, Some(not_after));
    assert_eq!(pebble.hits(), hits_before, "no challenge was fetched");
    assert_eq!(
        pebble.orders_logged(),
        orders_before,
        "pebble saw no new order"
    );
    task.abort();

    // Nothing secret reached the logs, at any level.
    let logs = logs.text();
    assert!(logs.contains("obtained a certificate"), "{logs}");
    assert!(
        logs.contains("serving the stored ACME certificate"),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    for (_, key_authorization) in &answered {
        assert!(!logs.contains(key_authorization.as_str()), "{logs}");
    }
}

#[tokio::test]
async fn renews_before_expiry_without_a_restart() {
    // Ten-second certificates: renewed at half their lifetime (a
    // `renew_before` longer than the lifetime never means "at once").
    let pebble = Pebble::start(Some(Duration::from_secs(10))).await;
    let names = vec!["renew.baton.test".to_owned()];
    let certs = AcmeCerts::default();
    let client = AcmeClient::new(
        pebble.acme_config(&names, DAY),
        pebble.tmp.path().join("state"),
        certs.clone(),
        pebble.challenges(),
    );
    let mut status = client.status();
    let task = client.spawn();

    wait_issued(&mut status, 1).await;
    let first = certs.get("renew.baton.test").unwrap();
    let renewed = wait_issued(&mut status, 2).await;
    assert_eq!(renewed.orders, 2);
    let second = certs.get("renew.baton.test").unwrap();
    assert_ne!(first.cert[0], second.cert[0], "a new certificate is served");
    verify_chain(&second, &pebble.root_ca().await, "renew.baton.test");
    // Every challenge the client took up (its POST to the challenge) was
    // answered from its challenge server: one for the first order, and one
    // for the renewal unless pebble reused the still valid authorization,
    // which it sometimes does whatever PEBBLE_AUTHZREUSE says. Counted once
    // both are issued: the renewal may be due at once after a slow first
    // issuance, its challenge fetched before anything read after the first.
    let taken_up = pebble.log_text().matches("POST /chalZ/").count();
    let tokens: std::collections::HashSet<String> = pebble
        .answered()
        .into_iter()
        .map(|(token, _)| token)
        .collect();
    assert!((1..=2).contains(&taken_up), "{taken_up} challenges");
    assert_eq!(tokens.len(), taken_up, "each challenge answered");
    task.abort();
}

#[tokio::test]
async fn a_failed_challenge_is_logged_with_its_reason_and_retried() {
    let logs = Logs::capture();
    let pebble = Pebble::start(None).await;
    // The responder answers every challenge with a wrong key authorization.
    pebble.corrupt.store(true, Ordering::SeqCst);
    let client = AcmeClient::new(
        pebble.acme_config(&["wrong.baton.test".to_owned()], DAY),
        pebble.tmp.path().join("state"),
        AcmeCerts::default(),
        pebble.challenges(),
    );
    let mut status = client.status();
    let task = client.spawn();
    let failed = wait_for(&mut status, "a failure", WAIT, |s| s.failures >= 1).await;
    task.abort();

    assert_eq!(
        failed.phase,
        AcmePhase::Retrying {
            delay: Duration::from_secs(10)
        }
    );
    assert_eq!(failed.orders, 1);
    let reason = failed.last_error.unwrap();
    assert!(
        reason.starts_with("could not validate the HTTP-01 challenges: wrong.baton.test: ")
            && reason.contains("<key authorization>"),
        "{reason}"
    );
    let logs = logs.text();
    assert!(
        logs.contains("could not obtain a certificate; will retry"),
        "{logs}"
    );
    assert!(
        logs.contains("could not validate the HTTP-01 challenges"),
        "{logs}"
    );
    // Pebble quotes the key authorization it expected; neither the status
    // nor the log does.
    let answered = pebble.answered();
    assert!(!answered.is_empty());
    for (_, key_authorization) in &answered {
        assert!(!reason.contains(key_authorization.as_str()), "{reason}");
        assert!(!logs.contains(key_authorization.as_str()), "{logs}");
    }
    let state = pebble.tmp.path().join("state/acme");
    assert!(fs::exists(state.join("account.json")).unwrap());
    assert!(!fs::exists(state.join("certificate.json")).unwrap());
}

#[tokio::test(start_paused = true)]
async fn an_acme_server_that_never_answers_is_retried_on_the_backoff_schedule() {
    let logs = Logs::capture();
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = TempDir::new("acme");
    let bundle = tmp.path().join("ca.pem");
    fs::write(&bundle, Ca::new("baton test CA").pem).unwrap();
    let cfg = Acme {
        directory: format!("https://{}/dir", silent.local_addr().unwrap()),
        contact: vec![],
        names: vec!["silent.baton.test".into()],
        ca_bundle: Some(bundle),
        renew_before: DAY,
    };
    let client = AcmeClient::new(
        cfg,
        tmp.path().join("state"),
        AcmeCerts::default(),
        Challenges::default(),
    );
    let mut status = client.status();
    let task = client.spawn();
    // The paused clock runs ahead whenever the task waits: 30 s per
    // attempt, then 10 s, 20 s, 40 s between them (virtual time, so the
    // bound is virtual too).
    let limit = Duration::from_secs(600);
    for failures in 1..=3 {
        let s = wait_for(&mut status, "a failure", limit, |s| s.failures >= failures).await;
        assert_eq!(s.failures, failures);
        assert_eq!(
            s.phase,
            AcmePhase::Retrying {
                delay: tls::acme_retry_delay(failures)
            }
        );
        assert_eq!(s.orders, 0, "no account, so no order");
        let reason = s.last_error.unwrap();
        assert!(
            reason.contains("no response from the ACME server within 30s"),
            "{reason}"
        );
    }
    task.abort();
    let logs = logs.text();
    assert_eq!(
        logs.matches("could not obtain a certificate; will retry")
            .count(),
        3,
        "{logs}"
    );
    assert!(logs.contains("retry_in=20s"), "{logs}");
}

/// Waits (at most [`WAIT`]) for the `n`th certificate, failing at the
/// first failure with its reason.
async fn wait_issued(status: &mut watch::Receiver<AcmeStatus>, n: u64) -> AcmeStatus {
    let what = format!("certificate number {n}");
    let s = wait_for(status, &what, WAIT, |s| s.issued >= n || s.failures > 0).await;
    assert_eq!(s.failures, 0, "could not obtain {what}: {:?}", s.last_error);
    s
}

/// Waits (at most `limit`) until `done` holds for the status.
async fn wait_for(
    status: &mut watch::Receiver<AcmeStatus>,
    what: &str,
    limit: Duration,
    done: impl Fn(&AcmeStatus) -> bool,
) -> AcmeStatus {
    let waited = tokio::time::timeout(limit, status.wait_for(|s| done(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("the ACME task ended while waiting for {what}"),
        Err(_) => panic!("no {what} within {limit:?}; status: {:?}", *status.borrow()),
    }
}

fn dns_names(key: &CertifiedKey) -> Vec<String> {
    let (_, leaf) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let mut names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// The served chain is valid for `name` and chains to `root`.
fn verify_chain(key: &CertifiedKey, root: &CertificateDer<'static>, name: &str) {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_server_cert(
            &key.cert[0],
            &key.cert[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("the chain for {name} does not verify: {e}"));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}
