//! HTTP/1.1 to upstream members, driven by the task of the request it
//! carries: the request head and body are written and the response read
//! on the connection the request holds, with no connection task, no
//! channel between tasks and no wakeup of another task per request. The
//! response body is read from the connection as the client's side asks
//! for it, and the rest of a request body still being sent (a member that
//! answers before it has read the whole upload, or echoes it as it comes)
//! is sent from there too.
//!
//! A connection carries one exchange at a time and is reused only after a
//! clean one: the request sent whole, the response read to its framed end,
//! nothing more received, and neither side asked to close. Between two
//! exchanges it belongs to its member's pool (`upstream`), which asks
//! [`Conn::is_dead`] before reusing it.
//!
//! Heads are parsed by `httparse`; message framing follows RFC 9112: no
//! body after HEAD, 1xx, 204 and 304; chunked when the last transfer coding
//! says so; otherwise a valid `Content-Length`; otherwise to the end of the
//! connection. A `101` hands the connection over as [`Upgraded`]. Every
//! length a member can send is bounded (head size, header count, chunk
//! line); an invalid message is an error, never a panic.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::client::TlsStream;

use crate::upstream::{BoxError, ReqBody};

/// How much is read from a member at a time, at first.
const READ_CHUNK: usize = 8 * 1024;
/// The most a read from a member asks for.
const MAX_READ: usize = 128 * 1024;
/// The largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers in a response head, or trailers after a chunked body.
const MAX_HEADERS: usize = 100;
/// Request body frames up to this size are copied next to the head (one
/// write for a small request); larger ones are written from where they are.
const COPY_LIMIT: usize = 16 * 1024;

/// A connection's transport: plain TCP, or TLS to an HTTPS member.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection to a member, with what it has read and not yet used.
pub(crate) struct Conn {
    io: Io,
    read: BytesMut,
    /// How much the next read asks for at least.
    read_size: usize,
    /// What is to be written, from `written` on (the request head and
    /// small body frames); kept across exchanges.
    write: Vec<u8>,
    written: usize,
    /// The timer of the exchanges' deadlines (see [`Conn::poll_deadline`]).
    timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("tls", &matches!(self.io, Io::Tls(_)))
            .field("buffered", &self.read.len())
            .finish_non_exhaustive()
    }
}

/// Why an exchange broke before a response head arrived.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Nothing of the request reached the connection, and its body was not
    /// touched: it may be sent elsewhere, whatever its method.
    NotSent(io::Error),
    /// The client's request body failed (its fault, recorded by its body).
    Client(BoxError),
    /// The member broke the exchange: closed, reset, or sent no valid
    /// response head.
    Upstream(io::Error),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::NotSent(e) => write!(f, "request not sent: {e}"),
            ExchangeError::Client(e) => write!(f, "the client's request body failed: {e}"),
            ExchangeError::Upstream(e) => e.fmt(f),
        }
    }
}

impl Conn {
    /// Boxed: a connection moves between its pool and the requests it
    /// carries, as a pointer.
    pub(crate) fn new(io: Io) -> Box<Conn> {
        Box::new(Conn {
            io,
            read: BytesMut::new(),
            read_size: READ_CHUNK,
            write: Vec::new(),
            written: 0,
            timer: None,
        })
    }

    /// Ready once `at` has passed; until then the task is woken when it
    /// does. One timer serves every exchange of the connection and is
    /// moved only when it would fire too late: deadlines move later from
    /// one exchange to the next, so an exchange usually registers no timer
    /// of its own, and a timer that fires before the deadline it now keeps
    /// is moved on to it.
    pub(crate) fn poll_deadline(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            // It fired at its deadline, never later than `at`.
            if timer.deadline() == at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(at);
        }
    }

    /// Whether the member closed the connection (or sent something nobody
    /// asked for) while it was idle, as far as the connection has been told
    /// without waiting: a closed one must not carry a request.
    pub(crate) fn is_dead(&mut self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // TLS records that are not data (a session ticket) are consumed
        // here and leave the connection usable.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_ready()
    }

    /// Whether nothing was received past what was used.
    pub(crate) fn is_drained(&self) -> bool {
        self.read.is_empty()
    }

    /// Reads more of what the member sends; `Ok(0)`: it closed.
    /// A read that fills all the room there was doubles the next one's,
    /// up to [`MAX_READ`]: a large body goes in few large reads, a small
    /// answer in one small buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let room = self.read.capacity() - self.read.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Between exchanges: buffers grown by a large body are let go (an
    /// idle connection keeps small ones at most).
    pub(crate) fn idle(&mut self) {
        if self.read_size > READ_CHUNK {
            self.read_size = READ_CHUNK;
            self.read = BytesMut::new();
        }
        if self.write.capacity() > 2 * COPY_LIMIT {
            self.write = Vec::new();
        }
    }

    /// Writes out what is buffered, and the frame `big` after it.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        big: &mut Option<Bytes>,
        accepted: &mut bool,
    ) -> Poll<io::Result<()>> {
        loop {
            let head = &self.write[self.written..];
            let n = match big.as_ref().filter(|b| !b.is_empty()) {
                None if head.is_empty() => break,
                None => ready!(Pin::new(&mut self.io).poll_write(cx, head))?,
                Some(b) if head.is_empty() => ready!(Pin::new(&mut self.io).poll_write(cx, b))?,
                Some(b) => {
                    let bufs = [io::IoSlice::new(head), io::IoSlice::new(b)];
                    ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &bufs))?
                }
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *accepted = true;
            let from_head = n.min(head.len());
            self.written += from_head;
            if let Some(b) = big.as_mut() {
                b.advance(n - from_head);
            }
        }
        self.write.clear();
        self.written = 0;
        *big = None;
        Poll::Ready(Ok(()))
    }

    /// The connection after a `101`: what the member sends next, already
    /// read or not, belongs to the new protocol.
    pub(crate) fn upgrade(self) -> Upgraded {
        let this = self;
        Upgraded {
            io: this.io,
            read: this.read,
        }
    }
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    Chunked,
}

/// The request side of one exchange, until its body has been sent.
pub(crate) struct Outgoing {
    body: Option<ReqBody>,
    framing: Framing,
    /// A large body frame, written after the buffered bytes.
    big: Option<Bytes>,
    /// Whether the body was polled.
    started: bool,
    /// A large chunk went out without its closing CRLF.
    crlf_owed: bool,
    /// Whether any byte was accepted by the connection.
    accepted: bool,
    /// Written and flushed whole.
    done: bool,
    /// Sending failed: the member will not get the rest.
    failed: bool,
}

/// Why sending a request body stopped.
pub(crate) enum SendError {
    /// The client's body failed.
    Client(BoxError),
    Io(io::Error),
}

impl Outgoing {
    /// Starts an exchange on `conn`: `parts`' head is encoded with the
    /// framing of `body` (nothing is written yet).
    pub(crate) fn start(conn: &mut Conn, parts: &http::request::Parts, body: ReqBody) -> Outgoing {
        let framing = if body.is_end_stream() {
            Framing::Empty
        } else {
            match body.size_hint().exact() {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        encode_head(&mut conn.write, parts, framing);
        conn.written = 0;
        Outgoing {
            body: (framing != Framing::Empty).then_some(body),
            framing,
            big: None,
            crlf_owed: false,
            accepted: false,
            started: false,
            done: false,
            failed: false,
        }
    }

    /// Whether the whole request was sent.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether nothing of the request reached the connection yet.
    pub(crate) fn untouched(&self) -> bool {
        !self.started && !self.accepted
    }

    /// Takes back the request body when nothing was sent.
    pub(crate) fn into_body(self) -> ReqBody {
        self.body.unwrap_or_else(crate::empty_body)
    }

    /// Sends as much of the request as can go now.
    pub(crate) fn poll_send(
        &mut self,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        if self.failed {
            return Poll::Ready(Err(SendError::Io(io::ErrorKind::BrokenPipe.into())));
        }
        let sent = self.poll_send_inner(conn, cx);
        match &sent {
            Poll::Ready(Ok(())) => self.done = true,
            Poll::Ready(Err(_)) => self.failed = true,
            Poll::Pending => {}
        }
        sent
    }

    fn poll_send_inner(
        &mut self,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        loop {
            // Takes what the body has ready, up to a write's worth.
            while self.big.is_none() && conn.write.len() - conn.written < COPY_LIMIT {
                let Some(body) = self.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(frame) => {
                        self.started = true;
                        self.encode_frame(conn, frame)?;
                    }
                }
            }
            if conn.write.len() == conn.written && self.big.is_none() {
                // Everything so far is written: the end, or the body has
                // nothing more yet.
                ready!(Pin::new(&mut conn.io).poll_flush(cx)).map_err(SendError::Io)?;
                return match self.body {
                    None => Poll::Ready(Ok(())),
                    Some(_) => Poll::Pending,
                };
            }
            ready!(conn.poll_drain(cx, &mut self.big, &mut self.accepted))
                .map_err(SendError::Io)?;
        }
    }

    fn encode_frame(
        &mut self,
        conn: &mut Conn,
        frame: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Result<(), SendError> {
        let out = &mut conn.write;
        match frame {
            None => {
                self.body = None;
                match self.framing {
                    Framing::Chunked => {
                        if std::mem::take(&mut self.crlf_owed) {
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    Framing::Length(0) | Framing::Empty => {}
                    Framing::Length(_) => {
                        return Err(SendError::Client(
                            "request body shorter than its length".into(),
                        ));
                    }
                }
            }
            Some(Err(e)) => {
                self.body = None;
                return Err(SendError::Client(e));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    match &mut self.framing {
                        Framing::Length(left) => {
                            let len = data.len() as u64;
                            if len > *left {
                                return Err(SendError::Client(
                                    "request body longer than its length".into(),
                                ));
                            }
                            *left -= len;
                        }
                        Framing::Chunked => {
                            if std::mem::take(&mut self.crlf_owed) {
                                out.extend_from_slice(b"\r\n");
                            }
                            let _ = write!(out, "{:x}\r\n", data.len());
                        }
                        Framing::Empty => return Ok(()),
                    }
                    let chunked = self.framing == Framing::Chunked;
                    if data.len() <= COPY_LIMIT {
                        out.extend_from_slice(&data);
                        if chunked {
                            out.extend_from_slice(b"\r\n");
                        }
                    } else {
                        // Written from where it is; a chunk's closing CRLF
                        // goes out in front of what follows it.
                        self.big = Some(data);
                        self.crlf_owed = chunked;
                    }
                }
                Err(frame) => {
                    // Trailers: sent after a chunked body's last chunk;
                    // a body framed by its length has nowhere to put them.
                    if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), self.framing)
                    {
                        self.body = None;
                        if std::mem::take(&mut self.crlf_owed) {
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n");
                        for (name, value) in &trailers {
                            out.extend_from_slice(name.as_str().as_bytes());
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(value.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                }
            },
        }
        Ok(())
    }
}

/// Writes the request head: its request line, its headers, and the
/// framing headers of its body.
fn encode_head(out: &mut Vec<u8>, parts: &http::request::Parts, framing: Framing) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            if framing == Framing::Chunked {
                continue;
            }
            has_length = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if !has_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Empty
            if !has_length
                && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, and how its body is framed.
pub(crate) struct Head {
    pub response: http::response::Parts,
    pub decoder: Decoder,
    /// The connection may carry another exchange after this one.
    pub keep_alive: bool,
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads the response head to `method`'s request; informational responses
/// (`100 Continue`, `103 Early Hints`) are read past. A `101` is returned
/// (the caller upgrades the connection). The head's headers go into
/// `spare` when there is one, cleared (a map whose room is used again),
/// taken only when a whole head has been read; into a new map otherwise.
pub(crate) fn poll_head(
    conn: &mut Conn,
    cx: &mut Context<'_>,
    method: &Method,
    mut spare: Option<&mut HeaderMap>,
) -> Poll<io::Result<Head>> {
    loop {
        if !conn.read.is_empty() {
            match parse_head(conn, method, spare.as_deref_mut())? {
                Some(head)
                    if head.response.status.is_informational()
                        && head.response.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue;
                }
                Some(head) => return Poll::Ready(Ok(head)),
                None if conn.read.len() >= MAX_HEAD => {
                    return Poll::Ready(Err(invalid("response head too large")));
                }
                None => {}
            }
        }
        if ready!(conn.poll_fill(cx))? == 0 {
            return Poll::Ready(Err(if conn.read.is_empty() {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the member closed the connection before responding",
                )
            } else {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the member closed the connection mid-head",
                )
            }));
        }
    }
}

/// Parses a complete head from the front of `conn.read`, consuming it;
/// `None`: not complete yet. The framing is found while the header map is
/// built, and hop-by-hop headers are left out of it (but in a `101`, whose
/// `Connection` and `Upgrade` the tunnel needs).
fn parse_head(
    conn: &mut Conn,
    method: &Method,
    spare: Option<&mut HeaderMap>,
) -> io::Result<Option<Head>> {
    // Where each header's name and value are in the head, found on the
    // borrowed bytes, then taken as slices of the frozen head (no copy).
    // Offsets fit: a head is at most `MAX_HEAD` bytes.
    let mut at = [(0u16, 0u16, 0u16, 0u16); MAX_HEADERS];
    let (len, status, version, count) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let base = conn.read.as_ptr() as usize;
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &conn.read,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(invalid("too many response headers"));
            }
            Err(_) => return Err(invalid("invalid response head")),
        };
        if len > MAX_HEAD {
            return Err(invalid("response head too large"));
        }
        let status = response
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| invalid("invalid response status"))?;
        let version = match response.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        let count = response.headers.len();
        for (slot, h) in at.iter_mut().zip(response.headers.iter()) {
            let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u16;
            *slot = (
                offset(h.name.as_bytes()),
                h.name.len() as u16,
                offset(h.value),
                h.value.len() as u16,
            );
        }
        (len, status, version, count)
    };
    let raw = conn.read.split_to(len).freeze();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut keep_alive = version == Version::HTTP_11;
    // The last `Transfer-Encoding` says whether chunked is the final coding.
    let mut chunked: Option<bool> = None;
    let mut length: Option<Result<u64, ()>> = None;
    // `Connection` values that name other headers to leave out (rare).
    let mut naming: Vec<HeaderValue> = Vec::new();
    let mut headers = match spare {
        Some(spare) => {
            let mut map = std::mem::take(spare);
            map.clear();
            map.reserve(count);
            map
        }
        None => HeaderMap::with_capacity(count),
    };
    for &(name, name_len, value, value_len) in &at[..count] {
        let (name, value) = (usize::from(name), usize::from(value));
        let name = &raw[name..name + usize::from(name_len)];
        let hop_by_hop = is_hop_by_hop(name);
        let name =
            HeaderName::from_bytes(name).map_err(|_| invalid("invalid response header name"))?;
        let value = raw.slice(value..value + usize::from(value_len));
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| invalid("invalid response header value"))?;
        if name == header::CONNECTION {
            let mut others = false;
            for token in value
                .as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
            {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if !token.is_empty()
                    && !token.eq_ignore_ascii_case(b"keep-alive")
                    && !token.eq_ignore_ascii_case(b"upgrade")
                {
                    others = true;
                }
            }
            if others && !switching {
                naming.push(value.clone());
            }
        } else if name == header::TRANSFER_ENCODING {
            chunked = Some(last_token_is(value.as_bytes(), b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            length = match (length, content_length(value.as_bytes())) {
                (None | Some(Ok(_)), None) | (Some(Err(())), _) => Some(Err(())),
                (None, Some(n)) => Some(Ok(n)),
                (Some(Ok(m)), Some(n)) => Some(if m == n { Ok(n) } else { Err(()) }),
            };
        }
        if switching || !hop_by_hop {
            headers.append(name, value);
        }
    }
    for value in &naming {
        crate::headers::remove_named(&mut headers, value, false);
    }

    let decoder = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Decoder::Done
    } else if let Some(chunked) = chunked {
        if length.is_some() {
            // Both: the coding wins, the length goes, and the connection
            // is not trusted after.
            keep_alive = false;
            headers.remove(header::CONTENT_LENGTH);
        }
        if chunked {
            Decoder::Chunked(Chunk::Size)
        } else {
            keep_alive = false;
            Decoder::Eof
        }
    } else if let Some(length) = length {
        match length {
            Ok(0) => Decoder::Done,
            Ok(n) => Decoder::Length(n),
            Err(()) => return Err(invalid("invalid Content-Length in the response")),
        }
    } else if switching {
        Decoder::Done
    } else {
        keep_alive = false;
        Decoder::Eof
    };
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let (response, ()) = response.into_parts();
    Ok(Some(Head {
        response,
        decoder,
        keep_alive,
    }))
}

/// Whether a header name, as received, is a hop-by-hop header (or
/// `Upgrade`): by its length first, so that most names are never compared.
fn is_hop_by_hop(name: &[u8]) -> bool {
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        _ => return false,
    };
    candidates.iter().any(|c| name.eq_ignore_ascii_case(c))
}

fn last_token_is(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

/// One `Content-Length` value: the same unsigned number however often it
/// is listed.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailers, then an empty line.
    Trailers,
}

/// How much of a response body is still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the member closes the connection.
    Eof,
    /// Nothing more.
    Done,
}

impl Decoder {
    pub(crate) fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match *self {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Chunked(_) | Decoder::Eof => SizeHint::default(),
        }
    }

    /// The next frame of the body from `conn`; `None` at its end.
    pub(crate) fn poll_frame(
        &mut self,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            match *self {
                Decoder::Done => return Poll::Ready(None),
                Decoder::Length(left) => {
                    if conn.read.is_empty() && ready!(fill(conn, cx))? == 0 {
                        return Poll::Ready(Some(Err(truncated())));
                    }
                    let n = (conn.read.len() as u64).min(left);
                    let data = conn.read.split_to(n as usize).freeze();
                    *self = match left - n {
                        0 => Decoder::Done,
                        left => Decoder::Length(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoder::Eof => {
                    if conn.read.is_empty() && ready!(fill(conn, cx))? == 0 {
                        *self = Decoder::Done;
                        return Poll::Ready(None);
                    }
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoder::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&conn.read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        conn.read.advance(used);
                        *self = Decoder::Chunked(match size {
                            0 => Chunk::Trailers,
                            n => Chunk::Data(n),
                        });
                    }
                    Ok(httparse::Status::Partial) if conn.read.len() < MAX_HEAD => {
                        if ready!(fill(conn, cx))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                    }
                    _ => return Poll::Ready(Some(Err(invalid("invalid chunk size line")))),
                },
                Decoder::Chunked(Chunk::Data(left)) => {
                    if conn.read.is_empty() && ready!(fill(conn, cx))? == 0 {
                        return Poll::Ready(Some(Err(truncated())));
                    }
                    let n = (conn.read.len() as u64).min(left);
                    let data = conn.read.split_to(n as usize).freeze();
                    *self = Decoder::Chunked(match left - n {
                        0 => Chunk::DataEnd,
                        left => Chunk::Data(left),
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoder::Chunked(Chunk::DataEnd) => {
                    if conn.read.len() < 2 {
                        if ready!(fill(conn, cx))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                        continue;
                    }
                    if &conn.read[..2] != b"\r\n" {
                        return Poll::Ready(Some(Err(invalid("invalid chunk end"))));
                    }
                    conn.read.advance(2);
                    *self = Decoder::Chunked(Chunk::Size);
                }
                Decoder::Chunked(Chunk::Trailers) => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&conn.read, &mut slots) {
                        Ok(httparse::Status::Complete((used, parsed))) => {
                            let mut trailers = HeaderMap::new();
                            for h in parsed {
                                if let (Ok(name), Ok(value)) = (
                                    HeaderName::from_bytes(h.name.as_bytes()),
                                    HeaderValue::from_bytes(h.value),
                                ) {
                                    trailers.append(name, value);
                                }
                            }
                            conn.read.advance(used);
                            *self = Decoder::Done;
                            if !trailers.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                            }
                            return Poll::Ready(None);
                        }
                        Ok(httparse::Status::Partial) if conn.read.len() < MAX_HEAD => {
                            if ready!(fill(conn, cx))? == 0 {
                                return Poll::Ready(Some(Err(truncated())));
                            }
                        }
                        _ => return Poll::Ready(Some(Err(invalid("invalid trailers")))),
                    }
                }
            }
        }
    }
}

fn fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    conn.poll_fill(cx)
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the member closed the connection mid-body",
    )
}

/// A connection that switched protocols: the bytes already read from the
/// member come first.
pub(crate) struct Upgraded {
    io: Io,
    read: BytesMut,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
