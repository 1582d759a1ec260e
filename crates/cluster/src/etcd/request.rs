//! One request to etcd, bounded: [`retrying`] retries what a retry can cure
//! (a member down, no leader yet) until a deadline, and [`probe`] says, for
//! people, what each endpoint does when none answers. Never waits past the
//! deadline it is given.

use std::future::Future;
use std::time::Duration;

use etcd_client::Error;
use tokio::time::Instant;
use tonic::Code;

use crate::error::RequestError;

/// The first pause between two attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_millis(500);

impl super::Etcd {
    /// Puts `value` at `key` with no lease (it outlives every node),
    /// retrying within the request timeout; returns the revision it got.
    pub(crate) async fn put_durable(
        &self,
        key: String,
        value: String,
    ) -> Result<i64, RequestError> {
        let inner = &self.inner;
        let client = &inner.client;
        let response = retrying(inner.options.request_timeout, || {
            let mut client = client.clone();
            let (key, value) = (key.clone(), value.clone());
            async move { client.put(key, value, None).await }
        })
        .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }
}

/// Runs `attempt` until it succeeds, fails in a way a retry cannot cure, or
/// `deadline` has passed. An attempt's own wait counts against the deadline
/// (a request to an unreachable cluster would otherwise wait forever), and
/// one attempt may use a third of it at most: a request that a follower
/// forwarded to a leader that just died is never answered (etcd drops it and
/// only times it out after seconds), while the same request sent again once
/// a new leader is elected succeeds. Every request the registry retries is
/// idempotent, or harmless twice (a second lease expires unused).
pub(crate) async fn retrying<T, F, Fut>(
    deadline: Duration,
    mut attempt: F,
) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let end = Instant::now() + deadline;
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    loop {
        let timeout = RequestError::Timeout {
            after: deadline,
            last: None,
        };
        let attempt_end = (Instant::now() + deadline / 3).min(end);
        let result = tokio::time::timeout_at(attempt_end, attempt()).await;
        match result {
            Err(_) if attempt_end >= end => return Err(with_last(timeout, last)),
            Err(_) => {}
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if retryable(&e) => {
                last = Some(e);
                let resume = (Instant::now() + pause).min(end);
                // A pause between attempts: what failed (a connection
                // refused, an election) gives no event to wait for.
                tokio::time::sleep_until(resume).await;
                if resume >= end {
                    return Err(with_last(timeout, last));
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Ok(Err(e)) => return Err(RequestError::Etcd(e)),
        }
    }
}

fn with_last(error: RequestError, last: Option<Error>) -> RequestError {
    match error {
        RequestError::Timeout { after, .. } => RequestError::Timeout { after, last },
        other => other,
    }
}

/// Whether another attempt may succeed: connection failures and the gRPC
/// codes of a member that is down, restarting or without a leader.
pub(crate) fn retryable(error: &Error) -> bool {
    match error {
        Error::TransportError(_) | Error::IoError(_) => true,
        // A member down, an election, a connection closed or reset
        // mid-request (`Cancelled`: etcd itself never answers with it).
        Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Cancelled
        ),
        _ => false,
    }
}

/// What each endpoint does at the TCP level, for an error message: connects
/// with `timeout` to each `http://HOST:PORT`, all at once.
pub(crate) async fn probe(endpoints: &[String], timeout: Duration) -> (bool, String) {
    let mut probes = Vec::new();
    for endpoint in endpoints {
        let authority = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .trim_end_matches('/')
            .to_owned();
        probes.push(tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&authority)).await;
            let open = matches!(outcome, Ok(Ok(_)));
            let text = match outcome {
                Ok(Ok(_)) => "accepts TCP connections but gave no etcd answer".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no TCP connection within {}",
                    humantime::format_duration(timeout)
                ),
            };
            (authority, open, text)
        }));
    }
    let mut any_open = false;
    let mut detail = Vec::new();
    for probe in probes {
        if let Ok((authority, open, text)) = probe.await {
            any_open |= open;
            detail.push(format!("{authority}: {text}"));
        }
    }
    (any_open, detail.join("; "))
}
