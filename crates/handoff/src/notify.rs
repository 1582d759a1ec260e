//! Readiness notification by the systemd `sd_notify` protocol: one datagram
//! of newline-separated `KEY=VALUE` assignments sent to the Unix socket named
//! by `NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`). Without the variable every call is a no-op, so a server can always
//! call these functions.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// One assignment of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`: startup is finished, the server accepts connections.
    Ready,
    /// `STOPPING=1`: the server began shutting down.
    Stopping,
    /// `RELOADING=1`: the server is reloading its configuration.
    Reloading,
    /// `STATUS=…`: a one-line human-readable status.
    Status(&'a str),
    /// `MAINPID=…`: the main process, when it is not the one notifying.
    MainPid(u32),
}

impl State<'_> {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            State::Ready => writeln!(out, "READY=1"),
            State::Stopping => writeln!(out, "STOPPING=1"),
            State::Reloading => writeln!(out, "RELOADING=1"),
            // A newline would start a new assignment; keep the status on one line.
            State::Status(s) => writeln!(out, "STATUS={}", s.replace('\n', " ")),
            State::MainPid(p) => writeln!(out, "MAINPID={p}"),
        };
    }
}

/// Sends `states` as one notification.
///
/// Returns `Ok(false)` when `NOTIFY_SOCKET` is not set (nothing to do), and
/// `Ok(true)` once the datagram was sent.
pub fn notify(states: &[State<'_>]) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    notify_to(&target.to_string_lossy(), states)?;
    Ok(true)
}

fn notify_to(target: &str, states: &[State<'_>]) -> io::Result<()> {
    let addr = socket_addr(target)?;
    let mut msg = String::new();
    for s in states {
        s.write(&mut msg);
    }
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(msg.as_bytes(), &addr)?;
    Ok(())
}

/// Sends `READY=1`.
pub fn ready() -> io::Result<bool> {
    notify(&[State::Ready])
}

/// Sends `STOPPING=1`.
pub fn stopping() -> io::Result<bool> {
    notify(&[State::Stopping])
}

/// Sends `STATUS=msg`.
pub fn status(msg: &str) -> io::Result<bool> {
    notify(&[State::Status(msg)])
}

fn socket_addr(target: &str) -> io::Result<SocketAddr> {
    if let Some(name) = target.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if target.starts_with('/') {
        SocketAddr::from_pathname(target)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={target:?} is neither an absolute path nor an @abstract name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format() {
        let mut out = String::new();
        for s in [State::Ready, State::Status("a\nb"), State::MainPid(7)] {
            s.write(&mut out);
        }
        assert_eq!(out, "READY=1\nSTATUS=a b\nMAINPID=7\n");
    }

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("handoff-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), &[State::Ready]).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("handoff-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        notify_to(&format!("@{name}"), &[State::Stopping]).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn addresses() {
        assert!(socket_addr("@x").unwrap().as_abstract_name().is_some());
        assert!(socket_addr("/run/x").unwrap().as_pathname().is_some());
        assert!(socket_addr("run/x").is_err());
    }
}
