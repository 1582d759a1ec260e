//! The test ACME server: Debian's `pebble` on free loopback ports, with `pebble-challtestsrv` as its DNS (every
//! name resolves to 127.0.0.1). Validation is real: pebble fetches HTTP-01 answers from the port the caller names,
//! where the caller serves them. A missing `pebble` fails the test: `scripts/test` installs it.
//!
//! Pebble and challtestsrv are killed when the [`Pebble`] is dropped; its files live in the caller's directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::client::{HttpsConn, client_trusting, connect};
use crate::pki::Ca;
use crate::{EVENT_TIMEOUT, free_ports, free_tcp_udp_port, system_tool};

/// A `pebble` and its `pebble-challtestsrv`, killed on drop.
pub struct Pebble {
    processes: Vec<Child>,
    /// The ACME directory URL.
    pub directory: String,
    /// The address of pebble's management API.
    pub management: String,
    /// The CA of pebble's own HTTPS (for `[acme] ca_bundle`).
    pub ca_bundle: PathBuf,
    ca: CertificateDer<'static>,
    log: PathBuf,
}

impl Pebble {
    /// Starts pebble (files in `dir`) validating HTTP-01 on `http_port`, and waits until it answers.
    pub async fn start(dir: &Path, http_port: u16) -> Pebble {
        Pebble::start_with(dir, http_port, None).await
    }

    /// Like [`Pebble::start`], issuing certificates valid for `validity` (pebble's default, five years, if `None`).
    pub async fn start_with(dir: &Path, http_port: u16, validity: Option<Duration>) -> Pebble {
        let pebble = system_tool("pebble", "pebble");
        let challtestsrv = system_tool("pebble-challtestsrv", "pebble");

        // Pebble's own HTTPS: a CA of ours and a leaf for 127.0.0.1.
        let ca = Ca::new("pebble's HTTPS test CA");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"], 1);
        let ca_bundle = ca.write(&dir.join("pebble-ca.pem"));
        let (cert, key) = leaf.write(dir, "pebble");

        // Pebble and challtestsrv take ports, not listeners: pick free ones, then release them. A port released a
        // moment ago (the caller's `http_port`, these four) may be handed out again, so none may repeat another.
        let [listen, management, tls, dns_management] = loop {
            let ports: [u16; 4] = free_ports();
            if !ports.contains(&http_port) {
                break ports;
            }
        };
        let dns = free_tcp_udp_port(&[listen, management, tls, dns_management, http_port]);
        let validity = validity
            .map(|v| {
                format!(
                    ",\n                \"certificateValidityPeriod\": {}",
                    v.as_secs()
                )
            })
            .unwrap_or_default();
        let config = format!(
            r#"{{"pebble": {{
                "listenAddress": "127.0.0.1:{listen}",
                "managementListenAddress": "127.0.0.1:{management}",
                "certificate": "{}",
                "privateKey": "{}",
                "httpPort": {http_port},
                "tlsPort": {tls},
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false{validity}
            }}}}"#,
            cert.display(),
            key.display()
        );
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config).unwrap();

        let log = dir.join("pebble.log");
        let output = || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
        };
        let mut processes = Vec::new();
        let (out, err) = output();
        processes.push(
            Command::new(&challtestsrv)
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", challtestsrv.display())),
        );
        let (out, err) = output();
        processes.push(
            Command::new(&pebble)
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // No random validation delays, no random nonce rejections, every order validated afresh.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", pebble.display())),
        );
        let mut this = Pebble {
            processes,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("127.0.0.1:{management}"),
            ca_bundle,
            ca: ca.der.clone(),
            log,
        };
        for port in [dns, listen, management] {
            this.wait_listening(port).await;
        }
        this
    }

    /// Waits until something accepts on `port`, failing at once if a process exited. Pebble prints nothing a
    /// caller could wait on, so this retries a connection every 20 ms (bounded).
    async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            for child in &mut self.processes {
                if let Some(exit) = child.try_wait().unwrap() {
                    panic!("pebble exited ({exit}):\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on port {port} after {EVENT_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What pebble and challtestsrv have logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pebble's root CA (a new one each run), from its management API.
    pub async fn root_ca(&self) -> CertificateDer<'static> {
        let config = client_trusting(std::slice::from_ref(&self.ca), &[]);
        let stream = connect(&self.management, config, "127.0.0.1")
            .await
            .expect("pebble's management API completes a handshake");
        let mut conn = HttpsConn::over(stream).await.unwrap();
        let answer = conn.get(&self.management, "/roots/0").await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        CertificateDer::from_pem_slice(answer.body.as_bytes()).unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("pebble's log:\n{}", self.log_text());
        }
    }
}
