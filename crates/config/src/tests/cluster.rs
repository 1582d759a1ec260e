//! `[cluster]`: the defaults, each refusal with its position, and a
//! `password` value never repeated in a message.

use std::time::Duration;

use super::{MINIMAL, error, errors, ok};
use crate::types::{ClientCert, Cluster, ClusterTls, Credentials, Password};

fn with(section: &str) -> String {
    format!("{MINIMAL}[cluster]\n{section}")
}

const REQUIRED: &str = "endpoints = [\"127.0.0.1:2379\"]\nadvertise = \"10.0.0.5\"\n";

#[test]
fn absent_cluster_keys_take_the_documented_defaults() {
    let config = ok(&with(REQUIRED));
    let expected = Cluster {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        prefix: "/baton".into(),
        node: None,
        advertise: "10.0.0.5".into(),
        lease_ttl: Duration::from_secs(10),
        credentials: None,
        tls: None,
    };
    assert_eq!(config.cluster, Some(expected));
}

#[test]
fn endpoints_and_advertise_are_required() {
    assert_eq!(
        errors(&with("")),
        [
            "3:1: missing required key `endpoints` in [cluster]",
            "3:1: missing required key `advertise` in [cluster]"
        ]
    );
}

#[test]
fn an_ipv6_advertised_host_is_kept_without_brackets() {
    for written in ["fd00::5", "[fd00::5]"] {
        let config = ok(&with(&format!(
            "endpoints = [\"[::1]:2379\"]\nadvertise = \"{written}\"\n"
        )));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.advertise, "fd00::5");
        assert_eq!(cluster.endpoints, ["http://[::1]:2379"]);
    }
}

#[test]
fn the_password_comes_from_a_variable_or_a_file() {
    let config = ok(&with(&format!(
        "{REQUIRED}username = \"baton\"\npassword = \"env:ETCD_PASSWORD\"\n"
    )));
    let credentials = Credentials {
        username: "baton".into(),
        password: Password::Env("ETCD_PASSWORD".into()),
    };
    assert_eq!(config.cluster.unwrap().credentials, Some(credentials));
}

#[test]
fn each_invalid_value_is_refused_at_its_position() {
    let cases = [
        (
            "endpoints = []\nadvertise = \"h\"\n",
            "4:13: `endpoints` must list 1 to 16 etcd URLs, not 0",
        ),
        (
            "endpoints = [\"https://e:2379\"]\nadvertise = \"h\"\n",
            "3:1: https:// endpoints need `ca`, the PEM file of the CA that signed etcd's certificate",
        ),
        (
            "endpoints = [\"https://e:2379\", \"http://f:2379\"]\nadvertise = \"h\"\nca = \"ca.pem\"\n",
            "4:32: endpoint \"http://f:2379\" does not use the scheme of the first one: either every endpoint is http:// or every one is https://",
        ),
        (
            "endpoints = [\"e:1\"]\nadvertise = \"h\"\nca = \"ca.pem\"\n",
            "6:6: `ca` is for TLS to etcd: the endpoints must be https:// URLs",
        ),
        (
            "endpoints = [\"https://e:1\"]\nadvertise = \"h\"\nca = \"ca.pem\"\ncert = \"c.pem\"\n",
            "7:8: `cert` needs `key`, the client certificate's private key",
        ),
        (
            "endpoints = [\"https://e:1\"]\nadvertise = \"h\"\nca = \"\"\n",
            "6:6: `ca` is empty: give the path of a PEM file",
        ),
        (
            "endpoints = [\"ftp://e:2379\"]\nadvertise = \"h\"\n",
            "4:14: invalid endpoint \"ftp://e:2379\": expected http://HOST:PORT or https://HOST:PORT, like http://10.0.0.1:2379",
        ),
        (
            "endpoints = [\"e\"]\nadvertise = \"h\"\n",
            "4:14: invalid endpoint \"e\": expected http://HOST:PORT or https://HOST:PORT, like http://10.0.0.1:2379",
        ),
        (
            "endpoints = [\"http://e:2379/v3\"]\nadvertise = \"h\"\n",
            "4:14: invalid endpoint \"http://e:2379/v3\": no path, query or user in the URL; expected http://HOST:PORT or https://HOST:PORT, like http://10.0.0.1:2379",
        ),
        (
            "endpoints = [\"e:1\", \"http://e:1\"]\nadvertise = \"h\"\n",
            "4:21: endpoint \"http://e:1\" is listed twice",
        ),
        (
            &format!("{REQUIRED}prefix = \"baton\"\n"),
            "6:10: invalid `prefix` \"baton\": expected like \"/baton\": starts with '/', no trailing '/', segments of letters, digits, '-', '_' or '.', 256 bytes at most",
        ),
        (
            &format!("{REQUIRED}prefix = \"/a//b\"\n"),
            "6:10: invalid `prefix` \"/a//b\": expected like \"/baton\": starts with '/', no trailing '/', segments of letters, digits, '-', '_' or '.', 256 bytes at most",
        ),
        (
            &format!("{REQUIRED}prefix = \"/baton/\"\n"),
            "6:10: invalid `prefix` \"/baton/\": expected like \"/baton\": starts with '/', no trailing '/', segments of letters, digits, '-', '_' or '.', 256 bytes at most",
        ),
        (
            &format!("{REQUIRED}node = \"a/b\"\n"),
            "6:8: invalid node name \"a/b\": use 1 to 128 letters, digits, '-', '_' or '.'",
        ),
        (
            &format!("{REQUIRED}node = \"..\"\n"),
            "6:8: invalid node name \"..\": not '.' or '..'",
        ),
        (
            "endpoints = [\"e:1\"]\nadvertise = \"h:80\"\n",
            "5:13: invalid `advertise` \"h:80\": expected an IP address or a host name without a port, like \"10.0.0.5\" or \"node-a.internal\"",
        ),
        (
            &format!("{REQUIRED}lease_ttl = \"1s\"\n"),
            "6:13: `lease_ttl` must be whole seconds from 2s to 1h (etcd counts leases in seconds), not \"1s\"",
        ),
        (
            &format!("{REQUIRED}lease_ttl = \"61m\"\n"),
            "6:13: `lease_ttl` must be whole seconds from 2s to 1h (etcd counts leases in seconds), not \"61m\"",
        ),
        (
            &format!("{REQUIRED}lease_ttl = \"2500ms\"\n"),
            "6:13: `lease_ttl` must be whole seconds from 2s to 1h (etcd counts leases in seconds), not \"2500ms\"",
        ),
        (
            &format!("{REQUIRED}username = \"baton\"\n"),
            "6:12: `username` needs `password` (\"env:NAME\" or \"file:PATH\")",
        ),
        (
            &format!("{REQUIRED}password = \"env:X\"\n"),
            "6:12: `password` needs `username`",
        ),
        (
            &format!("{REQUIRED}username = \"\"\npassword = \"env:X\"\n"),
            "6:12: invalid `username`: 1 to 256 characters, no control characters",
        ),
        (
            &format!("{REQUIRED}username = \"u\"\npassword = \"env:1X\"\n"),
            "7:12: invalid `password`: after \"env:\", the name of an environment variable (letters, digits and '_', not starting with a digit)",
        ),
        (
            &format!("{REQUIRED}username = \"u\"\npassword = \"file:\"\n"),
            "7:12: invalid `password`: after \"file:\", the path of a file",
        ),
    ];
    for (section, expected) in cases {
        assert_eq!(error(&with(section)), expected, "{section}");
    }
}

#[test]
fn https_endpoints_take_a_ca_and_a_client_certificate() {
    let config = ok(&with(
        "endpoints = [\"https://10.0.0.1:2379\", \"HTTPS://etcd-2:2379\"]\nadvertise = \"h\"\nca = \"/etc/baton/etcd-ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n",
    ));
    let cluster = config.cluster.unwrap();
    assert_eq!(
        cluster.endpoints,
        ["https://10.0.0.1:2379", "https://etcd-2:2379"]
    );
    let tls = ClusterTls {
        ca: "/etc/baton/etcd-ca.pem".into(),
        client: Some(ClientCert {
            cert: "node.pem".into(),
            key: "node.key".into(),
        }),
    };
    assert_eq!(cluster.tls, Some(tls));
    let without_client = ok(&with(
        "endpoints = [\"https://e:1\"]\nadvertise = \"h\"\nca = \"ca.pem\"\n",
    ));
    let tls = without_client.cluster.unwrap().tls.unwrap();
    assert_eq!(tls.client, None);
}

#[test]
fn a_password_written_inline_is_refused_without_repeating_it() {
    let source = with(&format!(
        "{REQUIRED}username = \"u\"\npassword = \"hunter2\"\n"
    ));
    let message = error(&source);
    assert_eq!(
        message,
        "7:12: invalid `password`: expected \"env:NAME\" or \"file:PATH\", where the password is; never the password itself"
    );
    assert!(!message.contains("hunter2"));
}

#[test]
fn a_wrong_type_or_an_unknown_key_is_refused() {
    assert_eq!(
        errors(&with(&format!("{REQUIRED}lease = \"10s\"\nnode = 7\n"))),
        [
            "6:1: unknown key `lease` in [cluster]; expected one of: endpoints, prefix, node, advertise, lease_ttl, username, password, ca, cert, key",
            "7:8: `node` in [cluster] must be a string, not an integer"
        ]
    );
}

/// A pool that takes its members from the registry.
fn discovering(discover: &str) -> String {
    format!(
        "{MINIMAL}[cluster]\n{REQUIRED}[pool.everywhere]\ndiscover = {discover}\n[[route]]\npool = \"everywhere\"\n"
    )
}

#[test]
fn a_pool_discovers_its_members_in_the_registry() {
    let config = ok(&discovering("\"web\""));
    let pool = &config.pools["everywhere"];
    assert_eq!(pool.discover.as_deref(), Some("web"));
    assert!(pool.members.is_empty());
}

#[test]
fn discover_is_refused_with_members_without_cluster_or_with_an_invalid_name() {
    assert_eq!(
        error(&discovering(
            "\"web\"\nmembers = [{ address = \"127.0.0.1:9001\" }]"
        )),
        "8:11: `members` conflicts with `discover` in [pool.everywhere]: give exactly one of them"
    );
    assert_eq!(
        error(&discovering("\"..\"")),
        "7:12: invalid service name \"..\": not '.' or '..'"
    );
    assert_eq!(
        error(&discovering("\"a/b\"")),
        "7:12: invalid service name \"a/b\": use 1 to 128 letters, digits, '-', '_' or '.'"
    );
    assert_eq!(
        error(&format!(
            "{MINIMAL}[pool.everywhere]\ndiscover = \"web\"\n[[route]]\npool = \"everywhere\"\n"
        )),
        "4:12: pool \"everywhere\" discovers its members in the cluster registry, which needs a [cluster] section"
    );
    assert_eq!(
        error(&format!(
            "{MINIMAL}[pool.everywhere]\n[[route]]\npool = \"everywhere\"\n"
        )),
        "3:1: missing `members` or `discover` in [pool.everywhere]: give exactly one of them"
    );
}
