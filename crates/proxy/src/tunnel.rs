//! Upgraded connections (WebSocket): after both sides agreed to switch
//! protocols, bytes are copied both ways until either side closes. Tunnels
//! are counted so a stopping proxy waits for them.
//!
//! When the proxy starts draining ([`Tunnels::go_away`]), or the tunnel's
//! member leaves the config (no request goes to it any more, and a deploy
//! waits for what it serves before stopping it), the tunnel ends its
//! WebSocket the way the protocol announces an end: in each direction,
//! at the first frame boundary ([`ws_frames`](crate::ws_frames)), it stops
//! forwarding and sends a close frame with code 1001 (going away) — to the
//! client, and masked to the upstream — then reads and discards what that
//! side still sends until its own close frame answers (or it closes, or
//! [`CLOSE_LINGER`] passes), so that closing the socket cannot reset data
//! still on its way. A direction that already carried a close frame gets no
//! second one. A tunnel still inside a frame at the drain deadline, or
//! whose bytes are not WebSocket frames, is cut then. A tunnel of another
//! protocol (its `Upgrade` is not `websocket`) is only copied: nothing is
//! ever written into a protocol whose framing the proxy does not know. The
//! same signal ends event streams between two events (`sse`).

use std::io;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use handoff::Drain;

use crate::h1::Upgraded;
use crate::ws_frames::{self, Frames};

/// How long a tunnel that sent its close frame waits for the answer
/// before it closes the connection anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The copy buffer of each direction.
const BUFFER: usize = 8 * 1024;

/// The live tunnels of the proxy, and the drain signal of every long-lived
/// stream.
#[derive(Debug)]
pub(crate) struct Tunnels {
    drain: Drain,
    going_away: watch::Sender<bool>,
    close: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            drain: Drain::new(),
            going_away: watch::Sender::new(false),
            close: watch::Sender::new(false),
        }
    }
}

/// Which way bytes go: the side written to is the one told to go away.
#[derive(Debug, Clone, Copy)]
enum Toward {
    Upstream,
    Client,
}

impl Tunnels {
    /// Joins the client's and the upstream's upgraded connections. A
    /// WebSocket is closed when the proxy drains or when `member` (the
    /// member's [`leaving`](crate::upstream::MemberConns::leaving)) turns
    /// true; another protocol, whose framing the proxy does not know, is
    /// only copied (and cut at the drain deadline).
    pub(crate) fn spawn(
        &self,
        client: OnUpgrade,
        upstream: Upgraded,
        protocol: Protocol,
        member: Option<watch::Receiver<bool>>,
    ) {
        let guard = self.drain.guard();
        let mut close = self.close.subscribe();
        let going_away = match protocol {
            Protocol::WebSocket => self.go_away_signal(member),
            Protocol::Other => GoAway::default(),
        };
        tokio::spawn(async move {
            let _guard = guard;
            let client = match client.await {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let (from_client, to_client) = tokio::io::split(TokioIo::new(client));
            let (from_upstream, to_upstream) = tokio::io::split(upstream);
            let both = async {
                tokio::try_join!(
                    pump(
                        from_client,
                        to_upstream,
                        Toward::Upstream,
                        going_away.clone()
                    ),
                    pump(from_upstream, to_client, Toward::Client, going_away),
                )
            };
            tokio::select! {
                r = both => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                }
                _ = close.wait_for(|c| *c) => tracing::debug!("tunnel closed by the drain deadline"),
            }
        });
    }

    /// Tells every tunnel to close its WebSocket, and every event stream to
    /// end after its current event; tunnels opened from now on close at once.
    pub(crate) fn go_away(&self) {
        self.going_away.send_replace(true);
    }

    /// What ends a stream to a member: the proxy's drain, or `member`
    /// turning true.
    pub(crate) fn go_away_signal(&self, member: Option<watch::Receiver<bool>>) -> GoAway {
        GoAway {
            proxy: Some(self.going_away.subscribe()),
            member,
        }
    }

    /// Closes every tunnel now.
    pub(crate) fn close(&self) {
        self.close.send_replace(true);
    }

    /// How many tunnels are open.
    pub(crate) fn active(&self) -> usize {
        self.drain.active()
    }

    /// Waits for the tunnels to end by themselves until `deadline`, then
    /// closes what is left.
    pub(crate) async fn drain(&self, deadline: tokio::time::Instant) {
        if let handoff::DrainOutcome::DeadlineReached { remaining } =
            self.drain.wait(deadline).await
        {
            tracing::warn!(remaining, "closing tunnels at the drain deadline");
            self.close();
        }
    }
}

/// What an upgraded connection speaks, from the client's `Upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    WebSocket,
    /// A protocol whose framing the proxy does not know: nothing may be
    /// written into it.
    Other,
}

impl Protocol {
    /// The protocol a request's `Upgrade` header asks for.
    pub(crate) fn of(headers: &http::HeaderMap) -> Protocol {
        let websocket = headers
            .get_all(http::header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
        if websocket {
            Protocol::WebSocket
        } else {
            Protocol::Other
        }
    }
}

/// Tells one long-lived stream to end: the proxy drains, or the stream's
/// member left the config. The default never fires.
#[derive(Debug, Clone, Default)]
pub(crate) struct GoAway {
    proxy: Option<watch::Receiver<bool>>,
    member: Option<watch::Receiver<bool>>,
}

impl GoAway {
    /// Whether the stream is to end, from the signals' values as they are
    /// now: a watch's value changes before its waiters are woken (one
    /// waiter may be woken, and act, well before another), so a stream can
    /// be told to end before [`GoAway::wait`] says it.
    fn is_set(&self) -> bool {
        let set = |rx: &Option<watch::Receiver<bool>>| rx.as_ref().is_some_and(|rx| *rx.borrow());
        set(&self.proxy) || set(&self.member)
    }

    /// Resolves once the stream is to end.
    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            () = turns_true(self.proxy.as_mut()) => {}
            () = turns_true(self.member.as_mut()) => {}
        }
    }
}

/// Resolves once `rx` is true; never if there is none, or if its sender is
/// gone without.
async fn turns_true(rx: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = rx
        && rx.wait_for(|g| *g).await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// Copies `src` to `dst`; on the drain signal ends the WebSocket in this
/// direction (see the module docs). An end of `src` is passed on as one of
/// `dst` — after a close frame when the signal is set by then, at a frame
/// boundary, whether or not its wake-up has come.
async fn pump<R, W>(mut src: R, mut dst: W, toward: Toward, mut go_away: GoAway) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    let mut frames = Frames::default();
    let mut away = false;
    let held = loop {
        if away && frames.at_boundary() {
            break 0..0;
        }
        let n = tokio::select! {
            biased;
            () = go_away.wait(), if !away => {
                away = true;
                continue;
            }
            read = src.read(&mut buf) => read?,
        };
        // The signal as it is now, not only as its wake-up says: the other
        // direction may have seen it first and sent its close frame, which
        // the peer answered by closing — an end read here before this
        // direction's wake-up came, and passed on bare, would be the
        // stream's only end (EOF where a close frame was owed).
        if !away && go_away.is_set() {
            away = true;
        }
        if n == 0 {
            if away && frames.at_boundary() {
                break 0..0;
            }
            dst.shutdown().await?;
            return Ok(());
        }
        // Draining: only up to the end of the frame in progress.
        let took = frames.advance(&buf[..n], away);
        dst.write_all(&buf[..took]).await?;
        if away && frames.at_boundary() {
            break took..n;
        }
    };
    if !frames.closed() {
        let mask = match toward {
            Toward::Upstream => Some(fastrand::u32(..).to_ne_bytes()),
            Toward::Client => None,
        };
        dst.write_all(&ws_frames::going_away(mask)).await?;
    }
    dst.flush().await?;
    // What the source still sends is for a WebSocket that is closing: read
    // up to its own close frame, so that nothing is left unread when the
    // socket closes (which would reset the connection).
    frames.advance(&buf[held], false);
    let linger = async {
        while !frames.closed() {
            let n = src.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            frames.advance(&buf[..n], false);
        }
        dst.shutdown().await
    };
    match tokio::time::timeout(CLOSE_LINGER, linger).await {
        Ok(done) => done,
        Err(_) => {
            tracing::debug!(?toward, "no close frame in answer: closing anyway");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// A tunnel direction between in-memory pipes: what `dst` receives.
    async fn drained(input: &[&[u8]], toward: Toward, answer: &[u8]) -> Vec<u8> {
        let (mut feed, src) = duplex(1 << 20);
        let (dst, mut out) = duplex(1 << 20);
        let tunnels = Tunnels::default();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(pump(src, dst, toward, tunnels.go_away_signal(Some(rx))));
        let (first, rest) = input.split_first().unwrap();
        feed.write_all(first).await.unwrap();
        let mut got = vec![0u8; first.len()];
        out.read_exact(&mut got).await.unwrap();
        tx.send_replace(true);
        for part in rest {
            feed.write_all(part).await.unwrap();
        }
        feed.write_all(answer).await.unwrap();
        task.await.unwrap().unwrap();
        let mut all = got;
        out.read_to_end(&mut all).await.unwrap();
        all
    }

    fn text(mask: bool, payload: &[u8], fin: bool) -> Vec<u8> {
        let mut f = vec![if fin { 0x81 } else { 0x01 }, payload.len() as u8];
        if mask {
            f[1] |= 0x80;
            f.extend_from_slice(&[0; 4]);
        }
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn draining_finishes_the_frame_then_says_going_away() {
        let first = text(false, b"hello", true);
        let second = text(false, b"world", true);
        // The drain starts inside `second`: it is finished, then the close.
        let (head, tail) = second.split_at(3);
        let mut after = tail.to_vec();
        after.extend(text(false, b"never sent", true));
        let answer = ws_frames::going_away(Some([1, 2, 3, 4]));
        let got = drained(
            &[&[&first[..], head].concat(), &after],
            Toward::Client,
            &answer,
        )
        .await;
        let mut want = [&first[..], &second[..]].concat();
        want.extend(ws_frames::going_away(None));
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn the_upstream_gets_a_masked_close() {
        let first = text(true, b"hi", true);
        let got = drained(&[&first], Toward::Upstream, &ws_frames::going_away(None)).await;
        assert_eq!(&got[..first.len()], &first[..]);
        let close = &got[first.len()..];
        assert_eq!(close.len(), 8);
        assert_eq!(close[..2], [0x88, 0x82]);
        let code = [close[6] ^ close[2], close[7] ^ close[3]];
        assert_eq!(u16::from_be_bytes(code), 1001);
    }

    #[test]
    fn only_a_websocket_is_closed_by_the_proxy() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Protocol::of(&h), Protocol::Other);
        h.insert(http::header::UPGRADE, "WebSocket".parse().unwrap());
        assert_eq!(Protocol::of(&h), Protocol::WebSocket);
        h.insert(http::header::UPGRADE, "h2c, websocket".parse().unwrap());
        assert_eq!(Protocol::of(&h), Protocol::WebSocket);
        h.insert(http::header::UPGRADE, "echo".parse().unwrap());
        assert_eq!(Protocol::of(&h), Protocol::Other);
    }

    #[tokio::test]
    async fn another_protocol_is_only_copied() {
        let (mut feed, src) = duplex(1024);
        let (dst, mut out) = duplex(1024);
        let task = tokio::spawn(pump(src, dst, Toward::Client, GoAway::default()));
        feed.write_all(b"\x81\x7fnot a frame").await.unwrap();
        drop(feed);
        task.await.unwrap().unwrap();
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"\x81\x7fnot a frame");
    }

    /// The signal turns true and the source ends before this direction's
    /// wake-up for it comes — the other direction saw it first and sent its
    /// close frame, and the peer answered by closing the connection: the
    /// end is still announced with a close frame, not passed on bare.
    #[tokio::test]
    async fn an_end_read_before_the_signal_s_wake_up_still_gets_the_close() {
        /// At its end; reading it turns the signal true first, as the
        /// member's leaving does while this direction waits.
        struct EndsAsSignalled {
            signal: watch::Sender<bool>,
        }
        impl AsyncRead for EndsAsSignalled {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                self.signal.send_replace(true);
                std::task::Poll::Ready(Ok(()))
            }
        }
        let (signal, rx) = watch::channel(false);
        let (dst, mut out) = duplex(1024);
        let go_away = Tunnels::default().go_away_signal(Some(rx));
        let src = EndsAsSignalled { signal };
        pump(src, dst, Toward::Client, go_away).await.unwrap();
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, ws_frames::going_away(None));
    }

    #[tokio::test]
    async fn a_close_already_sent_is_not_sent_again() {
        let close = [0x88, 0x02, 0x03, 0xe8];
        let got = drained(&[&close], Toward::Client, &[]).await;
        assert_eq!(got, close);
    }

    #[tokio::test]
    async fn a_close_between_fragments_of_a_message() {
        let start = text(false, b"part one", false);
        let got = drained(&[&start], Toward::Client, &[0x88, 0]).await;
        let mut want = start.clone();
        want.extend(ws_frames::going_away(None));
        assert_eq!(got, want);
    }
}
