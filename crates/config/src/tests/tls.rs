//! Rules of HTTPS: `[listener.tls]` (certificates, versions, cipher suites,
//! HSTS), `redirect_https` and `[pool.NAME.tls]` / `[service.NAME.tls]`;
//! `[acme]` is in `acme`.

use std::time::Duration;

use super::{BASE, MINIMAL, error, errors, ok};
use crate::types::{CIPHER_SUITES, CertificateFiles, ListenAddr, TlsVersion, UpstreamTls};

/// A plain listener (lines 1-3), an HTTPS one (4-6) and its
/// `[listener.tls]` (line 7) with `lines` from line 8.
pub(super) fn https(lines: &str) -> String {
    format!(
        "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:80\"\n[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:443\"\n[listener.tls]\n{lines}\n"
    )
}

pub(super) const CERT: &str = "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]";

/// [`https`] with a certificate (line 8) and `lines` from line 9.
pub(super) fn with_cert(lines: &str) -> String {
    https(&format!("{CERT}\n{lines}"))
}

/// [`https`] with `acme = true` (line 8), then `[acme]` (line 9) with one
/// name (line 10) and `lines` from line 11.
pub(super) fn with_acme(lines: &str) -> String {
    format!(
        "{}[acme]\nnames = [\"example.com\"]\n{lines}\n",
        https("acme = true")
    )
}

#[test]
fn a_listener_with_a_certificate_and_the_defaults() {
    let config = ok(&with_cert(""));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates,
        [CertificateFiles {
            cert: "site.pem".into(),
            key: "site.key".into()
        }],
        "relative paths are kept as written (relative to baton's working directory)"
    );
    assert!(!tls.acme);
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
    assert_eq!((&tls.cipher_suites, &tls.hsts), (&None, &None));
    assert_eq!(config.listeners[0].tls, None);
    let certs = "certificates = [\n  { cert = \"a.pem\", key = \"a.key\" },\n  { cert = \"/etc/b.pem\", key = \"/etc/b.pem\" },\n]";
    let config = ok(&https(certs));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    let files: Vec<_> = tls.certificates.iter().map(|c| c.cert.clone()).collect();
    assert_eq!(
        files,
        ["a.pem", "/etc/b.pem"].map(std::path::PathBuf::from),
        "file order"
    );
    // The [[listener.tls.certificates]] spelling is the same array.
    let config = ok(&https(
        "[[listener.tls.certificates]]\ncert = \"c.pem\"\nkey = \"c.key\"",
    ));
    assert_eq!(
        config.listeners[1].tls.as_ref().unwrap().certificates.len(),
        1
    );
}

#[test]
fn a_unix_listener_may_have_tls() {
    let source = format!("[[listener]]\naddress = \"unix:/run/b.sock\"\n[listener.tls]\n{CERT}\n");
    let config = ok(&source);
    assert_eq!(
        config.listeners[0].address,
        ListenAddr::Unix("/run/b.sock".into())
    );
    assert!(config.listeners[0].tls.is_some());
}

#[test]
fn a_listener_needs_a_certificate_or_acme() {
    let message = "[listener.tls] has no certificate to serve: list `certificates`, or set `acme = true` to serve those of [acme]";
    assert_eq!(error(&https("")), format!("7:1: {message}"));
    assert_eq!(
        error(&https("certificates = []")),
        format!("8:16: {message}")
    );
    assert_eq!(
        error(&https("certificates = []\nacme = false")),
        format!("8:16: {message}")
    );
}

#[test]
fn certificate_paths() {
    let all = errors(&https(
        "certificates = [{ cert = \"\", key = \"k\" }, { cert = \"c\", key = \"\" }, { cert = \"c\", key = \"k\" }, { cert = \"x\\u0000\", key = \"k\" }]",
    ));
    assert_eq!(
        all,
        [
            "8:26: `cert` is empty: give the path of a PEM file",
            "8:63: `key` is empty: give the path of a PEM file",
            "8:78: certificate \"c\" is listed twice in this listener",
            "8:105: `cert` \"x\\0\" contains a NUL character, which no file name can",
        ]
    );
    assert_eq!(
        error(&https("certificates = [{ cert = \"c.pem\" }]")),
        "8:17: missing required key `key` in a certificate of [listener.tls]"
    );
    assert_eq!(
        error(&https(
            "certificates = [{ cert = \"c.pem\", keys = \"k\" }]"
        )),
        "8:35: unknown key `keys` in a certificate of [listener.tls] (did you mean `key`?); expected one of: cert, key"
    );
    assert_eq!(
        error(&https("certificate = \"c.pem\"")),
        "8:1: unknown key `certificate` in [listener.tls] (did you mean `certificates`?); expected one of: certificates, acme, min_version, max_version, cipher_suites, hsts",
        "the typo is not also reported as a listener without certificates"
    );
    let typo = with_acme("").replace("acme = true", "acm = true");
    assert_eq!(
        error(&typo),
        "8:1: unknown key `acm` in [listener.tls] (did you mean `acme`?); expected one of: certificates, acme, min_version, max_version, cipher_suites, hsts",
        "nor as a listener without certificates, nor as [acme] that nothing serves"
    );
    let typo = with_acme("").replace("[acme]", "[acmee]");
    assert_eq!(
        error(&typo),
        "9:2: unknown key `acmee` at the top level (did you mean `acme`?); expected one of: proxy, access_log, listener, acme, pool, service, route, cluster, admin",
        "nor as `acme = true` without [acme]"
    );
}

#[test]
fn tls_versions() {
    let config = ok(&with_cert("min_version = \"1.3\""));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls13, TlsVersion::Tls13)
    );
    let config = ok(&with_cert("max_version = \"1.2\""));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(tls.max_version, TlsVersion::Tls12);
    let old = "TLS 1.1 and older are insecure and not supported; use \"1.2\" or \"1.3\"";
    for (bad, column, reason) in [
        ("1.1", 15, old.to_owned()),
        ("1.0", 15, old.to_owned()),
        ("TLSv1", 15, old.to_owned()),
        ("ssl3", 15, old.to_owned()),
        ("SSLv3", 15, old.to_owned()),
        ("TLSv1.2", 15, "write the version alone, \"1.2\"".to_owned()),
        ("tls1_3", 15, "write the version alone, \"1.3\"".to_owned()),
    ] {
        assert_eq!(
            error(&with_cert(&format!("min_version = \"{bad}\""))),
            format!("9:{column}: invalid `min_version` \"{bad}\": {reason}")
        );
    }
    assert_eq!(
        error(&with_cert("max_version = \"1.4\"")),
        "9:15: unknown `max_version` \"1.4\"; expected \"1.2\" or \"1.3\""
    );
    assert_eq!(
        error(&with_cert("max_version = \"1.1\"")),
        format!("9:15: invalid `max_version` \"1.1\": {old}")
    );
    assert_eq!(
        error(&with_cert("min_version = \"1.3\"\nmax_version = \"1.2\"")),
        "10:15: `min_version` (1.3) is above `max_version` (1.2)"
    );
    assert_eq!(
        error(&with_cert("max_version = 1.3")),
        "9:15: `max_version` in [listener.tls] must be a string, not a float"
    );
}

#[test]
fn cipher_suites_by_name() {
    let suites =
        "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS13_AES_128_GCM_SHA256\"]";
    let config = ok(&with_cert(suites));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert_eq!(
        tls.cipher_suites.as_deref().unwrap(),
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS13_AES_128_GCM_SHA256"
        ],
        "in the order given"
    );
    let every: Vec<String> = CIPHER_SUITES
        .iter()
        .map(|(n, _)| format!("{n:?}"))
        .collect();
    ok(&with_cert(&format!(
        "cipher_suites = [{}]",
        every.join(", ")
    )));
    let supported: Vec<&str> = CIPHER_SUITES.iter().map(|(n, _)| *n).collect();
    let supported = supported.join(", ");
    let all = errors(&with_cert(
        "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256\", \"TLS_RSA_WITH_AES_256_GCM_SHA384\", \"ECDHE-RSA-AES128-SHA\", \"DES-CBC3-SHA\", \"TLS_AES_128_GCM_SHA256\", \"ECDHE-RSA-AES128-GCM-SHA256\", \"TLS_FANCY\"]",
    ));
    assert_eq!(
        all,
        [
            format!(
                "9:18: `TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256` is a weak cipher suite and is not supported; supported suites: {supported}"
            ),
            format!(
                "9:59: `TLS_RSA_WITH_AES_256_GCM_SHA384` is a weak cipher suite and is not supported; supported suites: {supported}"
            ),
            format!(
                "9:94: `ECDHE-RSA-AES128-SHA` is a weak cipher suite and is not supported; supported suites: {supported}"
            ),
            format!(
                "9:118: `DES-CBC3-SHA` is a weak cipher suite and is not supported; supported suites: {supported}"
            ),
            format!(
                "9:134: unknown cipher suite `TLS_AES_128_GCM_SHA256` (did you mean `TLS13_AES_128_GCM_SHA256`?); supported suites: {supported}"
            ),
            format!(
                "9:160: unknown cipher suite `ECDHE-RSA-AES128-GCM-SHA256` (did you mean `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`?); supported suites: {supported}"
            ),
            format!("9:191: unknown cipher suite `TLS_FANCY`; supported suites: {supported}"),
        ]
    );
    assert_eq!(
        error(&with_cert(
            "cipher_suites = [\"TLS13_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS13_AES_128_GCM_SHA256\"]"
        )),
        "9:87: cipher suite `TLS13_AES_128_GCM_SHA256` is listed twice"
    );
    assert_eq!(
        error(&with_cert("cipher_suites = []")),
        "9:17: `cipher_suites` is empty, so no handshake could succeed; omit it to allow every supported suite"
    );
}

#[test]
fn every_enabled_version_keeps_a_cipher_suite() {
    let tls12_only = "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]";
    let tls13_only = "cipher_suites = [\"TLS13_AES_128_GCM_SHA256\"]";
    let tls13_names =
        "TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256, TLS13_CHACHA20_POLY1305_SHA256";
    assert_eq!(
        error(&with_cert(tls12_only)),
        format!(
            "9:17: `cipher_suites` has no TLS 1.3 suite, but TLS 1.3 is enabled: add one of {tls13_names}, or set `max_version = \"1.2\"`"
        )
    );
    assert_eq!(
        error(&with_cert(&format!("min_version = \"1.3\"\n{tls12_only}"))),
        format!(
            "10:17: `cipher_suites` has no TLS 1.3 suite, but TLS 1.3 is enabled: add one of {tls13_names}"
        ),
        "min 1.3 with TLS 1.2 suites only"
    );
    let e = error(&with_cert(tls13_only));
    assert!(
        e.starts_with("9:17: `cipher_suites` has no TLS 1.2 suite, but TLS 1.2 is enabled: add one of TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "),
        "{e}"
    );
    assert!(e.ends_with(", or set `min_version = \"1.3\"`"), "{e}");
    // Narrowed versions make them valid; a suite of a version not enabled
    // is allowed (unused).
    ok(&with_cert(&format!("max_version = \"1.2\"\n{tls12_only}")));
    ok(&with_cert(&format!("min_version = \"1.3\"\n{tls13_only}")));
    let mixed =
        "cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS13_AES_128_GCM_SHA256\"]";
    ok(&with_cert(&format!("min_version = \"1.3\"\n{mixed}")));
}

#[test]
fn hsts() {
    let config = ok(&with_cert("[listener.tls.hsts]\nmax_age = \"180d\""));
    let hsts = config.listeners[1]
        .tls
        .as_ref()
        .unwrap()
        .hsts
        .clone()
        .unwrap();
    assert_eq!(hsts.max_age, Duration::from_secs(180 * 86400));
    assert!(!hsts.include_subdomains && !hsts.preload);
    assert_eq!(hsts.header_value(), "max-age=15552000");
    let config = ok(&with_cert(
        "hsts = { max_age = \"1y\", include_subdomains = true, preload = true }",
    ));
    let hsts = config.listeners[1]
        .tls
        .as_ref()
        .unwrap()
        .hsts
        .clone()
        .unwrap();
    assert_eq!(
        hsts.max_age,
        Duration::from_secs(31_557_600),
        "humantime's year"
    );
    assert_eq!(
        error(&with_cert("[listener.tls.hsts]\ninclude_subdomains = true")),
        "9:1: missing required key `max_age` in [listener.tls.hsts]"
    );
    assert_eq!(
        error(&with_cert("[listener.tls.hsts]\nmax_age = \"0s\"")),
        "10:11: `max_age` must be greater than 0"
    );
    assert_eq!(
        error(&with_cert("[listener.tls.hsts]\nmax_age = \"1500ms\"")),
        "10:11: `max_age` must be whole seconds (the header counts seconds), not \"1500ms\""
    );
    let all = errors(&with_cert(
        "[listener.tls.hsts]\nmax_age = \"180d\"\npreload = true",
    ));
    assert_eq!(
        all,
        [
            "11:11: `preload` requires `include_subdomains = true`: the preload list covers a domain with all its subdomains",
            "11:11: `preload` requires a `max_age` of at least 365d (the preload list's minimum), not 180d",
        ]
    );
    assert_eq!(
        error(&with_cert(
            "[listener.tls.hsts]\nmax_age = \"3600s\"\ninclude_subdomains = true\npreload = true"
        )),
        "12:11: `preload` requires a `max_age` of at least 365d (the preload list's minimum), not 3600s"
    );
    ok(&with_cert(
        "[listener.tls.hsts]\nmax_age = \"365d\"\ninclude_subdomains = true\npreload = true",
    ));
}

/// A plain listener with `redirect_https` (line 3).
fn redirect(value: &str) -> String {
    format!("{MINIMAL}redirect_https = {value}\n")
}

#[test]
fn redirect_https_to_a_port() {
    let port = |value| ok(&redirect(value)).listeners[0].redirect_https;
    assert_eq!(port("443"), Some(443));
    assert_eq!(port("8443"), Some(8443));
    assert_eq!(port("true"), Some(443));
    assert_eq!(port("false"), None);
    for bad in ["0", "65536", "-1"] {
        assert_eq!(
            error(&redirect(bad)),
            format!(
                "3:18: `redirect_https` must be a port between 1 and 65535 (or `true` for 443), not {bad}"
            )
        );
    }
    assert_eq!(
        error(&redirect("\"443\"")),
        "3:18: `redirect_https` in [[listener]] must be a port (an integer) or a boolean, not a string"
    );
}

#[test]
fn redirect_https_only_on_a_plain_listener() {
    let source = format!(
        "[[listener]]\naddress = \"127.0.0.1:443\"\nredirect_https = 443\n[listener.tls]\n{CERT}\n"
    );
    assert_eq!(
        error(&source),
        "3:18: `redirect_https` is for a plain-HTTP listener, but this one has [listener.tls]: it already speaks HTTPS"
    );
    let source = source.replace("redirect_https = 443", "redirect_https = false");
    assert_eq!(ok(&source).listeners[0].redirect_https, None);
}

/// [`BASE`] with `[pool.app.tls]` (line 10) and `lines` from line 11.
fn pool_tls(lines: &str) -> String {
    format!("{BASE}[pool.app.tls]\n{lines}\n")
}

#[test]
fn upstream_tls_of_pools_and_services() {
    let config = ok(&pool_tls(""));
    assert_eq!(
        config.pools["app"].forward.tls,
        Some(UpstreamTls {
            ca_bundle: None,
            server_name: None
        }),
        "an empty table turns HTTPS on"
    );
    for (written, kept) in [
        ("App.Internal", "app.internal"),
        ("10.0.0.7", "10.0.0.7"),
        ("::1", "::1"),
        ("[::1]", "::1"),
    ] {
        let config = ok(&pool_tls(&format!("server_name = \"{written}\"")));
        let tls = config.pools["app"].forward.tls.clone().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some(kept));
    }
    for (bad, reason) in [
        (
            "*.internal",
            "a wildcard cannot be sent as SNI; give the name itself",
        ),
        ("app.internal:8443", "give the name without a port"),
        ("app.internal.", "write the name without the final dot"),
        (
            "app internal",
            "expected a DNS name like app.internal or an IP address",
        ),
        ("", "expected a DNS name like app.internal or an IP address"),
    ] {
        assert_eq!(
            error(&pool_tls(&format!("server_name = \"{bad}\""))),
            format!("11:15: invalid `server_name` {bad:?}: {reason}")
        );
    }
    assert_eq!(
        error(&pool_tls("ca_bundle = \"\"")),
        "11:13: `ca_bundle` is empty: give the path of a PEM file"
    );
    assert_eq!(
        error(&pool_tls("sni = \"x\"")),
        "11:1: unknown key `sni` in [pool.app.tls]; expected one of: ca_bundle, server_name"
    );
    let source = format!(
        "{MINIMAL}[service.api]\ntargets = [\"10.0.0.7:443\"]\n[service.api.tls]\nca_bundle = \"ca.pem\"\n"
    );
    let config = ok(&source);
    assert_eq!(
        config.services["api"].forward.tls,
        Some(UpstreamTls {
            ca_bundle: Some("ca.pem".into()),
            server_name: None
        })
    );
    let pool = config.services["api"].pool(vec![]);
    assert_eq!(
        pool.forward.tls, config.services["api"].forward.tls,
        "the service's pool"
    );
    assert_eq!(
        error(&source.replace("ca.pem", "")),
        "6:13: `ca_bundle` is empty: give the path of a PEM file"
    );
}

#[test]
fn every_error_of_a_broken_https_setup_at_once() {
    let source = r#"[[listener]]
name = "https"
address = "0.0.0.0:443"
redirect_https = 443
[listener.tls]
min_version = "1.1"
cipher_suites = ["TLS_RSA_WITH_RC4_128_SHA"]
[listener.tls.hsts]
max_age = "1d"
preload = true

[acme]
directory = "http://acme.example.com/dir"
names = ["*.example.com"]
"#;
    let all = errors(source);
    assert_eq!(all.len(), 10, "{all:#?}");
    let positions: Vec<&str> = all.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        positions,
        [
            "4:18", "5:1", "6:15", "7:18", "10:11", "10:11", "12:1", "12:1", "13:13", "14:10"
        ],
        "{all:#?}"
    );
    assert!(all[1].contains("no certificate to serve"), "{all:#?}");
    assert!(all[6].contains("nothing would serve"), "{all:#?}");
    assert!(all[7].contains("every listener has `tls`"), "{all:#?}");
}

#[test]
fn the_docs_name_every_cipher_suite() {
    let doc = crate::schema::LISTENER_TLS.key("cipher_suites").doc;
    for (name, _) in CIPHER_SUITES {
        assert!(doc.contains(&format!("`{name}`")), "{name}");
    }
    let listed = doc.matches("`TLS").count();
    assert_eq!(listed, CIPHER_SUITES.len(), "no other suite is named");
}
