//! `[admin]`: the TCP address and where the token is; TCP without a token
//! is refused, and a token written inline is never repeated.

use super::{MINIMAL, error, errors, ok};
use crate::types::{Admin, Password};

#[test]
fn the_admin_listener_takes_an_address_and_a_token_file() {
    let config = ok(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"[::1]:0\"\ntoken = \"file:/etc/baton/token\"\n"
    ));
    assert_eq!(
        config.admin,
        Some(Admin {
            listen: "[::1]:0".parse().unwrap(),
            token: Password::File("/etc/baton/token".into()),
        })
    );
}

#[test]
fn tcp_without_a_token_is_refused() {
    let message = error(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"127.0.0.1:9901\"\n"
    ));
    assert!(
        message.contains("missing required key `token` in [admin]"),
        "{message}"
    );
}

#[test]
fn bad_admin_values_are_refused_without_repeating_a_token() {
    let all = errors(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"localhost\"\ntoken = \"s3cret-s3cret-s3cret\"\n"
    ));
    assert_eq!(
        all,
        [
            "5:10: invalid `listen` \"localhost\": expected an IP address and a port, like \"127.0.0.1:9901\" or \"[::1]:9901\"",
            "6:9: invalid `token`: expected \"env:NAME\" or \"file:PATH\", where the token is; never the token itself",
        ]
    );
    assert!(!all.concat().contains("s3cret"), "{all:?}");
}
