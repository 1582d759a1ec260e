//! The one error type of the library's fallible operations. Every variant
//! says what could not be done and carries its cause.

use std::io;
use std::os::fd::RawFd;

use crate::ListenAddr;

/// Why taking, binding or announcing sockets failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `LISTEN_FDS` or `LISTEN_PID` is set but not a number.
    #[error("could not read inherited sockets: {var}={value:?} is not a valid number")]
    BadVariable {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `LISTEN_FDNAMES` does not name as many sockets as `LISTEN_FDS` passes.
    #[error(
        "could not read inherited sockets: LISTEN_FDNAMES names {names} sockets but LISTEN_FDS passes {fds}"
    )]
    NameCount {
        /// How many names were given.
        names: usize,
        /// How many descriptors were passed.
        fds: usize,
    },
    /// An inherited descriptor is not a listening stream socket.
    #[error("could not use inherited fd {fd}: {reason}")]
    NotAListener {
        /// The descriptor number.
        fd: RawFd,
        /// What is wrong with it.
        reason: String,
    },
    /// A system call on an inherited descriptor failed.
    #[error("could not inspect inherited fd {fd}")]
    Inspect {
        /// The descriptor number.
        fd: RawFd,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Binding a fallback listener failed.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: ListenAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
