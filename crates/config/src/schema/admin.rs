//! The schema table of `[admin]`: the control API on TCP, behind a bearer
//! token.

use super::IfMissing::Required;
use super::{Section, Type, key};

pub(crate) static ADMIN: Section = Section {
    place: "in [admin]",
    heading: "`[admin]`",
    doc: "The control API (what `baton deploy`, `status`, `pause`… use, and `GET /metrics`) on a TCP address as well, for Prometheus or a CLI on another machine. Every request on it must carry `Authorization: Bearer TOKEN`; one without it or with another token gets 401, and neither token is ever logged. Without `[admin]` the API is only on the `--control` Unix socket (mode 0600, no token). The address and the token are read when `baton serve` starts; a reload does not change them.",
    keys: &[
        key(
            "listen",
            Type::String,
            Required,
            "The IP address and port to listen on, like `\"127.0.0.1:9901\"` or `\"[::1]:9901\"` (port 0 picks a free one; `baton serve` prints `admin API at http://ADDR`). Plain HTTP: keep it on loopback or a private network.",
        ),
        key(
            "token",
            Type::String,
            Required,
            "Where the bearer token is, never the token itself: `\"env:NAME\"` (an environment variable) or `\"file:PATH\"` (a file, its final newline removed; a relative path is relative to the directory baton runs in). `baton serve` refuses to start when it is missing, shorter than 16 bytes, or not printable ASCII. Compared in constant time.",
        ),
    ],
};
