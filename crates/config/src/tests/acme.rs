//! Rules of `[acme]` and of what it needs from the listeners: one that
//! serves its certificate, one without TLS for the HTTP-01 challenge.

use std::time::Duration;

use super::tls::{https, with_acme, with_cert};
use super::{MINIMAL, error, errors, ok};

#[test]
fn acme_with_its_defaults() {
    let config = ok(&with_acme(""));
    let acme = config.acme.unwrap();
    assert_eq!(
        acme.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(acme.names, ["example.com"]);
    assert!(acme.contact.is_empty());
    assert_eq!(acme.ca_bundle, None);
    assert_eq!(acme.renew_before, Duration::from_secs(30 * 86400));
    let tls = config.listeners[1].tls.as_ref().unwrap();
    assert!(tls.acme && tls.certificates.is_empty());
}

#[test]
fn acme_needs_a_section_a_serving_listener_and_a_plain_one() {
    assert_eq!(
        error(&https("acme = true")),
        "8:8: `acme = true` but there is no [acme] section: add one (it names the DNS names to obtain a certificate for), or serve `certificates` only"
    );
    let source = format!("{}[acme]\nnames = [\"example.com\"]\n", with_cert(""));
    assert_eq!(
        error(&source),
        "10:1: no listener has `acme = true` in its [listener.tls], so nothing would serve the certificates [acme] obtains"
    );
    let source = format!("{MINIMAL}[acme]\nnames = [\"example.com\"]\n");
    let all = errors(&source);
    assert_eq!(
        all,
        [
            "3:1: no listener has `acme = true` in its [listener.tls], so nothing would serve the certificates [acme] obtains"
        ]
    );
    let only_https = "[[listener]]\naddress = \"127.0.0.1:443\"\n[listener.tls]\nacme = true\n[acme]\nnames = [\"example.com\"]\n";
    assert_eq!(
        error(only_https),
        "5:1: [acme] proves the names with the HTTP-01 challenge, which the CA sends over plain HTTP, but every listener has `tls`: add one without (on port 80, where the CA connects)"
    );
    // A redirecting listener answers the challenge: it counts as plain.
    let with_redirect = only_https.replace(
        "[acme]",
        "[[listener]]\naddress = \"127.0.0.1:80\"\nredirect_https = true\n[acme]",
    );
    assert_eq!(ok(&with_redirect).listeners[1].redirect_https, Some(443));
    // The listener's own mistakes do not hide the certificates it serves.
    let broken = with_acme("").replace("127.0.0.1:443", "nowhere");
    assert_eq!(
        error(&broken),
        "6:11: could not parse listen address \"nowhere\": expected IP:PORT (e.g. 127.0.0.1:8080, [::1]:0) or unix:PATH"
    );
    assert_eq!(
        error(&format!("{}[acme]\n", https("acme = true"))),
        "9:1: missing required key `names` in [acme]"
    );
}

#[test]
fn acme_directory_is_https_or_local_http() {
    for fine in [
        "https://acme.example.com/dir",
        "HTTPS://acme.example.com:8443/dir",
        "http://localhost:14000/dir",
        "http://127.0.0.1:14000/dir",
        "http://127.1.2.3/dir",
        "http://[::1]:14000/dir",
    ] {
        let config = ok(&with_acme(&format!("directory = \"{fine}\"")));
        assert_eq!(config.acme.unwrap().directory, fine);
    }
    let plain = "plain http:// is allowed only for an ACME server on this machine (localhost, 127.0.0.0/8, [::1]); use https://";
    let expected =
        "expected an https:// URL, like \"https://acme-v02.api.letsencrypt.org/directory\"";
    for (bad, reason) in [
        ("http://acme.example.com/dir", plain),
        ("http://10.0.0.1/dir", plain),
        ("http://localhost.example.com/dir", plain),
        ("ftp://acme.example.com/dir", expected),
        ("acme.example.com/dir", expected),
        ("https:///dir", expected),
        ("", expected),
    ] {
        assert_eq!(
            error(&with_acme(&format!("directory = \"{bad}\""))),
            format!("11:13: invalid `directory` {bad:?}: {reason}")
        );
    }
}

#[test]
fn acme_contacts_are_mailto_urls() {
    let config = ok(&with_acme(
        "contact = [\"mailto:a@example.com\", \"MAILTO:b@example.com\"]",
    ));
    assert_eq!(
        config.acme.unwrap().contact,
        ["mailto:a@example.com", "MAILTO:b@example.com"]
    );
    let all = errors(&with_acme(
        "contact = [\"ops@example.com\", \"mailto:\", \"mailto:a@x, b@y\", \"mailto:c@x\", \"mailto:c@x\"]",
    ));
    let reason = "expected a mailto: URL with one address, like \"mailto:ops@example.com\"";
    assert_eq!(
        all,
        [
            format!("11:12: invalid `contact` \"ops@example.com\": {reason}"),
            format!("11:31: invalid `contact` \"mailto:\": {reason}"),
            format!("11:42: invalid `contact` \"mailto:a@x, b@y\": {reason}"),
            "11:75: contact \"mailto:c@x\" is listed twice".to_owned(),
        ]
    );
}

/// [`with_acme`] with these names instead (line 10).
fn names(list: &str) -> String {
    with_acme("").replace("names = [\"example.com\"]", &format!("names = [{list}]"))
}

#[test]
fn acme_names() {
    let config = ok(&names(
        "\"Example.COM\", \"www.example.com\", \"xn--bcher-kva.example\"",
    ));
    assert_eq!(
        config.acme.unwrap().names,
        ["example.com", "www.example.com", "xn--bcher-kva.example"],
        "lower-cased, in file order"
    );
    assert_eq!(
        error(&names("")),
        "10:9: `names` is empty: list the DNS names to obtain a certificate for"
    );
    let all = errors(&names(
        "\"*.example.com\", \"192.0.2.1\", \"example.com.\", \"bücher.example\", \"-a.example\", \"a_b.example\"",
    ));
    assert_eq!(
        all,
        [
            "10:10: invalid name \"*.example.com\" in `names`: HTTP-01 cannot validate wildcard names; list each name, or serve a wildcard certificate from files (`certificates` in [listener.tls])",
            "10:27: invalid name \"192.0.2.1\" in `names`: an IP address; the ACME certificate is for DNS names",
            "10:40: invalid name \"example.com.\" in `names`: write the name without the final dot",
            "10:56: invalid name \"bücher.example\" in `names`: expected a DNS name like example.com: letters, digits and '-' (an internationalized name in its xn-- form)",
            "10:74: invalid name \"-a.example\" in `names`: expected a DNS name like example.com: letters, digits and '-' (an internationalized name in its xn-- form)",
            "10:88: invalid name \"a_b.example\" in `names`: expected a DNS name like example.com: letters, digits and '-' (an internationalized name in its xn-- form)",
        ]
    );
    let all = errors(&names(
        "\"example.com\", \"www.example.com\", \"WWW.Example.com\", \"example.com\"",
    ));
    assert_eq!(
        all,
        [
            "10:44: `names` lists \"WWW.Example.com\" twice (as \"www.example.com\"; names are case-insensitive)",
            "10:63: `names` lists \"example.com\" twice",
        ]
    );
}

#[test]
fn acme_renewal_and_ca_bundle() {
    let config = ok(&with_acme(
        "renew_before = \"10d\"\nca_bundle = \"pebble.minica.pem\"",
    ));
    let acme = config.acme.unwrap();
    assert_eq!(acme.renew_before, Duration::from_secs(10 * 86400));
    assert_eq!(acme.ca_bundle, Some("pebble.minica.pem".into()));
    assert_eq!(
        error(&with_acme("renew_before = \"0s\"")),
        "11:16: `renew_before` must be greater than 0"
    );
    assert_eq!(
        error(&with_acme("ca_bundle = \"\"")),
        "11:13: `ca_bundle` is empty: give the path of a PEM file"
    );
}
