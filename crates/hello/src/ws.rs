//! `GET /ws`: a WebSocket echo. When the server starts draining, each open
//! socket is closed cleanly with code 1001 ("going away"), so clients
//! reconnect to the next generation instead of being cut at the deadline.

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use handoff::http::Draining;

use crate::routes::App;

/// Close code for "the server is going away" (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;

pub async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    // The upgraded connection is invisible to the server's drain: hold a
    // guard so the process does not exit before the close frame is sent.
    let guard = app.draining.guard();
    upgrade.on_upgrade(move |socket| async move {
        echo(socket, app.draining).await;
        drop(guard);
    })
}

async fn echo(mut socket: WebSocket, draining: Draining) {
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if socket.send(msg).await.is_err() {
                        return;
                    }
                }
                // Pings are answered by the library, and so is a close: its
                // answer is sent by the next read, which then ends the socket.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => {}
                Some(Err(_)) | None => return,
            },
            () = draining.wait() => {
                let frame = CloseFrame { code: GOING_AWAY, reason: "server draining".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}
