//! One conversation with the ACME server: the account (restored from the
//! state directory or created), then one order for all the names, its
//! HTTP-01 challenges answered through [`Challenges`] for as long as the
//! server validates them, finalized with a CSR for a fresh ECDSA P-256 key,
//! and the chain downloaded. Key authorizations never reach the logs.

use std::time::Duration;

use config::Acme;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, Order,
    OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};
use tracing::{debug, info};

use super::AcmeError;
use super::files::{Files, StoredCertificate};
use super::https;
use crate::Challenges;

/// Polling an order until it is ready or its certificate is issued: 250 ms,
/// doubling, for two minutes at most.
fn poll_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(2.0)
        .timeout(Duration::from_secs(120))
}

/// The account: the one stored for `cfg.directory` if `reuse` and there is
/// one, else a new one (contacts from the config, terms agreed), stored.
pub async fn account(cfg: &Acme, files: &Files, reuse: bool) -> Result<Account, AcmeError> {
    let http = https::client(cfg.ca_bundle.as_deref())?;
    let stored = match reuse {
        true => files.load_account(&cfg.directory)?,
        false => None,
    };
    if let Some(credentials) = stored {
        let account = Account::builder_with_http(http)
            .from_credentials(credentials)
            .await
            .map_err(|source| AcmeError::LoadAccount {
                path: files.account_path(),
                source,
            })?;
        debug!(id = account.id(), "restored the ACME account");
        return Ok(account);
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await
        .map_err(|source| AcmeError::CreateAccount {
            directory: cfg.directory.clone(),
            source,
        })?;
    files.save_account(&cfg.directory, &credentials)?;
    info!(id = account.id(), directory = %cfg.directory, "created an ACME account");
    Ok(account)
}

/// Orders, validates, finalizes and downloads one certificate for `names`.
pub async fn certificate(
    account: &Account,
    names: &[String],
    challenges: &Challenges,
) -> Result<StoredCertificate, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(AcmeError::Order)?;
    info!(order = order.url(), ?names, "ordered a certificate");

    let mut answering = Answering {
        challenges,
        tokens: Vec::new(),
        key_authorizations: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(AcmeError::Order)?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Authorization {
                    name,
                    status: format!("{status:?}").to_ascii_lowercase(),
                });
            }
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| AcmeError::NoHttp01 { name: name.clone() })?;
        answering.insert(
            challenge.token.clone(),
            challenge.key_authorization().as_str().to_owned(),
        );
        debug!(%name, token = %challenge.token, "answering the HTTP-01 challenge");
        challenge.set_ready().await.map_err(AcmeError::Order)?;
    }

    match order.poll_ready(&poll_policy()).await {
        Ok(OrderStatus::Ready) => {}
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            let reason = failure(&mut order).await;
            return Err(AcmeError::Challenge {
                reason: answering.redact(reason),
            });
        }
        Err(e) => return Err(AcmeError::Order(e)),
    }
    drop(answering);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(AcmeError::Finalize)?;
    let chain = order
        .poll_certificate(&poll_policy())
        .await
        .map_err(AcmeError::Finalize)?;
    Ok(StoredCertificate {
        chain,
        key: key.serialize_pem(),
    })
}

/// Why an order became invalid: its challenges' errors, by name, or else
/// the order's own (which repeats one of them when there are any).
async fn failure(order: &mut Order) -> String {
    let order_error = order.state().error.as_ref().map(|p| p.to_string());
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{name}: {problem}"));
            }
        }
    }
    match (reasons.is_empty(), order_error) {
        (false, _) => reasons.join("; "),
        (true, Some(order_error)) => order_error,
        (true, None) => "the order became invalid, for no reason the server gave".into(),
    }
}

/// The challenges being answered; they stop being answered when this is
/// dropped, whatever happened (errors, the task aborted).
struct Answering<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    key_authorizations: Vec<String>,
}

impl Answering<'_> {
    fn insert(&mut self, token: String, key_authorization: String) {
        self.challenges
            .insert(token.clone(), key_authorization.clone());
        self.tokens.push(token);
        self.key_authorizations.push(key_authorization);
    }

    /// `reason` without any key authorization (servers quote the expected
    /// one when a response does not match).
    fn redact(&self, mut reason: String) -> String {
        for key_authorization in &self.key_authorizations {
            reason = reason.replace(key_authorization, "<key authorization>");
        }
        reason
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}
