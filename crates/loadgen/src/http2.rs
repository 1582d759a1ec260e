//! HTTP/2 exchanges (cleartext, prior knowledge) on the `h2` crate directly, so that every stream and connection
//! error is seen as the protocol says it.
//!
//! Owns what ends a connection and how that counts. A GOAWAY without an error code is an announced end, in the two
//! places where the protocol says the request was not processed: received before the request was sent (the
//! connection takes no new stream), or naming a last stream id below the request's (the request crossed the
//! GOAWAY on the wire; RFC 9113 §6.8 says such streams were never processed and may be retried). The worker then
//! sends the request on a new connection; it is counted once. Everything else is a failure: a stream reset by the
//! server (`stream_reset`, whatever its code, REFUSED_STREAM included), a GOAWAY with an error (`reset`), a
//! connection closed without GOAWAY or while the request was being answered (`reset`), a non-2xx status, a body
//! shorter than its `content-length` or not the expected one.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Uri};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::conn::{declared_length, first_line, instance_of};
use crate::failure::{Failure, FailureKind, Stage, chain, classify, classify_kind};
use crate::plan::Plan;
use crate::worker::Attempt;

/// An open HTTP/2 connection. Dropping it closes the socket.
pub(crate) struct Connection {
    sender: SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Sends the plan on the worker's connection, opening one first if there is none; after a GOAWAY that refuses
/// new streams, on a new one.
pub(crate) async fn exchange(
    slot: &mut Option<Connection>,
    attempt: &mut Attempt<'_>,
    plan: &Plan,
) -> Result<(), Failure> {
    let request = request(attempt, plan)?;
    loop {
        let conn = match slot {
            Some(conn) => conn,
            None => slot.insert(connect(attempt.target).await?),
        };
        let sent = match conn.sender.clone().ready().await {
            Ok(mut sender) => sender.send_request(request.clone(), plan.body.is_empty()),
            Err(e) => Err(e),
        };
        let (response, mut body_tx) = match sent {
            Ok(sent) => sent,
            Err(e) if announced(&e) => {
                *slot = None;
                attempt.announced_end("HTTP/2 connection")?;
                continue;
            }
            Err(e) => {
                *slot = None;
                return Err(failure(
                    Stage::Reuse,
                    "the HTTP/2 connection ended without GOAWAY before the request",
                    &e,
                ));
            }
        };
        if !plan.body.is_empty()
            && let Err(e) = body_tx.send_data(plan.body.clone(), true)
        {
            *slot = None;
            if announced(&e) {
                attempt.announced_end("HTTP/2 connection")?;
                continue;
            }
            return Err(failure(Stage::Response, "could not send the body", &e));
        }
        let response = match response.await {
            Ok(response) => response,
            // Above the GOAWAY's last stream id: the server says it did not
            // process the stream (the request went out just as the GOAWAY
            // came in), which is what makes sending it again safe.
            Err(e) if announced(&e) => {
                *slot = None;
                attempt.announced_end("HTTP/2 connection")?;
                continue;
            }
            Err(e) => {
                *slot = None;
                return Err(failure(Stage::Response, "no response head", &e));
            }
        };
        *attempt.responded = Some(instance_of(response.headers()));
        let status = response.status();
        let declared = declared_length(response.headers());
        let mut body = response.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    *slot = None;
                    return Err(failure(Stage::Body, "response body broke off", &e));
                }
            };
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(Failure::new(
                FailureKind::Status(status.as_u16()),
                format!(
                    "status {status}, body {} B: {:?}",
                    got.len(),
                    first_line(&got)
                ),
            ));
        }
        if let Some(expected) = declared.filter(|&n| n != got.len() as u64) {
            *slot = None;
            return Err(Failure::new(
                FailureKind::Truncated,
                format!("content-length {expected} but {} B of body", got.len()),
            ));
        }
        return plan.check_body(&got);
    }
}

fn request(attempt: &Attempt<'_>, plan: &Plan) -> Result<Request<()>, Failure> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(attempt.host.as_bytes())
        .path_and_query(plan.path.as_str())
        .build()
        .map_err(|e| {
            Failure::new(
                FailureKind::Other,
                format!("the Host is not an authority: {e}"),
            )
        })?;
    let mut builder = Request::builder().method(plan.method.clone()).uri(uri);
    if !plan.body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/octet-stream");
    }
    builder
        .body(())
        .map_err(|e| Failure::new(FailureKind::Other, e.to_string()))
}

async fn connect(target: SocketAddr) -> Result<Connection, Failure> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| classify(Stage::Connect, &e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| classify(Stage::Connect, &e))?;
    let (sender, connection) = h2::client::handshake(stream).await.map_err(|e| {
        failure(
            Stage::Handshake,
            "could not start HTTP/2 on a new connection",
            &e,
        )
    })?;
    // The connection's own end is seen by the requests it breaks.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection { sender, driver })
}

/// A GOAWAY without error from the server: the connection takes no new stream, and said so.
fn announced(e: &h2::Error) -> bool {
    e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
}

fn failure(stage: Stage, what: &str, e: &h2::Error) -> Failure {
    let kind = if e.is_reset() && e.is_remote() {
        FailureKind::StreamReset
    } else if let Some(io) = e.get_io() {
        classify_kind(stage, io)
    } else if e.is_go_away() {
        FailureKind::Reset
    } else {
        FailureKind::Other
    };
    Failure::new(kind, format!("{what}: {}", chain(e)))
}
