//! `client_config` and `server_name`: HTTPS to an upstream signed by a
//! private CA, with the name checked.

use std::net::SocketAddr;
use std::sync::Arc;

use config::UpstreamTls;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tls::{ServerTls, TlsErrorKind, client_config, server_name};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{BOUND, Ca, LeafFiles, TempDir, tls_config, tls_server};

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(BOUND, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("handshake did not end")
}

#[tokio::test]
async fn a_custom_ca_is_trusted_and_the_name_is_verified() {
    let dir = TempDir::new("client");
    let ca = Ca::new("baton test CA");
    let leaf = ca.leaf(&["app.internal"], 1);
    let tls = ServerTls::new(&tls_config(vec![leaf.files(&dir, "app")]), None).unwrap();
    let addr = tls_server(tls.server_config()).await;
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, &ca.pem).unwrap();
    let upstream = UpstreamTls {
        ca_bundle: Some(bundle.clone()),
        server_name: None,
    };
    let config = client_config(&upstream).unwrap();

    // The member's host is the name.
    let name = server_name(&upstream, "app.internal").unwrap();
    let stream = connect(addr, config.clone(), name).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A member addressed by IP needs `server_name`.
    let by_ip = server_name(&upstream, "127.0.0.1").unwrap();
    let err = connect(addr, config.clone(), by_ip).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    let named = UpstreamTls {
        server_name: Some("app.internal".into()),
        ..upstream.clone()
    };
    let name = server_name(&named, "127.0.0.1").unwrap();
    connect(addr, client_config(&named).unwrap(), name)
        .await
        .unwrap();

    // A wrong name is refused.
    let wrong = UpstreamTls {
        server_name: Some("other.internal".into()),
        ..upstream.clone()
    };
    let name = server_name(&wrong, "127.0.0.1").unwrap();
    let err = connect(addr, config, name).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // Without the bundle, the private CA is unknown.
    let public = UpstreamTls {
        ca_bundle: None,
        server_name: None,
    };
    let name = server_name(&public, "app.internal").unwrap();
    let err = connect(addr, client_config(&public).unwrap(), name)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn a_bad_ca_bundle_is_reported_with_its_path() {
    let dir = TempDir::new("bundle");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let err = client_config(&UpstreamTls {
        ca_bundle: Some(empty.clone()),
        server_name: None,
    })
    .unwrap_err();
    assert!(
        matches!(err.kind(), TlsErrorKind::NoCertificate { .. }),
        "{err}"
    );
    assert_eq!(err.path(), Some(empty.as_path()));

    let missing = dir.join("missing.pem");
    let err = client_config(&UpstreamTls {
        ca_bundle: Some(missing.clone()),
        server_name: None,
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("could not read {}", missing.display())),
        "{err}"
    );
}
