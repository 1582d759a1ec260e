//! Certificate reload: new handshakes get the new certificate, established
//! connections keep working, bad files are refused with the old certificate
//! still serving, and `watch` notices a changed file.

use std::time::Duration;

use rcgen::date_time_ymd;
use tls::ServerTls;
use tokio::time::Instant;

use crate::support::{
    BOUND, Ca, HttpClient, Leaf, LeafFiles, TempDir, client_any, handshake, https_server, replace,
    served, tls_config, tls_server,
};

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_handshakes_only() {
    let dir = TempDir::new("reload");
    let ca = Ca::new("baton test CA");
    let old = ca.leaf(&["a.test"], 1);
    let files = old.files(&dir, "a");
    let tls = ServerTls::new(&tls_config(vec![files.clone()]), None).unwrap();
    assert_eq!(tls.files(), vec![files.cert.clone(), files.key.clone()]);
    let https = https_server(tls.clone()).await;

    let established = handshake(https.addr, client_any(), Some("a.test"))
        .await
        .unwrap();
    assert_eq!(served(&established), old.der);
    let mut established = HttpClient::over(established).await;
    established.get().await;

    assert!(!tls.reload().unwrap(), "nothing changed yet");
    let new = ca.leaf(&["a.test"], 2);
    new.files(&dir, "a");
    assert!(tls.reload().unwrap());
    assert!(!tls.reload().unwrap(), "already loaded");

    let fresh = handshake(https.addr, client_any(), Some("a.test"))
        .await
        .unwrap();
    assert_eq!(served(&fresh), new.der);
    // The connection made before the reload is untouched.
    assert_eq!(
        established.get().await,
        "HTTP/1.1 tls=true sni=a.test",
        "established connection"
    );
}

#[tokio::test]
async fn reload_refuses_bad_files_and_the_old_certificate_keeps_serving() {
    let dir = TempDir::new("refuse");
    let ca = Ca::new("baton test CA");
    let current = ca.leaf(&["a.test", "www.a.test"], 3);
    let files = current.files(&dir, "a");
    let tls = ServerTls::new(&tls_config(vec![files.clone()]), None).unwrap();
    let addr = tls_server(tls.server_config()).await;
    let cert = files.cert.display().to_string();
    let key = files.key.display().to_string();

    let other_key = ca.leaf(&["a.test"], 4).key_pem;
    let expired = ca.leaf_with(&["a.test"], 11, |p| {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    });
    let early = ca.leaf_with(&["a.test"], 12, |p| {
        p.not_before = date_time_ymd(2090, 1, 1);
    });
    let wrong_name = ca.leaf(&["other.test"], 5);
    type Breakage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breakage, String)> = vec![
        (
            "key mismatch",
            Box::new(|| replace(&files.key, &other_key)),
            format!("the private key in {key} does not match the certificate in {cert}"),
        ),
        (
            "expired",
            Box::new(|| {
                expired.files(&dir, "a");
            }),
            format!("the certificate in {cert} expired on 2001-01-01T00:00:00Z"),
        ),
        (
            "not yet valid",
            Box::new(|| {
                early.files(&dir, "a");
            }),
            format!("the certificate in {cert} is not valid before 2090-01-01T00:00:00Z"),
        ),
        (
            "unreadable",
            Box::new(|| std::fs::remove_file(&files.key).unwrap()),
            format!("could not read {key}: "),
        ),
        (
            "no certificate",
            Box::new(|| replace(&files.cert, "not a certificate\n")),
            format!("no certificate in {cert}"),
        ),
        (
            "no key",
            Box::new(|| replace(&files.key, &current.cert_pem)),
            format!("no private key in {key}"),
        ),
        (
            "wrong name",
            Box::new(|| {
                wrong_name.files(&dir, "a");
            }),
            format!(
                "refusing the new certificate in {cert}: it covers none of the names the current certificate serves: a.test, www.a.test"
            ),
        ),
    ];
    for (what, breakage, message) in cases {
        breakage();
        let err = tls.reload().unwrap_err().to_string();
        assert!(err.starts_with(&message), "{what}: {err}");
        let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
        assert_eq!(served(&stream), current.der, "{what}: still serving");
        // Put the serving files back: nothing to reload.
        current.files(&dir, "a");
        assert!(!tls.reload().unwrap(), "{what}: restored");
    }

    // Keeping one of the names is enough to pass the name guard.
    let narrower = ca.leaf(&["www.a.test", "new.test"], 6);
    narrower.files(&dir, "a");
    assert!(tls.reload().unwrap());
    let stream = handshake(addr, client_any(), Some("new.test"))
        .await
        .unwrap();
    assert_eq!(served(&stream), narrower.der);
}

#[tokio::test]
async fn new_refuses_what_reload_refuses() {
    let dir = TempDir::new("new");
    let ca = Ca::new("baton test CA");
    let expired = ca.leaf_with(&["a.test"], 13, |p| {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    });
    let files = expired.files(&dir, "a");
    let err = ServerTls::new(&tls_config(vec![files.clone()]), None).unwrap_err();
    assert!(err.to_string().contains("expired on 2001-01-01"), "{err}");
    assert_eq!(err.path(), Some(files.cert.as_path()));

    let valid = ca.leaf(&["a.test"], 7);
    let files = valid.files(&dir, "b");
    replace(&files.key, &ca.leaf(&["a.test"], 8).key_pem);
    let err = ServerTls::new(&tls_config(vec![files]), None).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    let missing = dir.join("missing.crt");
    let err = ServerTls::new(
        &tls_config(vec![config::CertificateFiles {
            cert: missing.clone(),
            key: missing.clone(),
        }]),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("could not read {}", missing.display())),
        "{err}"
    );
}

#[tokio::test]
async fn watch_picks_up_a_changed_certificate() {
    let dir = TempDir::new("watch");
    let ca = Ca::new("baton test CA");
    let first = ca.leaf(&["a.test"], 9);
    let tls = ServerTls::new(&tls_config(vec![first.files(&dir, "a")]), None).unwrap();
    let addr = tls_server(tls.server_config()).await;
    let watcher = tls::watch(vec![tls], Duration::from_millis(20));

    // Twice: the second change can only be seen by comparing the files
    // with what the watcher saw last.
    let mut serving = first;
    for round in 1..=2 {
        let next = ca.leaf(&["a.test"], 10);
        next.files(&dir, "a");
        wait_until_served(addr, &next, &serving, round).await;
        serving = next;
    }
    watcher.abort();
}

/// Retries handshakes until `next` is served (the old one until then).
async fn wait_until_served(addr: std::net::SocketAddr, next: &Leaf, old: &Leaf, round: u32) {
    let deadline = Instant::now() + BOUND;
    loop {
        let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
        if served(&stream) == next.der {
            return;
        }
        assert_eq!(served(&stream), old.der, "round {round}");
        assert!(
            Instant::now() < deadline,
            "round {round}: the watcher never reloaded"
        );
        // Pace the retries; the loop ends on the event, not on this.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
