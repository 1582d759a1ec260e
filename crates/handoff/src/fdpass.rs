//! Passing open descriptors to another process over a connected Unix stream
//! socket (`SCM_RIGHTS`): the receiver gets new descriptors for the very same
//! open files — for a listening socket, the same accept queue, so a
//! connection that waits in it is served by whichever process accepts it.
//!
//! Blocking calls on `std` sockets, no async runtime. The descriptors travel
//! with the first byte of `data`; the rest of `data` follows as ordinary
//! stream bytes. Received descriptors are close-on-exec.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Sends `data` (not empty) with `fds` attached; writes all of `data`.
pub fn send_fds(stream: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if data.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors travel with at least one byte, and at most 253 at once",
        ));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "the descriptors do not fit the control buffer",
        ));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            stream,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // The descriptors went with the first bytes; the rest is plain data.
    (&*stream).write_all(&data[sent..])
}

/// Receives up to `buf.len()` bytes and the descriptors attached to them
/// (at most `max_fds`; more are closed and reported as an error).
pub fn recv_fds(
    stream: &UnixStream,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            stream,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    // The buffer is rounded up and may hold a few more than asked for.
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {max_fds} descriptors were sent"),
        ));
    }
    Ok((msg.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn a_listener_passed_keeps_its_accept_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A connection queued before the handover is accepted after it.
        let mut client = TcpStream::connect(addr).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let long = vec![b'x'; 300_000];
        let sender = std::thread::spawn({
            let long = long.clone();
            move || send_fds(&a, &long, &[listener.as_fd()]).unwrap()
        });
        let mut buf = vec![0u8; 4096];
        let (n, fds) = recv_fds(&b, &mut buf, 4).unwrap();
        assert_eq!(fds.len(), 1);
        let mut rest = Vec::new();
        (&b).take((long.len() - n) as u64)
            .read_to_end(&mut rest)
            .unwrap();
        assert_eq!(n + rest.len(), long.len());
        sender.join().unwrap();

        let passed = TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(passed.local_addr().unwrap(), addr);
        let (mut served, _) = passed.accept().unwrap();
        served.write_all(b"hi").unwrap();
        drop(served);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
    }

    #[test]
    fn too_many_descriptors_are_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..3)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        send_fds(&a, b"x", &fds).unwrap();
        let mut buf = [0u8; 8];
        let err = recv_fds(&b, &mut buf, 1).unwrap_err();
        assert!(err.to_string().contains("more than 1"), "{err}");
        assert!(send_fds(&a, b"", &fds).is_err());
    }
}
