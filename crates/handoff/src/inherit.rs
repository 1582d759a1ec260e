//! The systemd socket-activation protocol (`sd_listen_fds_with_names`):
//! descriptors from 3, counted by `LISTEN_FDS`, addressed to the process
//! `LISTEN_PID`, named by `LISTEN_FDNAMES`. Owns reading the variables and
//! adopting the descriptors; never binds anything itself.
//!
//! As in the `listenfd`/`systemfd` convention, an unset or empty
//! `LISTEN_PID` skips the pid check (a `cargo watch` or shell may sit
//! between the socket holder and the server); a set one must equal our pid.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Socket, Type};

use crate::error::Error;
use crate::listener::{Listener, NamedListener};
use crate::sys;

/// The first inherited descriptor number (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Set once the descriptors have been taken: a second take finds nothing,
/// so no descriptor ever has two owners.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// What the process was handed by its parent.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The listeners, in descriptor order.
    pub listeners: Vec<NamedListener>,
    /// Whether the variables could be removed from the environment (only
    /// while the process is single-threaded; otherwise they stay, and a
    /// child would ignore them because `LISTEN_PID` names us, not it).
    pub env_cleared: bool,
}

/// Takes the listeners passed by the socket-activation protocol.
///
/// Returns `Ok(None)` when nothing was passed to this process (no
/// `LISTEN_FDS`, `LISTEN_PID` naming another process, or already taken).
/// Call it at the start of `main`, before threads exist, so the variables
/// are cleared and do not leak to children.
pub fn take() -> Result<Option<Inherited>, Error> {
    let Some(fds) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let env_cleared = sys::single_threaded();
    let result = take_inner(&fds.to_string_lossy());
    if env_cleared {
        sys::clear_listen_env();
    }
    Ok(result?.map(|listeners| Inherited {
        listeners,
        env_cleared,
    }))
}

fn take_inner(fds: &str) -> Result<Option<Vec<NamedListener>>, Error> {
    let pid = std::env::var("LISTEN_PID").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let Some(names) = parse_env(fds, pid.as_deref(), names.as_deref(), std::process::id())? else {
        return Ok(None);
    };
    let mut listeners = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + i as RawFd;
        let owned = sys::adopt_fd(fd)
            .map_err(|source| Error::Inspect { fd, source })?
            .ok_or_else(|| Error::NotAListener {
                fd,
                reason: "nothing is open at that descriptor".into(),
            })?;
        let listener = classify(fd, Socket::from(owned))?;
        listeners.push(NamedListener { name, listener });
    }
    Ok(Some(listeners))
}

/// Reads the protocol's variables: the names of the sockets passed to the
/// process `our_pid`, in descriptor order, or `None` when nothing is ours.
fn parse_env(
    fds: &str,
    pid: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Option<Vec<String>>, Error> {
    let count: usize = fds.trim().parse().map_err(|_| Error::BadVariable {
        var: "LISTEN_FDS",
        value: fds.to_owned(),
    })?;
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        let pid: u32 = pid.trim().parse().map_err(|_| Error::BadVariable {
            var: "LISTEN_PID",
            value: pid.to_owned(),
        })?;
        if pid != our_pid {
            return Ok(None);
        }
    }
    if count == 0 {
        return Ok(None);
    }
    match names.filter(|n| !n.is_empty()) {
        Some(names) => {
            let names: Vec<String> = names.split(':').map(str::to_owned).collect();
            if names.len() != count {
                return Err(Error::NameCount {
                    names: names.len(),
                    fds: count,
                });
            }
            Ok(Some(names))
        }
        // systemd's name for a socket nobody named.
        None => Ok(Some(vec!["unknown".to_owned(); count])),
    }
}

/// Checks that `socket` is a listening stream socket and wraps it.
pub(crate) fn classify(fd: RawFd, socket: Socket) -> Result<Listener, Error> {
    let inspect = |source| Error::Inspect { fd, source };
    let not = |reason: &str| Error::NotAListener {
        fd,
        reason: reason.to_owned(),
    };
    if socket.r#type().map_err(inspect)? != Type::STREAM {
        return Err(not(
            "not a stream socket (datagram sockets are not supported)",
        ));
    }
    if !socket.is_listener().map_err(inspect)? {
        return Err(not("the socket is not listening"));
    }
    let domain = socket.local_addr().map_err(inspect)?.domain();
    if domain == Domain::IPV4 || domain == Domain::IPV6 {
        Ok(Listener::Tcp(socket.into()))
    } else if domain == Domain::UNIX {
        Ok(Listener::Unix(socket.into()))
    } else {
        Err(not("unsupported address family"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn variables_follow_the_systemd_rules() {
        let me = 4242;
        let names = |r: Result<Option<Vec<String>>, Error>| r.unwrap();
        assert_eq!(
            names(parse_env("2", Some("4242"), Some("http:admin"), me)),
            Some(vec!["http".to_owned(), "admin".to_owned()])
        );
        // Addressed to another process (our parent, say): not ours.
        assert_eq!(names(parse_env("1", Some("1"), None, me)), None);
        // The listenfd/systemfd convention: no LISTEN_PID, no pid check.
        assert_eq!(
            names(parse_env("1", None, None, me)),
            Some(vec!["unknown".to_owned()])
        );
        assert_eq!(
            names(parse_env("1", Some(""), Some(""), me)).unwrap().len(),
            1
        );
        assert_eq!(names(parse_env("0", Some("4242"), None, me)), None);
        assert!(matches!(
            parse_env("2", Some("4242"), Some("only-one"), me),
            Err(Error::NameCount { names: 1, fds: 2 })
        ));
        assert!(matches!(
            parse_env("x", None, None, me),
            Err(Error::BadVariable {
                var: "LISTEN_FDS",
                ..
            })
        ));
        assert!(matches!(
            parse_env("1", Some("me"), None, me),
            Err(Error::BadVariable {
                var: "LISTEN_PID",
                ..
            })
        ));
    }

    fn dup(fd: impl AsFd) -> Socket {
        Socket::from(fd.as_fd().try_clone_to_owned().unwrap())
    }

    #[test]
    fn only_listening_stream_sockets_are_accepted() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(classify(3, dup(&tcp)), Ok(Listener::Tcp(_))));

        let dir = std::env::temp_dir().join(format!("handoff-classify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.join("s")).unwrap();
        assert!(matches!(classify(3, dup(&unix)), Ok(Listener::Unix(_))));
        std::fs::remove_dir_all(&dir).unwrap();

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = classify(3, dup(&udp)).unwrap_err().to_string();
        assert!(err.contains("not a stream socket"), "{err}");

        let idle = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = classify(3, idle).unwrap_err().to_string();
        assert!(err.contains("not listening"), "{err}");
    }
}
