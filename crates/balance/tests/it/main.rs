//! Integration tests of `balance` against real sockets: active health checks
//! probing a tiny hyper upstream on 127.0.0.1:0.

mod active;
mod support;
