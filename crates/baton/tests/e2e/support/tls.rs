//! HTTPS pieces of the end-to-end tests: certificates made at test time and
//! rustls clients (both from `testkit`), the certificate entries of a config,
//! `curl`, and a probe that captures the ClientHello a `curl` invocation
//! really sends (so that a "refused" result is known to come from baton, not
//! from curl's own OpenSSL policy).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::ring;
use testkit::client::client_any_with;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::EVENT_TIMEOUT;

#[allow(unused_imports)] // `Answer` is only named by a test that stores one
pub use testkit::client::{Answer, HttpsConn, client_trusting, connect, served};
pub use testkit::pki::{Ca, Leaf, replace};
pub use testkit::system_tool;

/// A TOML inline table naming a certificate's files.
pub fn cert_entry((cert, key): &(PathBuf, PathBuf)) -> String {
    format!(
        "{{ cert = \"{}\", key = \"{}\" }}",
        cert.display(),
        key.display()
    )
}

/// A client that accepts any certificate (signatures still checked), so
/// that a test can look at which one was served; `sni` says whether it
/// sends a name.
pub fn client_any(sni: bool) -> Arc<ClientConfig> {
    let mut config = client_any_with(ring::default_provider(), rustls::DEFAULT_VERSIONS);
    config.enable_sni = sni;
    Arc::new(config)
}

/// What a `curl` run gave.
#[derive(Debug)]
pub struct Curl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `curl -sS ARGS` to completion (bounded). A missing `curl` fails
/// the test with what to install.
pub async fn curl(args: &[&str]) -> Curl {
    let mut cmd = Command::new(system_tool("curl", "curl"));
    cmd.args(["-sS", "--max-time", "20"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(EVENT_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("could not run curl {args:?}: {e}"),
        Err(_) => panic!("curl {args:?} did not finish within {EVENT_TIMEOUT:?}"),
    };
    Curl {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The parts of a ClientHello the tests look at.
#[derive(Debug)]
pub struct ClientHello {
    /// The versions offered: `supported_versions` if sent, else the
    /// legacy version field (0x0302 is TLS 1.1, 0x0303 TLS 1.2, 0x0304
    /// TLS 1.3).
    pub versions: Vec<u16>,
    /// The cipher suites offered, without signalling values (SCSVs).
    pub cipher_suites: Vec<u16>,
}

/// The ClientHello that `curl ARGS https://probe.test:PORT/` sends, caught
/// by a listener of the test (which then closes the connection).
pub async fn curl_client_hello(args: &[&str]) -> ClientHello {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resolve = format!("probe.test:{port}:127.0.0.1");
    let url = format!("https://probe.test:{port}/");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--resolve", &resolve, &url]);
    let capture = async {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut record = vec![0u8; 5];
        tcp.read_exact(&mut record).await.unwrap();
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(record[0], 22, "not a handshake record: {record:?}");
        body
    };
    let (_, body) = tokio::join!(curl(&all), async {
        tokio::time::timeout(EVENT_TIMEOUT, capture)
            .await
            .unwrap_or_else(|_| panic!("curl {args:?} sent no ClientHello"))
    });
    parse_client_hello(&body)
}

/// Parses a ClientHello handshake message (one record's payload).
fn parse_client_hello(msg: &[u8]) -> ClientHello {
    let mut r = Reader(msg);
    assert_eq!(r.u8(), 1, "not a ClientHello");
    let _len = r.take(3);
    let legacy = r.u16();
    r.take(32); // random
    let session = r.u8() as usize;
    r.take(session);
    let suites = r.u16() as usize;
    let cipher_suites: Vec<u16> = r
        .take(suites)
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        // TLS_EMPTY_RENEGOTIATION_INFO_SCSV and TLS_FALLBACK_SCSV.
        .filter(|s| *s != 0x00ff && *s != 0x5600)
        .collect();
    let compression = r.u8() as usize;
    r.take(compression);
    let mut versions = vec![legacy];
    if !r.0.is_empty() {
        let total = r.u16() as usize;
        let mut ext = Reader(r.take(total));
        while !ext.0.is_empty() {
            let kind = ext.u16();
            let len = ext.u16() as usize;
            let data = ext.take(len);
            if kind == 0x002b {
                versions = data[1..]
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    // GREASE values (0x?a?a) are not versions.
                    .filter(|v| v & 0x0f0f != 0x0a0a)
                    .collect();
            }
        }
    }
    ClientHello {
        versions,
        cipher_suites,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }
}
