//! The schema tables of HTTPS: `[listener.tls]` with its certificates and
//! `hsts`, `[acme]`, and the `tls` section of pools and services. The
//! cipher suite names in the docs are `types::CIPHER_SUITES` (a test checks
//! that they agree).

use super::IfMissing::{Default, Required, Unset};
use super::{Section, Type, key};

pub(crate) static LISTENER_TLS: Section = Section {
    place: "in [listener.tls]",
    heading: "`[listener.tls]`",
    doc: "HTTPS on a listener: baton terminates TLS and handles the requests inside as on a plain listener. In TOML, `[listener.tls]` belongs to the `[[listener]]` written just above it. A Unix-socket listener may have it too. Certificates come from files (`certificates`), from `[acme]` (`acme = true`), or both; see *HTTPS*.",
    keys: &[
        key(
            "certificates",
            Type::Tables(&CERTIFICATE),
            Unset("none; then `acme` must be `true`"),
            "Certificate chains and their keys from PEM files, `[{ cert = \"site.pem\", key = \"site.key\" }, …]`; see *certificates*. A client's SNI name is served the first certificate that covers it (its subject alternative names, `*.` wildcards included); the first one also serves clients without SNI or with a name no certificate covers. At least one unless `acme = true`.",
        ),
        key(
            "acme",
            Type::Bool,
            Default("false"),
            "Also serve the certificates `[acme]` obtains, for the names they cover (they come before `certificates` for those names). Requires an `[acme]` section.",
        ),
        key(
            "min_version",
            Type::String,
            Default("1.2"),
            "Lowest TLS version accepted: `\"1.2\"` or `\"1.3\"`. TLS 1.1 and older (and SSL) are insecure and refused.",
        ),
        key(
            "max_version",
            Type::String,
            Default("1.3"),
            "Highest TLS version accepted: `\"1.2\"` or `\"1.3\"`; not below `min_version`.",
        ),
        key(
            "cipher_suites",
            Type::Strings,
            Unset("all nine listed here, in this order"),
            "Cipher suites allowed, by name, without repeats, in the server's order of preference (baton picks the first one the client offers; the client's own order is ignored). TLS 1.3: `TLS13_AES_256_GCM_SHA384`, `TLS13_AES_128_GCM_SHA256`, `TLS13_CHACHA20_POLY1305_SHA256`. TLS 1.2: `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256`, `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`. Each TLS version from `min_version` to `max_version` needs at least one of its suites (a suite of a version not enabled is allowed and unused). Weak suites (CBC, RC4, DES and 3DES, static RSA key exchange, NULL, EXPORT, anonymous, MD5) are refused, and so is any other name.",
        ),
        key(
            "hsts",
            Type::Table(&HSTS),
            Unset("no Strict-Transport-Security header"),
            "HTTP Strict Transport Security, see `[listener.tls.hsts]`.",
        ),
    ],
};

pub(crate) static CERTIFICATE: Section = Section {
    place: "in a certificate of [listener.tls]",
    heading: "*certificates* (in `[listener.tls]`)",
    doc: "Each certificate is an inline table, `{ cert = \"/etc/baton/site.pem\", key = \"/etc/baton/site.key\" }`, naming two PEM files (one file holding both is fine too). A relative path is relative to the directory baton runs in, not to the configuration file. The configuration only names the files: they are read when the listener starts, and again on reload or when they change (see *HTTPS*).",
    keys: &[
        key(
            "cert",
            Type::String,
            Required,
            "PEM file of the certificate chain: the server's certificate first, then the intermediates. Not empty; no two certificates of a listener name the same file.",
        ),
        key(
            "key",
            Type::String,
            Required,
            "PEM file of the private key (PKCS#8, PKCS#1 or SEC1). Not empty.",
        ),
    ],
};

pub(crate) static HSTS: Section = Section {
    place: "in [listener.tls.hsts]",
    heading: "`[listener.tls.hsts]`",
    doc: "Adds a `Strict-Transport-Security` header to the listener's responses: browsers then use only HTTPS for the host, for `max_age`. Browsers remember it, so start with a short `max_age` and raise it once every page works over HTTPS.",
    keys: &[
        key(
            "max_age",
            Type::Duration,
            Required,
            "How long browsers remember (`max-age`): whole seconds, greater than 0 (`\"365d\"` is 31536000 seconds).",
        ),
        key(
            "include_subdomains",
            Type::Bool,
            Default("false"),
            "Also for every subdomain of the host (`includeSubDomains`).",
        ),
        key(
            "preload",
            Type::Bool,
            Default("false"),
            "Consent to be in the browsers' built-in preload list (`preload`); requires `include_subdomains = true` and a `max_age` of at least `365d`, as the list does.",
        ),
    ],
};

pub(crate) static ACME: Section = Section {
    place: "in [acme]",
    heading: "`[acme]`",
    doc: "A certificate obtained and renewed automatically from an ACME certificate authority (RFC 8555; Let's Encrypt by default): one certificate for all `names`, proven with the HTTP-01 challenge on the plain-HTTP listeners and served by the listeners with `acme = true` in their `[listener.tls]`. At least one listener must have `acme = true`, and at least one must have no `tls` to answer the challenge. Needs a state directory (`baton serve --state DIR`); see *HTTPS*.",
    keys: &[
        key(
            "directory",
            Type::String,
            Default("https://acme-v02.api.letsencrypt.org/directory"),
            "The directory URL of the ACME server. `https://`; `http://` only for a server on this machine (host `localhost`, in `127.0.0.0/8` or `[::1]`), such as a test CA. Let's Encrypt's staging server is `https://acme-staging-v02.api.letsencrypt.org/directory`.",
        ),
        key(
            "contact",
            Type::Strings,
            Unset("no contact"),
            "Contacts of the ACME account, each a `mailto:` URL with one address (`\"mailto:ops@example.com\"`), without repeats; the CA may use them to warn about problems.",
        ),
        key(
            "names",
            Type::Strings,
            Required,
            "The DNS names the certificate is for, at least one, no two equal (case-insensitive). Each must reach this server on port 80 (a plain-HTTP listener), where the CA checks the challenge. No wildcards (HTTP-01 cannot validate them), no IP addresses, no final dot.",
        ),
        key(
            "ca_bundle",
            Type::String,
            Unset("the usual public roots only"),
            "PEM file of further CAs trusted for the HTTPS connection to the ACME server, such as a test CA's (Pebble's `pebble.minica.pem`). A relative path is relative to the directory baton runs in.",
        ),
        key(
            "renew_before",
            Type::Duration,
            Default("30d"),
            "The certificate is renewed once it expires within this long; greater than 0.",
        ),
    ],
};

pub(crate) static UPSTREAM_TLS: Section = Section {
    place: "in [*.tls]",
    heading: "`[pool.NAME.tls]` and `[service.NAME.tls]`",
    doc: "HTTPS to the members of a pool, or to the instances or targets of a service, instead of plain HTTP. The section turns it on even when empty (`[pool.app.tls]` alone). Upstream certificates are always verified.",
    keys: &[
        key(
            "ca_bundle",
            Type::String,
            Unset("the usual public roots"),
            "PEM file of the CAs that may sign the upstream certificates (an internal CA), used instead of the public roots. A relative path is relative to the directory baton runs in.",
        ),
        key(
            "server_name",
            Type::String,
            Unset("each member's host"),
            "The name sent as SNI and that the upstream certificate must cover: a DNS name (`app.internal`) or an IP address. Without it, each member's host as written in its address.",
        ),
    ],
};
