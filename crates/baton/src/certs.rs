//! What `baton serve` tells of its certificates: each TLS listener's
//! certificates from files (file, names, expiry) and the ACME certificate
//! with the ACME task's last result. Read for `GET /v1/certificates`
//! (`baton status`) and the metrics; never changes anything.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The certificates of a running `baton serve`.
#[derive(Clone, Default)]
pub struct Certs {
    /// Each TLS listener by name, with whether it also serves ACME's.
    pub listeners: Vec<(String, tls::ServerTls, bool)>,
    /// The `[acme]` names and the ACME task's status.
    pub acme: Option<(Vec<String>, watch::Receiver<tls::AcmeStatus>)>,
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificatesReport {
    /// Every certificate served, by listener.
    pub certificates: Vec<CertificateReport>,
    /// The ACME task, when the config has `[acme]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeReport>,
}

/// One certificate a listener serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateReport {
    /// The listener's name.
    pub listener: String,
    /// `file` or `acme`.
    pub source: String,
    /// The certificate file (source `file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The DNS names it covers.
    pub names: Vec<String>,
    /// When it expires (RFC 3339); none while ACME has not issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The same, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after_unix: Option<u64>,
}

/// What the ACME task last did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeReport {
    /// The names it obtains a certificate for.
    pub names: Vec<String>,
    /// `starting`, `ordering`, `waiting` (serving, until renewal) or
    /// `retrying` (the last attempt failed).
    pub state: String,
    /// When the next renewal starts (state `waiting`, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// Orders placed since baton started.
    pub orders: u64,
    /// Certificates obtained since baton started.
    pub issued: u64,
    /// Failed attempts in a row (0 after a success).
    pub failures: u32,
    /// Why the last attempt failed, while `failures` is not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Certs {
    /// The certificates now.
    pub fn report(&self) -> CertificatesReport {
        let acme = self
            .acme
            .as_ref()
            .map(|(names, status)| acme_report(names, &status.borrow()));
        let acme_not_after = self
            .acme
            .as_ref()
            .and_then(|(_, status)| status.borrow().not_after);
        let mut certificates = Vec::new();
        for (listener, server, uses_acme) in &self.listeners {
            for c in server.certificates() {
                certificates.push(CertificateReport {
                    listener: listener.clone(),
                    source: "file".into(),
                    file: Some(c.path.display().to_string()),
                    names: c.names,
                    not_after: Some(rfc3339(c.not_after)),
                    not_after_unix: Some(unix(c.not_after)),
                });
            }
            if let (true, Some((names, _))) = (uses_acme, &self.acme) {
                certificates.push(CertificateReport {
                    listener: listener.clone(),
                    source: "acme".into(),
                    file: None,
                    names: names.clone(),
                    not_after: acme_not_after.map(rfc3339),
                    not_after_unix: acme_not_after.map(unix),
                });
            }
        }
        CertificatesReport { certificates, acme }
    }
}

fn acme_report(names: &[String], s: &tls::AcmeStatus) -> AcmeReport {
    let (state, renew_at) = match s.phase {
        tls::AcmePhase::Starting => ("starting", None),
        tls::AcmePhase::Ordering => ("ordering", None),
        tls::AcmePhase::Waiting { renew_at } => ("waiting", Some(rfc3339(renew_at))),
        tls::AcmePhase::Retrying { .. } => ("retrying", None),
    };
    AcmeReport {
        names: names.to_vec(),
        state: state.into(),
        renew_at,
        orders: s.orders,
        issued: s.issued,
        failures: s.failures,
        last_error: s.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_acme_task_is_reported_with_its_last_result() {
        let renew_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let status = tls::AcmeStatus {
            phase: tls::AcmePhase::Waiting { renew_at },
            not_after: Some(renew_at + Duration::from_secs(30 * 86400)),
            orders: 3,
            issued: 2,
            failures: 0,
            last_error: None,
        };
        let names = vec!["example.com".to_owned()];
        let r = acme_report(&names, &status);
        assert_eq!(r.state, "waiting");
        assert_eq!(r.renew_at.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!((r.orders, r.issued, r.failures), (3, 2, 0));
        let failing = tls::AcmeStatus {
            phase: tls::AcmePhase::Retrying {
                delay: Duration::from_secs(60),
            },
            failures: 2,
            last_error: Some("could not reach the ACME server".into()),
            ..status
        };
        let r = acme_report(&names, &failing);
        assert_eq!(r.state, "retrying");
        assert_eq!(r.failures, 2);
        assert_eq!(
            r.last_error.as_deref(),
            Some("could not reach the ACME server")
        );
    }
}
