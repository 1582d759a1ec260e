//! The server side of TLS on one connection: rustls's unbuffered API under
//! an `AsyncRead + AsyncWrite` stream whose buffers this stream owns.
//!
//! Why not tokio-rustls: over rustls's buffered connection, every session
//! keeps a 4 KiB read buffer from its first read to its end, zeroed and so
//! resident, idle or not. Here the buffers (TLS bytes read and not yet
//! processed, encrypted bytes not yet sent, decrypted bytes not yet read)
//! are freed whenever the connection waits for its peer with nothing in
//! them: an idle TLS connection holds rustls's session and no buffer.
//!
//! Reading: bytes from the socket go into `incoming`; rustls processes them
//! in place and hands over each record's plaintext, which goes straight into
//! the reader's buffer (what does not fit waits in `plain`). Handshake and
//! post-handshake messages rustls wants to send (session tickets, key
//! updates, alerts) are encoded into `outgoing` and sent before anything
//! else. Writing: plaintext is encrypted into `outgoing` and written out;
//! a write returns once its bytes are encrypted, and `poll_flush` waits
//! until they have all reached the socket.
//!
//! The peer's close: close_notify ends reading (EOF); a socket that ends
//! without it is an `UnexpectedEof` error once the decrypted bytes are read,
//! as rustls's buffered reader reports it.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::server::{Acceptor, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one read from the socket asks room for: a whole record of the
/// largest size (header, 16 KiB of payload, the most expansion allowed).
const READ_SIZE: usize = 5 + 16_384 + 256;

/// Room in `incoming` from which a read goes straight into it.
const DIRECT_READ: usize = 4096;

/// Encrypted bytes the socket has not taken beyond which reading waits.
const MAX_UNSENT: usize = 64 * 1024;

/// The scratch buffer on the stack a small write is encrypted into (a
/// response's head and a small body), so that it needs no allocation.
const SCRATCH: usize = 2048;

/// The most plaintext encrypted per write (rustls splits it into records).
const WRITE_CHUNK: usize = 64 * 1024;

/// A TLS connection, server side, once its handshake has completed.
pub struct TlsStream<I> {
    io: I,
    conn: UnbufferedServerConnection,
    /// TLS bytes read and not processed yet: part of a record between reads.
    incoming: BytesMut,
    /// Decrypted bytes not read yet.
    plain: BytesMut,
    /// Encrypted bytes not written to the socket yet.
    outgoing: BytesMut,
    /// The server name the client asked for (SNI).
    sni: Option<Box<str>>,
    /// The peer's close_notify came: reading ends.
    peer_closed: bool,
    /// The socket reached its end.
    eof: bool,
    /// close_notify is queued (or sent).
    close_queued: bool,
    /// rustls reported an error (its alert is queued): the connection is
    /// over, and rustls is not asked again (it would process the same bytes
    /// again).
    failed: bool,
}

impl<I> std::fmt::Debug for TlsStream<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sni", &self.sni)
            .field("incoming", &self.incoming.len())
            .field("plain", &self.plain.len())
            .field("outgoing", &self.outgoing.len())
            .field("peer_closed", &self.peer_closed)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// What one turn of rustls's state machine left to do.
enum Turn {
    /// Something changed (bytes encoded, plaintext taken): turn again.
    Again,
    /// rustls needs more bytes from the peer.
    NeedBytes,
    /// Application data may be written, and nothing else is pending; for a
    /// write, how much of it was encrypted into `outgoing`.
    Writable(usize),
    /// This much of a write was encrypted into its scratch buffer, making
    /// that many bytes of it.
    InScratch(usize, usize),
    /// Both sides sent close_notify.
    Closed,
}

/// What a turn is for.
enum Want<'a, 'b> {
    /// Completing the handshake.
    Handshake,
    /// Reading: plaintext goes into this buffer first.
    Read(&'a mut ReadBuf<'b>),
    /// Writing this plaintext; encrypted into the scratch buffer (on the
    /// caller's stack) when it fits and nothing waits in `outgoing`.
    Write(&'a [u8], &'a mut [u8]),
    /// Queueing close_notify.
    Close,
}

impl<I: AsyncRead + AsyncWrite + Unpin> TlsStream<I> {
    /// Runs the server side of a handshake over `io` with `config`.
    pub async fn accept(io: I, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut stream = TlsStream {
            io,
            conn,
            incoming: BytesMut::new(),
            plain: BytesMut::new(),
            outgoing: BytesMut::new(),
            sni: None,
            peer_closed: false,
            eof: false,
            close_queued: false,
            failed: false,
        };
        let (mut acceptor, mut fed) = (Acceptor::default(), 0);
        std::future::poll_fn(|cx| stream.poll_client_hello(cx, &mut acceptor, &mut fed)).await?;
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        stream.release();
        Ok(stream)
    }

    /// Reads until the ClientHello is whole, for its server name: rustls's
    /// unbuffered connection does not tell it, so an `Acceptor` is given a
    /// copy of the same bytes as they come (`fed` of them so far) and then
    /// dropped.
    fn poll_client_hello(
        &mut self,
        cx: &mut Context<'_>,
        acceptor: &mut Acceptor,
        fed: &mut usize,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.incoming.len() > *fed {
                let mut bytes = &self.incoming[*fed..];
                while !bytes.is_empty() {
                    if acceptor.read_tls(&mut bytes)? == 0 {
                        break;
                    }
                }
                *fed = self.incoming.len();
                match acceptor.accept() {
                    Ok(Some(accepted)) => {
                        self.sni = accepted.client_hello().server_name().map(Box::from);
                        return Poll::Ready(Ok(()));
                    }
                    Ok(None) => {}
                    // The connection itself will refuse the same bytes, with
                    // its alert.
                    Err(_) => return Poll::Ready(Ok(())),
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.turn(cx, Want::Handshake)? {
                Turn::Again => {}
                Turn::Writable(_) if !self.conn.is_handshaking() => {
                    ready!(self.poll_send(cx))?;
                    return Poll::Ready(Ok(()));
                }
                Turn::NeedBytes | Turn::Writable(_) | Turn::InScratch(..) => {
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "TLS handshake ended by the peer",
                        )));
                    }
                }
                Turn::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
            }
        }
    }
}

impl<I> TlsStream<I> {
    /// The socket.
    pub fn io(&self) -> &I {
        &self.io
    }

    /// The server name the client asked for (SNI).
    pub fn server_name(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// Whether a read would return at once without the socket: decrypted
    /// bytes wait, or the peer's close came.
    pub fn has_buffered_read(&self) -> bool {
        !self.plain.is_empty() || self.peer_closed || self.eof
    }

    /// Frees the buffers that are empty: the connection waits for its peer.
    pub fn release(&mut self) {
        for buf in [&mut self.incoming, &mut self.plain, &mut self.outgoing] {
            if buf.is_empty() && buf.capacity() > 0 {
                *buf = BytesMut::new();
            }
        }
    }

    /// Queues close_notify (once) and hands over the bytes still to be
    /// written to the socket, close_notify last: what a closing owner writes
    /// without waiting.
    pub fn close_notify(&mut self) -> io::Result<BytesMut> {
        if !self.close_queued {
            // Until rustls has nothing else first (encoded messages).
            while let Turn::Again = self.process(Want::Close)? {}
        }
        Ok(self.outgoing.split())
    }

    /// One turn of rustls's state machine: processes what `incoming` holds
    /// until rustls has a state to report, and acts on it for `want`.
    fn process(&mut self, want: Want<'_, '_>) -> io::Result<Turn> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed",
            ));
        }
        let TlsStream {
            conn,
            incoming,
            plain,
            outgoing,
            peer_closed,
            close_queued,
            ..
        } = self;
        let status = conn.process_tls_records(&mut incoming[..]);
        let discard = status.discard;
        let turn = match status.state {
            Err(e) => Err(e),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut dest = match want {
                    Want::Read(buf) => Some(buf),
                    _ => None,
                };
                let mut failed = None;
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            let mut payload = record.payload;
                            if let Some(buf) = dest.as_deref_mut()
                                && plain.is_empty()
                            {
                                let n = payload.len().min(buf.remaining());
                                buf.put_slice(&payload[..n]);
                                payload = &payload[n..];
                            }
                            plain.extend_from_slice(payload);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(Turn::Again),
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                append(outgoing, 1024, |out| data.encode(out).map_err(Short::from))
                    .map(|_| Turn::Again)
            }
            // What was encoded is in `outgoing`, in order: it is sent before
            // the next wait for the peer and before anything written later.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Ok(Turn::Again)
            }
            Ok(ConnectionState::BlockedHandshake) => Ok(Turn::NeedBytes),
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                Ok(Turn::Again)
            }
            Ok(ConnectionState::Closed) => {
                *peer_closed = true;
                Ok(Turn::Closed)
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match want {
                Want::Write(data, scratch) => 'write: {
                    if outgoing.is_empty() && data.len() + 64 <= scratch.len() {
                        match traffic.encrypt(data, scratch) {
                            Ok(n) => break 'write Ok(Turn::InScratch(data.len(), n)),
                            // Into `outgoing`, below.
                            Err(EncryptError::InsufficientSize(_)) => {}
                            Err(e) => break 'write Err(rustls::Error::General(e.to_string())),
                        }
                    }
                    let data = &data[..data.len().min(WRITE_CHUNK)];
                    // Each record adds a header, a tag and a content type.
                    let room = data.len() + 64 * (data.len() / 16_384 + 1);
                    append(outgoing, room, |out| {
                        traffic.encrypt(data, out).map_err(Short::from)
                    })
                    .map(|_| Turn::Writable(data.len()))
                }
                Want::Close if !*close_queued => {
                    *close_queued = true;
                    append(outgoing, 256, |out| {
                        traffic.queue_close_notify(out).map_err(Short::from)
                    })
                    .map(|_| Turn::Writable(0))
                }
                Want::Close | Want::Handshake | Want::Read(_) => Ok(Turn::Writable(0)),
            },
            Ok(ConnectionState::ReadEarlyData(_)) => Err(rustls::Error::General(
                "early data, which this server does not accept".into(),
            )),
            Ok(_) => Err(rustls::Error::General("unknown TLS state".into())),
        };
        incoming.advance(discard);
        match turn {
            Ok(turn) => Ok(turn),
            Err(e) => {
                self.failed = true;
                self.queue_alert();
                Err(invalid(e))
            }
        }
    }

    /// After an error: encodes the alert rustls queued for the peer, sent
    /// with whatever `outgoing` holds when the socket takes it.
    fn queue_alert(&mut self) {
        // Only while rustls has messages queued: they come before it
        // processes `incoming` again.
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(&mut self.incoming[..]);
            let discard = status.discard;
            let encoded = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    append(&mut self.outgoing, 512, |out| {
                        data.encode(out).map_err(Short::from)
                    })
                    .is_ok()
                }
                _ => false,
            };
            self.incoming.advance(discard);
            if !encoded {
                return;
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> TlsStream<I> {
    /// One turn, with the error's alert sent best-effort.
    fn turn(&mut self, cx: &mut Context<'_>, want: Want<'_, '_>) -> io::Result<Turn> {
        match self.process(want) {
            Ok(turn) => Ok(turn),
            Err(e) => {
                // The alert goes if the socket takes it now; the error is
                // what counts.
                let _ = self.poll_send(cx);
                Err(e)
            }
        }
    }

    /// Reads what the socket has into `incoming`; `Ready(0)`: its end.
    /// Into `incoming`'s room when it has some (a transfer under way), else
    /// through a buffer on the stack: a read that finds nothing allocates
    /// nothing, and one that finds a request allocates its size.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = if self.incoming.capacity() - self.incoming.len() >= DIRECT_READ {
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                &mut self.incoming
            ))?
        } else {
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut buf = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let read = buf.filled();
            if read.len() >= READ_SIZE / 2 {
                // A transfer: the next reads go straight into `incoming`.
                self.incoming.reserve(read.len() + READ_SIZE);
            }
            self.incoming.extend_from_slice(read);
            read.len()
        };
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Writes `outgoing` to the socket, all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.plain.len().min(buf.remaining());
        buf.put_slice(&self.plain[..n]);
        self.plain.advance(n);
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        loop {
            if !this.plain.is_empty() {
                this.take_plain(buf);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            match this.turn(cx, Want::Read(buf))? {
                Turn::Again if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Turn::Again => {}
                Turn::Closed => return Poll::Ready(Ok(())),
                Turn::NeedBytes | Turn::Writable(_) | Turn::InScratch(..) => {
                    if this.eof {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )));
                    }
                    // What rustls asked to send (a session ticket, a key
                    // update's answer) goes as the socket takes it; reading
                    // waits for it only when it has piled up (a peer that
                    // sends and never reads).
                    if this.poll_send(cx)?.is_pending() && this.outgoing.len() > MAX_UNSENT {
                        return Poll::Pending;
                    }
                    match this.poll_fill(cx) {
                        Poll::Ready(res) => {
                            res?;
                        }
                        Poll::Pending => {
                            this.release();
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> TlsStream<I> {
    /// Encrypts `data` (up to `WRITE_CHUNK` of it) and sends it as far as
    /// the socket takes it now; the rest waits in `outgoing`. A small write
    /// is encrypted on the stack and, when the socket takes it all, never
    /// touches the heap.
    fn poll_write_one(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut scratch = [0u8; SCRATCH];
        let turn = loop {
            match self.turn(cx, Want::Write(data, &mut scratch))? {
                Turn::Again => {}
                turn => break turn,
            }
        };
        let n = match turn {
            Turn::InScratch(n, len) => {
                let mut tls = &scratch[..len];
                while !tls.is_empty() {
                    match Pin::new(&mut self.io).poll_write(cx, tls) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(sent)) => tls = &tls[sent..],
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
                self.outgoing.extend_from_slice(tls);
                return Poll::Ready(Ok(n));
            }
            turn => written(turn)?,
        };
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

/// How much of a write a turn encrypted into `outgoing`, or why none.
fn written(turn: Turn) -> io::Result<usize> {
    match turn {
        Turn::Writable(n) => Ok(n),
        Turn::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        Turn::Again | Turn::InScratch(..) | Turn::NeedBytes => Err(io::Error::other(
            "TLS connection cannot send application data",
        )),
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Earlier bytes first: a write takes no more while they wait.
        ready!(this.poll_send(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        this.poll_write_one(cx, data)
    }

    /// Slices that fit the scratch buffer together (a response's head and
    /// body, an HTTP/2 frame's header and payload) go as one record; larger
    /// ones as a record (or more) each, sent together.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if total + 64 <= SCRATCH {
            let mut gathered = [0u8; SCRATCH];
            let mut at = 0;
            for b in bufs {
                gathered[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            return this.poll_write_one(cx, &gathered[..total]);
        }
        let mut sent = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            let n = loop {
                match this.turn(cx, Want::Write(b, &mut []))? {
                    Turn::Again => {}
                    turn => break written(turn)?,
                }
            };
            sent += n;
            if n < b.len() || sent >= WRITE_CHUNK {
                break;
            }
        }
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(sent))
    }

    /// For HTTP/2 only, which writes a frame's header and payload as two
    /// slices. hyper's HTTP/1 gathers a response's head and body into its
    /// own buffer when the stream does not take vectored writes, for fewer
    /// instructions per request than gathering them here.
    fn is_write_vectored(&self) -> bool {
        self.conn.alpn_protocol() == Some(b"h2")
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            while let Turn::Again = this.turn(cx, Want::Close)? {}
            // Nothing more can be encrypted after close_notify.
            this.close_queued = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Why rustls wrote nothing into the room it was given.
enum Short {
    /// It needs this many bytes.
    Needs(usize),
    Failed(rustls::Error),
}

impl From<EncodeError> for Short {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::InsufficientSize(size) => Short::Needs(size.required_size),
            EncodeError::AlreadyEncoded => Short::Failed(rustls::Error::General(e.to_string())),
        }
    }
}

impl From<EncryptError> for Short {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(size) => Short::Needs(size.required_size),
            EncryptError::EncryptExhausted => Short::Failed(rustls::Error::General(e.to_string())),
        }
    }
}

/// Appends to `out` what `encode` writes into the room it is given: `room`
/// bytes first, then as many as it says it needs.
fn append(
    out: &mut BytesMut,
    mut room: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> Result<usize, rustls::Error> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        let short = match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(n);
            }
            // Asked for more than it had: once more with that.
            Err(Short::Needs(size)) if size > room => {
                room = size;
                continue;
            }
            Err(Short::Needs(size)) => {
                rustls::Error::General(format!("TLS encoding asked for {size} bytes and had them"))
            }
            Err(Short::Failed(e)) => e,
        };
        out.truncate(start);
        return Err(short);
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
