//! `[admin]`: the control API on TCP. Plain data; the binary reads the
//! token's file or variable, never `config`.

use std::net::SocketAddr;

use super::Password;

/// `[admin]`: where the control API listens on TCP and where its bearer
/// token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The TCP address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Where the bearer token is (an environment variable or a file).
    pub token: Password,
}
