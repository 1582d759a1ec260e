//! The test ACME server, as `crates/tls/tests/acme` runs it (`testkit::pebble`): Debian's `pebble` on free
//! loopback ports, with `pebble-challtestsrv` as its DNS. Validation is real: pebble fetches the HTTP-01 answer
//! from `http_port`, where the test puts baton's plain listener.

pub use testkit::free_port;
pub use testkit::pebble::Pebble;
