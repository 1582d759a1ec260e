//! WebSocket echoes: one socket per worker, each binary message and its echo one request.
//!
//! Owns what ends a socket and how that counts. A close frame with code 1001 (going away: a draining server, or a
//! proxy that stops) is an announced end: the message sent without an echo yet is sent again on a new socket, and
//! the request is counted once, by how that ends. Anything else that ends a socket while a message waits for its
//! echo is a failure: a close with another code (`ws_close_NNNN`), a connection that ends without a close frame
//! (`reset`), a refused upgrade (`status_NNN`). A socket is never reopened silently otherwise.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::conn::instance_of;
use crate::failure::{Failure, FailureKind, Stage, chain, classify, classify_kind};
use crate::plan::Plan;
use crate::worker::Attempt;

/// Close code for "going away" (RFC 6455 §7.4.1).
pub(crate) const GOING_AWAY: u16 = 1001;
/// The code a close frame without one stands for (RFC 6455 §7.4.1).
const NO_STATUS: u16 = 1005;

/// One open WebSocket.
pub(crate) struct Socket {
    ws: WebSocketStream<TcpStream>,
    instance: Option<String>,
}

/// How a message's round trip ended, short of a failure.
enum Reply {
    Echo(Bytes),
    GoingAway,
}

/// Sends the plan's message and waits for its echo, opening a socket first if there is none; after a close with
/// 1001 sends it again on a new one.
pub(crate) async fn echo(
    slot: &mut Option<Socket>,
    attempt: &mut Attempt<'_>,
    plan: &Plan,
) -> Result<(), Failure> {
    loop {
        let socket = match slot {
            Some(socket) => socket,
            None => slot.insert(open(attempt, plan).await?),
        };
        *attempt.responded = Some(socket.instance.clone());
        match round_trip(socket, &plan.body).await {
            Ok(Reply::Echo(got)) => return plan.check_body(&got),
            Ok(Reply::GoingAway) => {
                // Answer the close (queued by the library) on the way out; the server may be gone already.
                let _ = socket.ws.flush().await;
                *slot = None;
                attempt.announced_end("WebSocket")?;
            }
            Err(failure) => {
                *slot = None;
                return Err(failure);
            }
        }
    }
}

async fn open(attempt: &mut Attempt<'_>, plan: &Plan) -> Result<Socket, Failure> {
    let stream = TcpStream::connect(attempt.target)
        .await
        .map_err(|e| classify(Stage::Connect, &e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| classify(Stage::Connect, &e))?;
    let host = String::from_utf8_lossy(attempt.host.as_bytes()).into_owned();
    let request = format!("ws://{host}{}", plan.path)
        .into_client_request()
        .map_err(|e| failure("could not build the WebSocket request", &e))?;
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, response)) => Ok(Socket {
            ws,
            instance: instance_of(response.headers()),
        }),
        Err(WsError::Http(response)) => {
            *attempt.responded = Some(instance_of(response.headers()));
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            Err(Failure::new(
                FailureKind::Status(status.as_u16()),
                format!(
                    "WebSocket upgrade refused: status {status}: {:?}",
                    crate::conn::first_line(body)
                ),
            ))
        }
        Err(e) => Err(failure("WebSocket upgrade failed", &e)),
    }
}

async fn round_trip(socket: &mut Socket, body: &Bytes) -> Result<Reply, Failure> {
    if let Err(e) = socket.ws.send(Message::Binary(body.clone())).await {
        // A server that closed may have said why before it did: its close frame is still to be read.
        return match socket.ws.next().await {
            Some(Ok(Message::Close(frame))) => closed(frame),
            _ => Err(failure("could not send the message", &e)),
        };
    }
    loop {
        match socket.ws.next().await {
            Some(Ok(Message::Binary(got))) => return Ok(Reply::Echo(got)),
            Some(Ok(Message::Text(got))) => {
                return Ok(Reply::Echo(Bytes::copy_from_slice(got.as_bytes())));
            }
            // Pings are answered by the library.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => return closed(frame),
            Some(Err(e)) => return Err(failure("no echo", &e)),
            None => {
                return Err(Failure::new(
                    FailureKind::Reset,
                    "the WebSocket ended without a close frame",
                ));
            }
        }
    }
}

/// A close frame from the server: 1001 is an announced end, any other code a failure.
fn closed(frame: Option<CloseFrame>) -> Result<Reply, Failure> {
    let (code, reason) = frame.map_or((NO_STATUS, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    });
    if code == GOING_AWAY {
        return Ok(Reply::GoingAway);
    }
    Err(Failure::new(
        FailureKind::WsClose(code),
        format!("the server closed the WebSocket with {code} {reason:?} before the echo"),
    ))
}

/// A WebSocket error: the io error inside decides, as for HTTP; a connection that ends without the closing
/// handshake is a reset.
fn failure(what: &str, error: &WsError) -> Failure {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let kind = match error {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => FailureKind::Reset,
        other => classify_kind(Stage::Response, other),
    };
    Failure::new(kind, format!("{what}: {}", chain(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn only_going_away_is_an_announced_end() {
        let frame = |code: u16| {
            Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })
        };
        assert!(matches!(closed(frame(1001)), Ok(Reply::GoingAway)));
        let error = closed(frame(1011)).err().unwrap();
        assert_eq!(error.kind, FailureKind::WsClose(1011));
        assert!(error.detail.contains("1011 \"bye\""), "{}", error.detail);
        assert_eq!(
            closed(frame(1000)).err().unwrap().kind,
            FailureKind::WsClose(1000)
        );
        assert_eq!(closed(None).err().unwrap().kind, FailureKind::WsClose(1005));
    }

    #[test]
    fn a_connection_gone_without_closing_is_a_reset() {
        let cut = WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        );
        assert_eq!(failure("no echo", &cut).kind, FailureKind::Reset);
        let refused = WsError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(failure("x", &refused).kind, FailureKind::Refused);
    }
}
