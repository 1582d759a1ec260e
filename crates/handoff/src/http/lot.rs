//! The parking lot: where parked connections wait for their next request
//! without a task of their own. A connection parked by `park` leaves its
//! task and becomes one entry of a table owned by one task per server,
//! which waits on all of them through an epoll set of its own; when a
//! socket becomes readable its entry is taken out and a new task serves it
//! (`park::resume`). A plain socket (TCP or Unix) also leaves tokio (it is
//! deregistered, and registered again when it resumes); a TLS connection
//! comes as its boxed stream, socket and rustls's session (its buffers
//! freed), its socket still registered with tokio, unless the stream holds
//! decrypted bytes or the peer's close (then it is served at once, in its
//! task).
//!
//! Why: a parked connection inside its own task keeps the task (the size of
//! the connection's largest future), the socket's registration with tokio's
//! reactor and the service's allocations, each allocated when the
//! connection was new, in between the buffers hyper freed since: glibc
//! cannot give back a page of which one small block is still in use, so
//! every parked connection held a page or two of RSS. Here a parked
//! connection is an entry in one table (its socket, what is known about it,
//! its place under `max_connections` and in the drain, its keep-alive
//! deadline), and the pages its task used are free to go back to the system
//! (`trim`).
//!
//! A connection in the lot is still open to every count and limit: it keeps
//! its slot, its count as open and parked on its listener, its place in the
//! drain and its keep-alive deadline; the drain closes it with the idle
//! connections (a TLS one with its close_notify).
//!
//! Owns the table, the epoll set and the deadlines; never reads a byte from
//! a socket and never decides when to drain.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(feature = "tls")]
use super::tls::TlsStream;
use rustix::event::epoll;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{AppBody, AppService, Held, Shared};
use super::trim::Trim;
use super::{ConnInfo, Stage};

/// Events taken from the epoll set at a time.
const BATCH: usize = 256;

/// A connection as the lot keeps it: a plain socket out of tokio, or a TLS
/// stream whole (its socket stays registered with tokio).
#[derive(Debug)]
pub enum Detached {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A Unix stream connection.
    Unix(std::os::unix::net::UnixStream),
    /// A TLS connection over TCP.
    #[cfg(feature = "tls")]
    TlsTcp(Box<TlsStream<tokio::net::TcpStream>>),
    /// A TLS connection over a Unix stream.
    #[cfg(feature = "tls")]
    TlsUnix(Box<TlsStream<tokio::net::UnixStream>>),
}

impl Detached {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Detached::Tcp(s) => s.as_fd(),
            Detached::Unix(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Detached::TlsTcp(s) => s.io().as_fd(),
            #[cfg(feature = "tls")]
            Detached::TlsUnix(s) => s.io().as_fd(),
        }
    }

    /// Closes our side (TLS close_notify, then FIN) before the socket is
    /// dropped.
    fn shut_down(&mut self) {
        let _ = match self {
            Detached::Tcp(s) => s.shutdown(Shutdown::Write),
            Detached::Unix(s) => s.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Detached::TlsTcp(s) => close_tls(s),
            #[cfg(feature = "tls")]
            Detached::TlsUnix(s) => close_tls(s),
        };
    }
}

/// Sends TLS close_notify, as much of it as the socket takes now (an idle
/// connection's send buffer is empty), then FIN.
#[cfg(feature = "tls")]
fn close_tls<I: AsFd>(stream: &mut TlsStream<I>) -> io::Result<()> {
    let bytes = stream.close_notify()?;
    let fd = stream.io().as_fd();
    let mut bytes = &bytes[..];
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes = &bytes[n..],
        }
    }
    Ok(rustix::net::shutdown(fd, rustix::net::Shutdown::Write)?)
}

/// A parked connection: its socket, what was known about it when it was
/// accepted (the service is made from it again when it resumes), what it
/// holds (slot, drain guard) and its keep-alive deadline.
pub(super) struct Entry {
    pub socket: Detached,
    pub info: ConnInfo,
    pub held: Held,
    pub deadline: Option<Instant>,
}

/// The lot of one server.
pub(super) struct Lot {
    epoll: AsyncFd<OwnedFd>,
    table: Mutex<Table>,
    /// A deadline earlier than those the lot's task waits for was added.
    earlier: Notify,
}

#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry>,
    /// Keep-alive deadlines with their entry; an entry that left the lot
    /// leaves its deadline behind, skipped when it comes up.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next: u64,
    /// Idle connections are being closed: nothing is parked any more.
    closed: bool,
}

impl Lot {
    /// A lot with its own epoll set; must be called on a tokio runtime.
    pub(super) fn new() -> io::Result<Lot> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Lot {
            epoll: crate::sys::async_fd(fd)?,
            table: Mutex::new(Table::default()),
            earlier: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `entry` until its socket is readable; gives it back if it
    /// cannot be watched (the caller then waits on it in its task). Once
    /// idle connections are being closed, closes it instead.
    #[expect(
        clippy::result_large_err,
        reason = "the entry is given back as it is: boxing it would allocate on every park"
    )]
    pub(super) fn park(&self, entry: Entry, trim: &Trim) -> Result<(), Entry> {
        let mut table = self.table();
        if table.closed {
            drop(table);
            close(entry, trim);
            return Ok(());
        }
        let id = table.next;
        // Level-triggered (a socket readable already is reported at once)
        // and one-shot (reported once, not again until it is taken out).
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        if let Err(e) = epoll::add(
            self.epoll.get_ref(),
            entry.socket.fd(),
            epoll::EventData::new_u64(id),
            flags,
        ) {
            tracing::debug!(error = %e, "could not park a connection in the lot");
            return Err(entry);
        }
        table.next += 1;
        if let Some(at) = entry.deadline {
            let earliest = table.deadlines.peek().is_none_or(|Reverse((e, _))| at < *e);
            table.deadlines.push(Reverse((at, id)));
            if earliest {
                self.earlier.notify_one();
            }
        }
        entry.held.counts().count_parked(true);
        table.entries.insert(id, entry);
        drop(table);
        trim.released();
        Ok(())
    }

    /// Takes an entry out of the lot (and its socket out of the epoll set).
    fn take(table: &mut Table, epoll: &OwnedFd, id: u64) -> Option<Entry> {
        let entry = table.entries.remove(&id)?;
        let _ = epoll::delete(epoll, entry.socket.fd());
        entry.held.counts().count_parked(false);
        Some(entry)
    }

    /// The entries whose socket is readable now (or closed by the peer),
    /// at most [`BATCH`]; `true` when there may be more.
    fn ready(&self) -> io::Result<(Vec<Entry>, bool)> {
        let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); BATCH];
        let (events, _) = epoll::wait(
            self.epoll.get_ref(),
            &mut buffer[..],
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )?;
        let mut table = self.table();
        let ready = events
            .iter()
            .filter_map(|e| Lot::take(&mut table, self.epoll.get_ref(), e.data.u64()))
            .collect();
        shrink(&mut table);
        Ok((ready, events.len() == BATCH))
    }

    /// The entries whose keep-alive deadline has passed, and the next
    /// deadline.
    fn expired(&self, now: Instant) -> (Vec<Entry>, Option<Instant>) {
        let mut table = self.table();
        let mut expired = Vec::new();
        while let Some(&Reverse((at, id))) = table.deadlines.peek() {
            let current = table
                .entries
                .get(&id)
                .is_some_and(|e| e.deadline == Some(at));
            if current && at > now {
                break;
            }
            table.deadlines.pop();
            if current && let Some(entry) = Lot::take(&mut table, self.epoll.get_ref(), id) {
                expired.push(entry);
            }
        }
        shrink(&mut table);
        let next = table.deadlines.peek().map(|Reverse((at, _))| *at);
        (expired, next)
    }

    /// Closes every parked connection, and those parked later.
    fn close_all(&self, trim: &Trim) {
        let entries: Vec<Entry> = {
            let mut table = self.table();
            table.closed = true;
            table.deadlines.clear();
            let ids: Vec<u64> = table.entries.keys().copied().collect();
            ids.into_iter()
                .filter_map(|id| Lot::take(&mut table, self.epoll.get_ref(), id))
                .collect()
        };
        for entry in entries {
            close(entry, trim);
        }
    }
}

/// Gives back the table's memory once most of it is unused (after a burst
/// of connections has ended), and drops deadlines left behind by entries
/// that resumed once they outnumber the live ones.
fn shrink(table: &mut Table) {
    let len = table.entries.len();
    if table.entries.capacity() > 64 && len < table.entries.capacity() / 4 {
        table.entries.shrink_to(len * 2);
    }
    if table.deadlines.len() > 64 && table.deadlines.len() > 2 * len {
        let entries = &table.entries;
        let mut deadlines = std::mem::take(&mut table.deadlines).into_vec();
        deadlines
            .retain(|Reverse((at, id))| entries.get(id).is_some_and(|e| e.deadline == Some(*at)));
        deadlines.shrink_to_fit();
        table.deadlines = BinaryHeap::from(deadlines);
    }
}

/// Ends a parked connection: FIN, then the socket, its slot and its place
/// in the drain are released.
fn close(mut entry: Entry, trim: &Trim) {
    entry.socket.shut_down();
    drop(entry);
    trim.released();
}

/// The lot's task: resumes connections whose socket became readable, closes
/// those whose keep-alive deadline passed, and closes them all when the
/// drain closes idle connections.
pub(super) async fn run<F, S, B>(shared: Arc<Shared<F>>)
where
    F: Fn(&ConnInfo) -> S + Send + Sync + 'static,
    S: AppService<B>,
    B: AppBody,
{
    let Some(lot) = shared.lot.as_ref() else {
        return;
    };
    let mut stage = shared.stage.clone();
    let mut next: Option<Instant> = None;
    loop {
        let expiry = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s >= Stage::Closing) => {
                lot.close_all(&shared.trim);
                return;
            }
            ready = lot.epoll.readable() => {
                let mut guard = match ready {
                    Ok(guard) => guard,
                    Err(e) => {
                        tracing::warn!(error = %e, "parked connections cannot be watched: closing them");
                        lot.close_all(&shared.trim);
                        return;
                    }
                };
                match lot.ready() {
                    Ok((entries, more)) => {
                        if !more {
                            guard.clear_ready();
                        }
                        for entry in entries {
                            resume(entry, &shared);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "parked connections cannot be watched: closing them");
                        lot.close_all(&shared.trim);
                        return;
                    }
                }
            }
            _ = expiry => {
                let (expired, after) = lot.expired(Instant::now());
                next = after;
                for entry in expired {
                    tracing::debug!("keep-alive connection idle: closing");
                    close(entry, &shared.trim);
                }
            }
            _ = lot.earlier.notified() => {
                next = lot.table().deadlines.peek().map(|Reverse((at, _))| *at);
            }
        }
    }
}

/// Serves a connection taken out of the lot in a new task.
fn resume<F, S, B>(entry: Entry, shared: &Arc<Shared<F>>)
where
    F: Fn(&ConnInfo) -> S + Send + Sync + 'static,
    S: AppService<B>,
    B: AppBody,
{
    let Entry {
        socket,
        info,
        held,
        deadline,
    } = entry;
    let service = (shared.make)(&info);
    let shared = shared.clone();
    let registered = match socket {
        Detached::Tcp(s) => tokio::net::TcpStream::from_std(s).map(|io| {
            tokio::spawn(async move {
                super::park::resume(io, service, &shared, info, held, deadline).await
            });
        }),
        Detached::Unix(s) => tokio::net::UnixStream::from_std(s).map(|io| {
            tokio::spawn(async move {
                super::park::resume(io, service, &shared, info, held, deadline).await
            });
        }),
        #[cfg(feature = "tls")]
        Detached::TlsTcp(tls) => {
            tokio::spawn(async move {
                super::park::resume(tls, service, &shared, info, held, deadline).await
            });
            Ok(())
        }
        #[cfg(feature = "tls")]
        Detached::TlsUnix(tls) => {
            tokio::spawn(async move {
                super::park::resume(tls, service, &shared, info, held, deadline).await
            });
            Ok(())
        }
    };
    if let Err(e) = registered {
        tracing::debug!(error = %e, "could not resume a parked connection");
    }
}
