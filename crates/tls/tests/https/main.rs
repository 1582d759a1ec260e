//! The `tls` crate over real sockets: certificates made by rcgen at test
//! time, servers on 127.0.0.1:0, rustls clients.

mod client;
mod reload;
mod server;
mod support;
