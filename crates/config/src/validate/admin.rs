//! Validation of `[admin]`: the TCP address and where the token is. Never
//! reads the token's file or variable, and never repeats a `token` value in
//! a message (it might be a token written inline by mistake).

use toml::Spanned;

use super::Ctx;
use super::cluster::secret;
use crate::raw::RawAdmin;
use crate::types::Admin;

pub(super) fn admin(ctx: &mut Ctx<'_, '_>, item: &Spanned<RawAdmin>) -> Option<Admin> {
    let raw = item.get_ref();
    // A missing `listen` or `token` was reported by `check`: TCP without a
    // token is refused here, before anything listens.
    let listen = raw.listen.as_ref().and_then(|text| {
        let value = text.get_ref();
        let parsed = value.parse().ok();
        if parsed.is_none() {
            let message = format!(
                "invalid `listen` {value:?}: expected an IP address and a port, like \"127.0.0.1:9901\" or \"[::1]:9901\""
            );
            ctx.error(text.span(), message);
        }
        parsed
    });
    let token = raw.token.as_ref().and_then(|t| secret(ctx, "token", t));
    Some(Admin {
        listen: listen?,
        token: token?,
    })
}
