//! `ServerTls`: which certificate a handshake gets, protocol versions,
//! cipher suites, ALPN through `handoff::http::Server`, session resumption.

use std::sync::Arc;

use config::TlsVersion;
use rustls::crypto::ring::{self, cipher_suite};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, HandshakeKind, ProtocolVersion};
use tls::{AcmeCerts, ServerTls};

use crate::support::{
    Ca, HttpClient, Leaf, LeafFiles, TempDir, client_any, client_any_with, handshake, https_server,
    served, tls_config, tls_server,
};

#[tokio::test]
async fn sni_picks_the_certificate_that_covers_the_name_and_the_first_by_default() {
    let dir = TempDir::new("sni");
    let ca = Ca::new("baton test CA");
    let a = ca.leaf(&["a.test"], 1);
    let b = ca.leaf(&["*.b.test", "b.test"], 2);
    let tls = ServerTls::new(
        &tls_config(vec![a.files(&dir, "a"), b.files(&dir, "b")]),
        None,
    )
    .unwrap();
    let addr = tls_server(tls.server_config()).await;

    for (sni, want, why) in [
        (Some("a.test"), &a, "exact name"),
        (Some("b.test"), &b, "exact name, second certificate"),
        (Some("x.b.test"), &b, "wildcard"),
        (Some("X.B.Test"), &b, "names are case-insensitive"),
        (
            Some("y.x.b.test"),
            &a,
            "a wildcard covers one label only: default",
        ),
        (Some("other.test"), &a, "no certificate covers it: default"),
        (None, &a, "no SNI: default"),
    ] {
        let stream = handshake(addr, client_any(), sni).await.unwrap();
        assert_eq!(served(&stream), want.der, "{sni:?}: {why}");
    }
}

fn certified(leaf: &Leaf) -> Arc<CertifiedKey> {
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    Arc::new(CertifiedKey::from_der(chain, key, &ring::default_provider()).unwrap())
}

#[tokio::test]
async fn acme_certificates_come_first_for_the_names_they_cover() {
    let dir = TempDir::new("acme-first");
    let ca = Ca::new("baton test CA");
    let file = ca.leaf(&["a.test", "www.a.test"], 3);
    let issued = ca.leaf(&["a.test"], 4);
    let acme = AcmeCerts::default();
    let mut cfg = tls_config(vec![file.files(&dir, "a")]);
    cfg.acme = true;
    let tls = ServerTls::new(&cfg, Some(acme.clone())).unwrap();
    let addr = tls_server(tls.server_config()).await;

    let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
    assert_eq!(served(&stream), file.der, "nothing issued yet");
    acme.set(vec!["a.test".into()], certified(&issued));
    let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
    assert_eq!(served(&stream), issued.der);
    let stream = handshake(addr, client_any(), Some("www.a.test"))
        .await
        .unwrap();
    assert_eq!(served(&stream), file.der, "a name ACME does not cover");
}

#[tokio::test]
async fn an_acme_only_listener_refuses_handshakes_until_a_certificate_is_issued() {
    let ca = Ca::new("baton test CA");
    let issued = ca.leaf(&["c.test"], 5);
    let acme = AcmeCerts::default();
    let mut cfg = tls_config(vec![]);
    cfg.acme = true;
    let tls = ServerTls::new(&cfg, Some(acme.clone())).unwrap();
    assert!(tls.files().is_empty());
    let addr = tls_server(tls.server_config()).await;

    let refused = handshake(addr, client_any(), Some("c.test")).await;
    assert!(refused.is_err(), "handshake without any certificate");
    acme.set(vec!["c.test".into()], certified(&issued));
    let stream = handshake(addr, client_any(), Some("c.test")).await.unwrap();
    assert_eq!(served(&stream), issued.der);
    // Clients without SNI get it too: there is nothing else to serve.
    let stream = handshake(addr, client_any(), None).await.unwrap();
    assert_eq!(served(&stream), issued.der);
}

#[tokio::test]
async fn a_tls13_only_listener_refuses_a_tls12_client() {
    let dir = TempDir::new("tls13");
    let ca = Ca::new("baton test CA");
    let mut cfg = tls_config(vec![ca.leaf(&["a.test"], 6).files(&dir, "a")]);
    cfg.min_version = TlsVersion::Tls13;
    let addr = tls_server(ServerTls::new(&cfg, None).unwrap().server_config()).await;

    let tls12_only = client_any_with(ring::default_provider(), &[&rustls::version::TLS12]);
    assert!(handshake(addr, tls12_only, Some("a.test")).await.is_err());
    let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );

    // And the other way round: a TLS 1.2 ceiling is honoured.
    cfg.min_version = TlsVersion::Tls12;
    cfg.max_version = TlsVersion::Tls12;
    let addr = tls_server(ServerTls::new(&cfg, None).unwrap().server_config()).await;
    let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn cipher_suites_are_restricted_to_the_list_in_its_order() {
    let dir = TempDir::new("suites");
    let ca = Ca::new("baton test CA");
    let mut cfg = tls_config(vec![ca.leaf(&["a.test"], 7).files(&dir, "a")]);
    cfg.min_version = TlsVersion::Tls13;
    cfg.cipher_suites = Some(vec![
        "TLS13_CHACHA20_POLY1305_SHA256".into(),
        "TLS13_AES_128_GCM_SHA256".into(),
    ]);
    let addr = tls_server(ServerTls::new(&cfg, None).unwrap().server_config()).await;

    // rustls's client prefers AES-256, then AES-128, then ChaCha20: the
    // listener's order wins.
    let stream = handshake(addr, client_any(), Some("a.test")).await.unwrap();
    let suite = stream.get_ref().1.negotiated_cipher_suite().unwrap();
    assert_eq!(suite.suite(), CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);

    // A client offering only a suite that is not on the list is refused.
    let mut aes256_only = ring::default_provider();
    aes256_only.cipher_suites = vec![cipher_suite::TLS13_AES_256_GCM_SHA384];
    let client = client_any_with(aes256_only, &[&rustls::version::TLS13]);
    assert!(handshake(addr, client, Some("a.test")).await.is_err());
}

#[tokio::test]
async fn alpn_h2_is_served_as_http2_through_handoff() {
    let dir = TempDir::new("alpn");
    let ca = Ca::new("baton test CA");
    let tls = ServerTls::new(
        &tls_config(vec![ca.leaf(&["a.test"], 8).files(&dir, "a")]),
        None,
    )
    .unwrap();
    let https = https_server(tls).await;

    for (alpn, want) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], "HTTP/2.0"),
        (vec![b"http/1.1".to_vec()], "HTTP/1.1"),
        (vec![], "HTTP/1.1"),
    ] {
        let mut client = client_any();
        client.alpn_protocols = alpn.clone();
        let stream = handshake(https.addr, client, Some("a.test")).await.unwrap();
        let mut http = HttpClient::over(stream).await;
        assert_eq!(
            http.get().await,
            format!("{want} tls=true sni=a.test"),
            "ALPN {alpn:?}"
        );
    }
}

#[tokio::test]
async fn sessions_resume_with_tls13_tickets_and_tls12() {
    let dir = TempDir::new("resume");
    let ca = Ca::new("baton test CA");
    let tls = ServerTls::new(
        &tls_config(vec![ca.leaf(&["a.test"], 9).files(&dir, "a")]),
        None,
    )
    .unwrap();
    let https = https_server(tls).await;

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // Clones of a client config share its session store.
        let client = client_any_with(ring::default_provider(), &[version]);
        let first = handshake(https.addr, client.clone(), Some("a.test"))
            .await
            .unwrap();
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // A request reads the TLS 1.3 tickets the server sent after the
        // handshake.
        HttpClient::over(first).await.get().await;
        let second = handshake(https.addr, client, Some("a.test")).await.unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{version:?}"
        );
    }
}
