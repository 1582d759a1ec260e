//! Listening sockets, inherited or bound, and the set a server runs on.
//! Owns binding (with a deep backlog, so a connect storm during a handover
//! queues instead of being refused) and lookup by name.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use socket2::{Domain, Socket, Type};

use crate::addr::ListenAddr;
use crate::error::Error;
use crate::inherit;

/// The listen backlog for sockets we bind; the kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// One listening stream socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(UnixListener),
}

impl Listener {
    /// Binds a new listener at `addr`.
    ///
    /// A Unix socket path left behind by a process that is gone is replaced;
    /// one that still accepts connections is an error (`AddrInUse`).
    pub fn bind(addr: &ListenAddr) -> Result<Listener, Error> {
        let bind_err = |source| Error::Bind {
            addr: addr.clone(),
            source,
        };
        match addr {
            ListenAddr::Tcp(sa) => {
                let socket =
                    Socket::new(Domain::for_address(*sa), Type::STREAM, None).map_err(bind_err)?;
                socket.set_reuse_address(true).map_err(bind_err)?;
                socket.bind(&(*sa).into()).map_err(bind_err)?;
                socket.listen(BACKLOG).map_err(bind_err)?;
                Ok(Listener::Tcp(socket.into()))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).map_err(bind_err)?;
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_err)?;
                let sa = socket2::SockAddr::unix(path).map_err(bind_err)?;
                socket.bind(&sa).map_err(bind_err)?;
                socket.listen(BACKLOG).map_err(bind_err)?;
                Ok(Listener::Unix(socket.into()))
            }
        }
    }

    /// Binds a Unix listener at `path` whose file has exactly `mode` (say
    /// `0o600`) before anyone can connect to it, whatever the umask.
    ///
    /// Binding creates the file with the mode of the socket itself less the
    /// umask, so a `chmod` after `bind` and `listen` leaves a moment in
    /// which the file is as open as the umask allows and the socket accepts
    /// connections. Here the socket gets `mode` before `bind` (on Linux,
    /// `fchmod` on a socket sets the mode `bind` gives its file: the file
    /// exists with `mode`, or less under a narrower umask, from the start);
    /// then, still before `listen` (a connection to a socket that does not
    /// listen is refused), the file is set to exactly `mode` if it is not
    /// (a narrower umask, or a system that ignores `fchmod` on sockets).
    /// A stale socket file is replaced as by [`Listener::bind`].
    pub fn bind_unix(path: &Path, mode: u32) -> Result<Listener, Error> {
        use std::os::unix::fs::PermissionsExt;
        let bind_err = |source| Error::Bind {
            addr: ListenAddr::Unix(path.to_owned()),
            source,
        };
        remove_stale_socket(path).map_err(bind_err)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_err)?;
        let socket = with_mode(socket, mode);
        let sa = socket2::SockAddr::unix(path).map_err(bind_err)?;
        socket.bind(&sa).map_err(bind_err)?;
        let created = std::fs::symlink_metadata(path).map_err(bind_err)?;
        if created.permissions().mode() & 0o7777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(bind_err)?;
        }
        socket.listen(BACKLOG).map_err(bind_err)?;
        Ok(Listener::Unix(socket.into()))
    }

    /// The address the listener is bound to (with the real port when it was
    /// bound to port 0).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l) => {
                let sa = l.local_addr()?;
                match sa.as_pathname() {
                    Some(p) => Ok(ListenAddr::Unix(p.to_owned())),
                    None => Err(io::Error::other("unnamed or abstract unix socket")),
                }
            }
        }
    }

    /// Takes a descriptor received from another process (say by
    /// [`crate::fdpass`]) if it is a listening stream socket.
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Listener, Error> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        inherit::classify(raw, Socket::from(fd))
    }

    /// A second descriptor for the same socket (same accept queue).
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(match self {
            Listener::Tcp(l) => Listener::Tcp(l.try_clone()?),
            Listener::Unix(l) => Listener::Unix(l.try_clone()?),
        })
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

/// `fchmod` on a socket that is not bound yet (through `File`, whose
/// `set_permissions` is `fchmod`: the descriptor only changes hands). A
/// failure is left to the check after `bind` in [`Listener::bind_unix`].
fn with_mode(socket: Socket, mode: u32) -> Socket {
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::from(OwnedFd::from(socket));
    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
    Socket::from(OwnedFd::from(file))
}

/// Removes a Unix socket file that nobody accepts on any more.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Ok(()); // bind will fail with AddrInUse and say so
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is accepting on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// A listener and the name it was passed or bound under.
#[derive(Debug)]
pub struct NamedListener {
    /// The name (`LISTEN_FDNAMES` entry, `NAME=` of `--listen`, or `unknown`).
    pub name: String,
    /// The socket.
    pub listener: Listener,
}

/// The listening sockets a server runs on.
#[derive(Debug)]
pub struct Listeners {
    list: Vec<NamedListener>,
    inherited: bool,
}

impl Listeners {
    /// Takes the sockets passed by the socket-activation protocol, if any.
    ///
    /// See [`inherit::take`] for the rules; call this early in `main`.
    pub fn inherit() -> Result<Option<Listeners>, Error> {
        Ok(inherit::take()?.map(|i| Listeners {
            list: i.listeners,
            inherited: true,
        }))
    }

    /// Binds one listener per address, named `unknown` like systemd's
    /// unnamed sockets.
    pub fn bind(addrs: &[ListenAddr]) -> Result<Listeners, Error> {
        let list = addrs
            .iter()
            .map(|a| {
                Ok(NamedListener {
                    name: "unknown".to_owned(),
                    listener: Listener::bind(a)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Listeners {
            list,
            inherited: false,
        })
    }

    /// Inherited sockets when there are any, else binds `addrs`.
    pub fn inherit_or_bind(addrs: &[ListenAddr]) -> Result<Listeners, Error> {
        match Listeners::inherit()? {
            Some(l) => Ok(l),
            None => Listeners::bind(addrs),
        }
    }

    /// Builds a set from listeners the caller already has.
    pub fn from_listeners(list: Vec<NamedListener>) -> Listeners {
        Listeners {
            list,
            inherited: false,
        }
    }

    /// Whether the sockets came from the parent rather than being bound here.
    pub fn is_inherited(&self) -> bool {
        self.inherited
    }

    /// The first listener with this name.
    pub fn get(&self, name: &str) -> Option<&Listener> {
        self.list
            .iter()
            .find(|l| l.name == name)
            .map(|l| &l.listener)
    }

    /// All listeners in order.
    pub fn iter(&self) -> impl Iterator<Item = &NamedListener> {
        self.list.iter()
    }

    /// Number of listeners.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there is no listener.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The listeners, by value.
    pub fn into_vec(self) -> Vec<NamedListener> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_port_zero_and_reports_the_real_port() {
        let l = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let ListenAddr::Tcp(sa) = l.local_addr().unwrap() else {
            panic!("tcp expected")
        };
        assert_ne!(sa.port(), 0);
        std::net::TcpStream::connect(sa).unwrap();
    }

    #[test]
    fn unix_socket_replaces_stale_file_but_not_a_live_one() {
        let dir = std::env::temp_dir().join(format!("handoff-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let addr = ListenAddr::Unix(path.clone());
        let live = Listener::bind(&addr).unwrap();
        let err = Listener::bind(&addr).unwrap_err();
        assert!(
            matches!(&err, Error::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse),
            "{err:?}"
        );
        drop(live); // the file stays behind, stale
        assert!(path.exists());
        let again = Listener::bind(&addr).unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_socket_with_a_mode_has_it_and_replaces_a_stale_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("handoff-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for wanted in [0o600, 0o660, 0o777] {
            let l = Listener::bind_unix(&path, wanted).unwrap();
            assert_eq!(mode(&path), wanted);
            assert_eq!(l.local_addr().unwrap(), ListenAddr::Unix(path.clone()));
            UnixStream::connect(&path).unwrap();
            let err = Listener::bind_unix(&path, wanted).unwrap_err();
            assert!(
                matches!(&err, Error::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse),
                "{err:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
