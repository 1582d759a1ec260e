//! ACME (RFC 8555): obtains the one certificate `[acme]` names, serves it
//! through [`AcmeCerts`] and renews it before it expires, without a
//! restart. HTTP-01 challenges are answered through [`Challenges`] (the
//! proxy serves them on the plain-HTTP listeners).
//!
//! One task per config ([`start`]). Its state (account, certificate and
//! key) lives in `STATE_DIR/acme/` (`files`), so a restarted baton serves
//! its certificate before the task even runs, without a new order.
//! Failures (server unreachable, challenge invalid, rate limits) are logged
//! with their reason and retried on a fixed schedule ([`retry_delay`]); a
//! certificate being served stays served meanwhile.
//!
//! Never logs key material, the account key or key authorizations.

mod cert;
mod files;
mod https;
mod order;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use config::Acme;
use instant_acme::Account;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::{AcmeCerts, Challenges};
use cert::{CertError, Issued};
use files::{FileError, Files};
use https::HttpSetupError;

/// The wait after the first failure in a row; it doubles with each further
/// one, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(10);

/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// While waiting to renew, the wall clock is looked at again at least this
/// often (a suspended machine or a clock set forward must not delay a
/// renewal by the whole wait).
const RECHECK: Duration = Duration::from_secs(3600);

/// The wait before the next attempt after `failures` failures in a row
/// (at least 1): 10 s, 20 s, 40 s, … doubling up to one hour. No jitter:
/// one baton renews one certificate, there is no herd to spread.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// When to renew a certificate valid from `not_before` to `not_after`:
/// `renew_before` ahead of its expiry, but never before half its lifetime
/// has passed (a `renew_before` longer than the lifetimes the CA issues
/// would otherwise order certificate after certificate).
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    let early = not_after.checked_sub(renew_before).unwrap_or(not_before);
    let half_life = not_after.duration_since(not_before).unwrap_or_default() / 2;
    early.max(not_before + half_life)
}

/// What the ACME task is doing, for tests and status pages
/// ([`AcmeClient::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeStatus {
    /// The current step.
    pub phase: AcmePhase,
    /// When the certificate being served expires, if one is.
    pub not_after: Option<SystemTime>,
    /// Orders placed since the task started.
    pub orders: u64,
    /// Certificates obtained since the task started (one loaded from the
    /// state directory is not counted).
    pub issued: u64,
    /// Failed attempts in a row; 0 after a success.
    pub failures: u32,
    /// Why the last attempt failed, while `failures` is not 0.
    pub last_error: Option<String>,
}

/// A step of the ACME task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmePhase {
    /// Not started yet.
    Starting,
    /// Talking to the ACME server: account, order, challenges, download.
    Ordering,
    /// Serving a certificate, to be renewed at `renew_at`.
    Waiting {
        /// When renewal starts.
        renew_at: SystemTime,
    },
    /// The last attempt failed; the next starts after `delay`.
    Retrying {
        /// The wait, [`retry_delay`] of the failures in a row.
        delay: Duration,
    },
}

/// Why an attempt to obtain a certificate failed. Each message says what
/// could not be done and why, ready for the log.
#[derive(Debug, thiserror::Error)]
enum AcmeError {
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("could not create an ACME account at {directory}: {source}")]
    CreateAccount {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("could not restore the ACME account of {}: {source}", path.display())]
    LoadAccount {
        path: PathBuf,
        source: instant_acme::Error,
    },
    #[error("could not order a certificate: {0}")]
    Order(instant_acme::Error),
    #[error("could not obtain a certificate: the authorization for {name} is {status}")]
    Authorization { name: String, status: String },
    #[error(
        "could not obtain a certificate: the ACME server offers no HTTP-01 challenge for {name}"
    )]
    NoHttp01 { name: String },
    #[error("could not validate the HTTP-01 challenges: {reason}")]
    Challenge { reason: String },
    #[error("could not generate the certificate's key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("could not finalize the order or download the certificate: {0}")]
    Finalize(instant_acme::Error),
    #[error("could not use the certificate the ACME server issued: {0}")]
    Certificate(#[from] CertError),
}

impl AcmeError {
    /// The server no longer knows the account (a test server restarted, an
    /// account deactivated): the next attempt creates a new one.
    fn account_gone(&self) -> bool {
        match self {
            Self::Order(instant_acme::Error::Api(problem)) => problem
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":accountDoesNotExist")),
            _ => false,
        }
    }
}

/// The ACME task, before it is spawned.
pub struct AcmeClient {
    cfg: Acme,
    files: Files,
    certs: AcmeCerts,
    challenges: Challenges,
    status: watch::Sender<AcmeStatus>,
}

/// Loads the stored certificate (served before this returns) and spawns
/// the task that obtains and renews it. Equivalent to
/// `AcmeClient::new(…).spawn()`.
pub fn start(
    cfg: Acme,
    state_dir: PathBuf,
    certs: AcmeCerts,
    challenges: Challenges,
) -> JoinHandle<()> {
    AcmeClient::new(cfg, state_dir, certs, challenges).spawn()
}

impl AcmeClient {
    /// Obtains certificates for `cfg.names` into `certs`, answering
    /// challenges through `challenges`, keeping its state in
    /// `state_dir/acme/`.
    pub fn new(cfg: Acme, state_dir: PathBuf, certs: AcmeCerts, challenges: Challenges) -> Self {
        Self {
            files: Files::new(&state_dir),
            cfg,
            certs,
            challenges,
            status: watch::Sender::new(AcmeStatus {
                phase: AcmePhase::Starting,
                not_after: None,
                orders: 0,
                issued: 0,
                failures: 0,
                last_error: None,
            }),
        }
    }

    /// What the task is doing.
    pub fn status(&self) -> watch::Receiver<AcmeStatus> {
        self.status.subscribe()
    }

    /// Loads the stored certificate if it is for the configured server and
    /// names and has not expired, and serves it before returning; then
    /// spawns the task (on the current tokio runtime) that orders one if
    /// there is none, and renews it. The task runs until aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        let current = self.load();
        if let Some(issued) = &current {
            self.certs.set(self.cfg.names.clone(), issued.key.clone());
            self.status
                .send_modify(|s| s.not_after = Some(issued.not_after));
        }
        tokio::spawn(self.run(current))
    }

    /// The stored certificate, if it can be served.
    fn load(&self) -> Option<Issued> {
        let path = self.files.certificate_path();
        let stored = match self.files.load_certificate(&self.cfg.directory) {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                info!(path = %path.display(), "no stored ACME certificate for this server");
                return None;
            }
            Err(error) => {
                warn!(%error, "ignoring the stored ACME certificate");
                return None;
            }
        };
        let issued = match cert::parse(&stored.chain, &stored.key, &self.cfg.names) {
            Ok(issued) => issued,
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring the stored ACME certificate");
                return None;
            }
        };
        if issued.not_after <= SystemTime::now() {
            info!(
                path = %path.display(),
                not_after = %humantime::format_rfc3339_seconds(issued.not_after),
                "the stored ACME certificate has expired",
            );
            return None;
        }
        info!(
            path = %path.display(),
            names = ?self.cfg.names,
            not_after = %humantime::format_rfc3339_seconds(issued.not_after),
            "serving the stored ACME certificate",
        );
        Some(issued)
    }

    async fn run(self, mut current: Option<Issued>) {
        let mut account: Option<Account> = None;
        let mut reuse_account = true;
        let mut failures = 0;
        loop {
            if let Some(issued) = &current {
                let renew_at = renew_at(issued.not_before, issued.not_after, self.cfg.renew_before);
                if let Ok(left) = renew_at.duration_since(SystemTime::now())
                    && !left.is_zero()
                {
                    self.status
                        .send_modify(|s| s.phase = AcmePhase::Waiting { renew_at });
                    tokio::time::sleep(left.min(RECHECK)).await;
                    continue;
                }
            }

            self.status.send_modify(|s| s.phase = AcmePhase::Ordering);
            match self.obtain(&mut account, &mut reuse_account).await {
                Ok(issued) => {
                    self.certs.set(self.cfg.names.clone(), issued.key.clone());
                    info!(
                        names = ?self.cfg.names,
                        not_after = %humantime::format_rfc3339_seconds(issued.not_after),
                        "obtained a certificate",
                    );
                    failures = 0;
                    self.status.send_modify(|s| {
                        s.not_after = Some(issued.not_after);
                        s.issued += 1;
                        s.failures = 0;
                        s.last_error = None;
                    });
                    current = Some(issued);
                }
                Err(error) => {
                    failures += 1;
                    let delay = retry_delay(failures);
                    warn!(
                        %error,
                        failures,
                        retry_in = %humantime::format_duration(delay),
                        "could not obtain a certificate; will retry",
                    );
                    self.status.send_modify(|s| {
                        s.phase = AcmePhase::Retrying { delay };
                        s.failures = failures;
                        s.last_error = Some(error.to_string());
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt: the account (once), an order, the certificate stored
    /// and returned.
    async fn obtain(
        &self,
        account: &mut Option<Account>,
        reuse_account: &mut bool,
    ) -> Result<Issued, AcmeError> {
        let acct = match account {
            Some(acct) => acct.clone(),
            None => {
                let acct = order::account(&self.cfg, &self.files, *reuse_account).await?;
                *reuse_account = true;
                account.insert(acct).clone()
            }
        };
        self.status.send_modify(|s| s.orders += 1);
        let stored = match order::certificate(&acct, &self.cfg.names, &self.challenges).await {
            Ok(stored) => stored,
            Err(e) => {
                if e.account_gone() {
                    *account = None;
                    *reuse_account = false;
                }
                return Err(e);
            }
        };
        let issued = cert::parse(&stored.chain, &stored.key, &self.cfg.names)?;
        if let Err(error) = self.files.save_certificate(&self.cfg.directory, &stored) {
            // Serving it is still right; only a restart would order again.
            error!(%error, "could not store the new certificate");
        }
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_ten_seconds_to_an_hour() {
        let secs: Vec<u64> = (0..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            [
                10, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600
            ]
        );
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn renews_ahead_of_expiry_but_not_before_half_the_lifetime() {
        let day = Duration::from_secs(86_400);
        let t0 = SystemTime::UNIX_EPOCH + 1000 * day;
        // 90-day certificate, renew 30 days ahead: day 60.
        assert_eq!(renew_at(t0, t0 + 90 * day, 30 * day), t0 + 60 * day);
        // 6-day certificate, renew 30 days ahead: at half-life, day 3.
        assert_eq!(renew_at(t0, t0 + 6 * day, 30 * day), t0 + 3 * day);
        // Longer than the epoch allows: still half-life.
        assert_eq!(renew_at(t0, t0 + 6 * day, Duration::MAX), t0 + 3 * day);
    }
}
