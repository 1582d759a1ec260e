//! Test servers for the long-lived kinds: a WebSocket echo, an event stream and an HTTP/2 server, each able to end
//! its connections cleanly (as a draining server does) or to break them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How a WebSocket server ends each socket after `after` echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEnd {
    /// A close frame with this code, sent instead of the next echo (the message read but not answered).
    Close(u16),
    /// The TCP connection closed without a close frame.
    Cut,
}

/// How an event stream ends after `after` ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseEnd {
    /// The response ends cleanly between two events.
    Clean,
    /// `event: shutdown`, then the end.
    Shutdown,
    /// Half an event, then the end of the response.
    MidEvent,
    /// Tick `after + 2` instead of `after + 1`, then the end.
    Skip,
}

/// How an HTTP/2 server treats its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Mode {
    /// A graceful GOAWAY after every `n` requests on a connection; each request is answered.
    GoAwayAfter(u32),
    /// Every stream is reset with INTERNAL_ERROR.
    Reset,
    /// The TCP connection is closed without GOAWAY after every `n` requests on it.
    CutAfter(u32),
}

/// A running server; dropping it stops accepting.
pub struct StreamServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen<F, Fut>(serve: F) -> StreamServer
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    });
    StreamServer { addr, task }
}

impl StreamServer {
    /// A WebSocket echo that ends each socket as `end` says after `after` echoes.
    pub async fn websocket(after: u32, end: WsEnd) -> StreamServer {
        listen(move |stream| async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let mut echoed = 0;
            while let Some(Ok(msg)) = ws.next().await {
                if !matches!(msg, Message::Binary(_) | Message::Text(_)) {
                    continue;
                }
                if echoed == after {
                    match end {
                        WsEnd::Close(code) => {
                            let frame = CloseFrame {
                                code: CloseCode::from(code),
                                reason: "test".into(),
                            };
                            let _ = ws.send(Message::Close(Some(frame))).await;
                            return;
                        }
                        WsEnd::Cut => return,
                    }
                }
                if ws.send(msg).await.is_err() {
                    return;
                }
                echoed += 1;
            }
        })
        .await
    }

    /// An event stream of `after` ticks, ended as `end` says.
    pub async fn events(after: u64, end: SseEnd) -> StreamServer {
        listen(move |stream| async move {
            let service = service_fn(move |_req: Request<Incoming>| async move {
                let mut chunks: Vec<String> = (1..=after)
                    .map(|n| format!("data: tick {n} test\n\n"))
                    .collect();
                match end {
                    SseEnd::Clean => {}
                    SseEnd::Shutdown => chunks.push("event: shutdown\ndata: bye\n\n".into()),
                    SseEnd::MidEvent => chunks.push("data: tick".into()),
                    SseEnd::Skip => chunks.push(format!("data: tick {} test\n\n", after + 2)),
                }
                let frames = futures_util::stream::iter(chunks).then(|chunk| async move {
                    // Paced a little, so that events arrive one by one.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, Infallible>(Frame::data(Bytes::from(chunk)))
                });
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .header("x-instance", "events")
                        .body(StreamBody::new(frames))
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        })
        .await
    }

    /// An HTTP/2 server: `GET /` says Hello, `POST /echo` echoes; connections end as `mode` says.
    pub async fn h2(mode: H2Mode) -> StreamServer {
        listen(move |stream| async move {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            let mut served = 0;
            while let Some(Ok((request, mut respond))) = conn.accept().await {
                served += 1;
                match mode {
                    H2Mode::Reset => {
                        respond.send_reset(h2::Reason::INTERNAL_ERROR);
                        continue;
                    }
                    H2Mode::CutAfter(n) if served > n => return,
                    _ => {}
                }
                tokio::spawn(async move {
                    let echo = request.uri().path() == "/echo";
                    let mut body = request.into_body();
                    let mut got = Vec::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        got.extend_from_slice(&chunk);
                    }
                    let payload = if echo {
                        Bytes::from(got)
                    } else {
                        Bytes::from_static(b"Hello over h2\n")
                    };
                    let response = Response::builder()
                        .status(StatusCode::OK)
                        .header("content-length", payload.len())
                        .header("x-instance", "h2")
                        .body(())
                        .unwrap();
                    if let Ok(mut tx) = respond.send_response(response, false) {
                        let _ = tx.send_data(payload, true);
                    }
                });
                if let H2Mode::GoAwayAfter(n) = mode
                    && served == n
                {
                    conn.graceful_shutdown();
                }
            }
        })
        .await
    }
}
