//! One HTTP/1.1 exchange on a hyper client connection, with every failure classified.
//!
//! Owns the connection lifecycle rules that make the counts honest: hyper's bare `client::conn::http1` (no pool, so
//! nothing retries behind our back), a reused connection is kept only while the server has not announced its end,
//! and a reused connection the server closed *without* announcing it is a failure, never a silent reconnect.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::failure::{Failure, FailureKind, Stage, classify};
use crate::plan::Plan;

/// The response header whose value names the instance that answered.
pub(crate) const INSTANCE_HEADER: &str = "x-instance";

/// An open client connection. Dropping it closes the socket.
pub(crate) struct Connection {
    pub(crate) sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The driver task owns the socket; aborting it closes the connection now rather than whenever the
        // server next speaks.
        self.driver.abort();
    }
}

/// Opens a TCP connection with `TCP_NODELAY` and starts HTTP/1 on it.
pub(crate) async fn connect(target: SocketAddr) -> Result<Connection, Failure> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| classify(Stage::Connect, &e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| classify(Stage::Connect, &e))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify(Stage::Handshake, &e))?;
    // The connection's own result is not a request outcome: whatever breaks a request also fails that request's
    // response future, which is where it is counted.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection { sender, driver })
}

/// Where one exchange sends its request and what it remembers between requests.
pub(crate) struct Exchange<'a> {
    /// The connection kept from the previous request, if any; left holding the connection if it may be reused.
    pub(crate) slot: &'a mut Option<Connection>,
    /// Set as soon as a response head arrives, to the value of its instance header (`None` when absent), so that
    /// even a response whose body later times out is counted per instance.
    pub(crate) responded: &'a mut Option<Option<String>>,
    pub(crate) target: SocketAddr,
    pub(crate) host: &'a HeaderValue,
    /// Keep the connection for the next request when the server allows it.
    pub(crate) reuse: bool,
}

impl Exchange<'_> {
    /// Sends `plan` and reads the whole answer. Transport failures leave the slot empty; a failure that still
    /// consumed a complete response (bad status, wrong body) keeps a reusable connection.
    pub(crate) async fn run(self, plan: &Plan) -> Result<(), Failure> {
        let mut conn = match self.slot.take() {
            Some(mut reused) => {
                // Waiting for readiness is required (hyper refuses a request the dispatcher has not asked for
                // yet), and it is where a connection the server closed while idle shows up: that is the
                // keep-alive close race, a failure. The connection is not replaced and the request not retried.
                reused
                    .sender
                    .ready()
                    .await
                    .map_err(|e| classify(Stage::Reuse, &e))?;
                reused
            }
            None => {
                let mut fresh = connect(self.target).await?;
                fresh
                    .sender
                    .ready()
                    .await
                    .map_err(|e| classify(Stage::Handshake, &e))?;
                fresh
            }
        };
        let request = plan.request(self.host, !self.reuse);
        let response = conn
            .sender
            .send_request(request)
            .await
            .map_err(|e| classify(Stage::Response, &e))?;
        *self.responded = Some(instance_of(response.headers()));
        let reusable = self.reuse && !announces_close(&response);
        let status = response.status();
        let declared = declared_length(response.headers());
        let body = response.into_body().collect().await.map(|c| c.to_bytes());

        if !status.is_success() {
            let detail = match &body {
                Ok(bytes) => format!(
                    "status {status}, body {} B: {:?}",
                    bytes.len(),
                    first_line(bytes)
                ),
                Err(e) => format!("status {status}, and the body broke off: {e}"),
            };
            if body.is_ok() && reusable {
                *self.slot = Some(conn);
            }
            return Err(Failure::new(FailureKind::Status(status.as_u16()), detail));
        }
        let body = body.map_err(|e| classify(Stage::Body, &e))?;
        if let Some(expected) = declared.filter(|&n| n != body.len() as u64) {
            return Err(Failure::new(
                FailureKind::Truncated,
                format!("Content-Length {expected} but {} B of body", body.len()),
            ));
        }
        let checked = plan.check_body(&body);
        if reusable {
            *self.slot = Some(conn);
        }
        checked
    }
}

pub(crate) fn instance_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(INSTANCE_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the server said this response ends the connection: `Connection: close`, HTTP/1.0 without keep-alive,
/// or a body delimited only by the end of the connection. After such a response the worker reconnects, and that
/// is not a failure.
pub(crate) fn announces_close<B>(response: &Response<B>) -> bool {
    let headers = response.headers();
    let has_token = |token: &str| {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if has_token("close") {
        return true;
    }
    if response.version() <= Version::HTTP_10 && !has_token("keep-alive") {
        return true;
    }
    let status = response.status();
    let bodyless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let delimited = headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING);
    !bodyless && !delimited
}

/// The start of a failed response's body (its first line, at most 80
/// characters), which says whose answer it was: the proxy's own 503s name
/// their reason ("no healthy upstream", "upstream queue full"), an app's do not.
pub(crate) fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.lines().next().unwrap_or("").chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(version: Version, status: u16, headers: &[(&str, &str)]) -> Response<()> {
        let mut builder = Response::builder().version(version).status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn connection_close_is_an_announcement_in_any_case_and_position() {
        let h11 = Version::HTTP_11;
        assert!(announces_close(&response(
            h11,
            200,
            &[("content-length", "1"), ("connection", "close")]
        )));
        assert!(announces_close(&response(
            h11,
            200,
            &[("content-length", "1"), ("Connection", "Upgrade, Close")]
        )));
        assert!(!announces_close(&response(
            h11,
            200,
            &[("content-length", "1")]
        )));
        assert!(!announces_close(&response(
            h11,
            200,
            &[("transfer-encoding", "chunked")]
        )));
    }

    #[test]
    fn http10_and_close_delimited_bodies_end_the_connection() {
        assert!(announces_close(&response(
            Version::HTTP_10,
            200,
            &[("content-length", "1")]
        )));
        let kept = [("content-length", "1"), ("connection", "keep-alive")];
        assert!(!announces_close(&response(Version::HTTP_10, 200, &kept)));
        assert!(announces_close(&response(Version::HTTP_11, 200, &[])));
        assert!(!announces_close(&response(Version::HTTP_11, 204, &[])));
        assert!(!announces_close(&response(Version::HTTP_11, 304, &[])));
    }

    #[test]
    fn instance_header_is_read_lossily() {
        let mut headers = HeaderMap::new();
        assert_eq!(instance_of(&headers), None);
        headers.insert(INSTANCE_HEADER, HeaderValue::from_static("v2-1"));
        assert_eq!(instance_of(&headers).as_deref(), Some("v2-1"));
    }

    #[test]
    fn a_failed_response_is_described_by_its_first_line() {
        assert_eq!(first_line(b"no healthy upstream\n"), "no healthy upstream");
        assert_eq!(first_line(b""), "");
        assert_eq!(first_line(&[b'x'; 200]).len(), 80);
    }
}
