//! Validation of `cipher_suites` in `[listener.tls]`: only the names of
//! `CIPHER_SUITES`, each once, and every enabled TLS version keeps a suite.
//! Names of weak suites are recognised, IANA's and OpenSSL's, so that the
//! message says why they are refused; near misses get a suggestion.

use std::collections::BTreeSet;

use toml::Spanned;

use super::Ctx;
use super::tls::version_name;
use crate::types::{CIPHER_SUITES, TlsVersion};

/// OpenSSL's names of the supported TLS 1.2 suites (its TLS 1.3 names are
/// IANA's), for suggestions only.
const OPENSSL_NAMES: [(&str, &str); 6] = [
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// `cipher_suites`. `versions`: the enabled range, `None` when the versions
/// themselves are invalid (then coverage is not judged).
pub(super) fn suites(
    ctx: &mut Ctx<'_, '_>,
    list: &Spanned<Vec<Spanned<String>>>,
    versions: Option<(TlsVersion, TlsVersion)>,
) -> Option<Vec<String>> {
    if list.get_ref().is_empty() {
        let message = "`cipher_suites` is empty, so no handshake could succeed; omit it to allow every supported suite";
        ctx.error(list.span(), message);
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut out = Some(Vec::new());
    for item in list.get_ref() {
        let text = item.get_ref();
        let Some(&(name, version)) = CIPHER_SUITES.iter().find(|(n, _)| n == text) else {
            ctx.error(item.span(), refused(text));
            out = None;
            continue;
        };
        let new = ctx.unique(&mut seen, item, |n| {
            format!("cipher suite `{n}` is listed twice")
        });
        match (new, &mut out) {
            (true, Some(v)) => v.push((name, version)),
            _ => out = None,
        }
    }
    let out = out?;
    let (min, max) = versions?;
    let mut ok = true;
    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        if !(min..=max).contains(&version) || out.iter().any(|(_, v)| *v == version) {
            continue;
        }
        let v = version_name(version);
        let of_version: Vec<&str> = CIPHER_SUITES
            .iter()
            .filter(|(_, sv)| *sv == version)
            .map(|(n, _)| *n)
            .collect();
        // Narrowing the versions is the other way out, if one remains.
        let instead = match version {
            TlsVersion::Tls12 if max == TlsVersion::Tls13 => ", or set `min_version = \"1.3\"`",
            TlsVersion::Tls13 if min == TlsVersion::Tls12 => ", or set `max_version = \"1.2\"`",
            _ => "",
        };
        let message = format!(
            "`cipher_suites` has no TLS {v} suite, but TLS {v} is enabled: add one of {}{instead}",
            of_version.join(", ")
        );
        ctx.error(list.span(), message);
        ok = false;
    }
    ok.then(|| out.into_iter().map(|(n, _)| n.to_owned()).collect())
}

/// Why `name`, not one of `CIPHER_SUITES`, is refused.
fn refused(name: &str) -> String {
    let supported: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
    let supported = supported.join(", ");
    if is_weak(name) {
        return format!(
            "`{name}` is a weak cipher suite and is not supported; supported suites: {supported}"
        );
    }
    let hint = suggestion(name)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!("unknown cipher suite `{name}`{hint}; supported suites: {supported}")
}

/// A supported suite `name` probably means: the same in another case, the
/// IANA name of a TLS 1.3 suite (`TLS_AES_128_GCM_SHA256`, which rustls
/// and this file call `TLS13_AES_128_GCM_SHA256`) or an OpenSSL name.
fn suggestion(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let tls13 = upper
        .strip_prefix("TLS_")
        .map(|rest| format!("TLS13_{rest}"));
    let supported = CIPHER_SUITES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == upper || Some(*n) == tls13.as_deref());
    let openssl = || {
        OPENSSL_NAMES
            .iter()
            .find(|(openssl, _)| *openssl == upper)
            .map(|(_, iana)| *iana)
    };
    supported.or_else(openssl)
}

/// Whether `name` is a weak suite: CBC, RC4, DES or 3DES, NULL, EXPORT,
/// anonymous or MD5 in an IANA name, static RSA key exchange
/// (`TLS_RSA_WITH_…`), or an OpenSSL name of such a suite.
fn is_weak(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let marks = ["CBC", "RC4", "DES", "NULL", "EXPORT", "ANON", "MD5"];
    marks.iter().any(|m| upper.contains(m))
        || upper.starts_with("TLS_RSA_WITH_")
        || upper.starts_with("SSL_RSA_WITH_")
        || weak_openssl_name(&upper)
}

/// OpenSSL spells suites with dashes and leaves CBC unsaid
/// (`ECDHE-RSA-AES128-SHA`): a block cipher suite without an AEAD (GCM,
/// CCM, ChaCha20-Poly1305) is CBC; one that starts with its cipher
/// (`AES128-GCM-SHA256`) has static RSA key exchange; `ADH` and `AECDH` are
/// anonymous.
fn weak_openssl_name(upper: &str) -> bool {
    if !upper.contains('-') || upper.contains('_') {
        return false;
    }
    let first = upper.split('-').next().unwrap_or_default();
    let ciphers = ["AES", "CAMELLIA", "ARIA", "SEED", "IDEA"];
    let block_cipher = ciphers.iter().any(|c| upper.contains(c));
    let aead = ["GCM", "CCM", "CHACHA20"].iter().any(|a| upper.contains(a));
    let static_rsa = ciphers.iter().any(|c| first.starts_with(c));
    (block_cipher && !aead) || static_rsa || matches!(first, "ADH" | "AECDH")
}

#[cfg(test)]
mod tests {
    use super::{is_weak, suggestion};

    #[test]
    fn weak_suites_are_recognised_by_name() {
        for weak in [
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
            "TLS_NULL_WITH_NULL_NULL",
            "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
            "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
            "SSL_RSA_WITH_DES_CBC_SHA",
            "ECDHE-RSA-AES128-SHA",
            "ECDHE-ECDSA-AES256-SHA384",
            "AES128-GCM-SHA256",
            "DES-CBC3-SHA",
            "RC4-MD5",
            "ADH-AES256-GCM-SHA384",
        ] {
            assert!(is_weak(weak), "{weak}");
        }
        for not_weak in [
            "TLS13_AES_128_GCM_SHA256",
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_CCM",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-RSA-CHACHA20-POLY1305",
            "DHE-RSA-AES128-GCM-SHA256",
            "my-favourite",
        ] {
            assert!(!is_weak(not_weak), "{not_weak}");
        }
    }

    #[test]
    fn near_misses_get_the_supported_name() {
        assert_eq!(
            suggestion("TLS_AES_128_GCM_SHA256"),
            Some("TLS13_AES_128_GCM_SHA256")
        );
        assert_eq!(
            suggestion("tls_ecdhe_rsa_with_aes_128_gcm_sha256"),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(
            suggestion("ECDHE-ECDSA-CHACHA20-POLY1305"),
            Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
        );
        assert_eq!(suggestion("TLS_ECDHE_RSA_WITH_AES_128_CCM"), None);
    }
}
