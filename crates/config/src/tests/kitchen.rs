//! The kitchen-sink file (every key) and the defaults (no optional key), plus
//! the proof that the schema table, the serde structs and the kitchen-sink
//! file list the same keys.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{MINIMAL, ok};
use crate::error::Diagnostics;
use crate::raw::*;
use crate::schema::{self, SECTIONS, Section};
use crate::types::*;
use crate::{Template, Version};

pub(crate) const KITCHEN_SINK: &str = include_str!("../../testdata/kitchen-sink.toml");

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn kitchen_sink_parses_into_the_expected_config() {
    let config = ok(KITCHEN_SINK);
    assert_eq!(
        config.proxy,
        ProxySettings {
            workers: Workers::Exactly(NonZeroUsize::new(4).unwrap()),
            drain_timeout: secs(45),
            idle_grace: Duration::from_millis(500),
            trusted_proxies: ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
                .map(|n| n.parse().unwrap())
                .to_vec(),
            request_id_header: HeaderName::from_static("x-trace-id"),
        }
    );
    assert_eq!(
        config.access_log,
        Some(AccessLog {
            target: AccessLogTarget::File("/var/log/baton/access.log".into()),
            format: AccessLogFormat::Json,
        })
    );
    assert_eq!(
        config.listeners[0],
        Listener {
            name: "http".into(),
            address: "0.0.0.0:8080".parse().unwrap(),
            max_connections: 20000,
            header_read_timeout: secs(5),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 1 << 20,
            body_read_timeout: secs(20),
            body_buffer_bytes: 32 << 10,
            write_timeout: secs(30),
            keepalive_timeout: secs(75),
            tls: None,
            redirect_https: None,
        }
    );
    assert_eq!(
        config.listeners[1].address,
        ListenAddr::Unix("/run/baton/http.sock".into())
    );
    let https = &config.listeners[2];
    assert_eq!(https.address, "0.0.0.0:443".parse().unwrap());
    assert_eq!(https.redirect_https, None);
    let files = |cert: &str, key: &str| CertificateFiles {
        cert: cert.into(),
        key: key.into(),
    };
    let tls = Tls {
        certificates: vec![
            files("/etc/baton/example.com.pem", "/etc/baton/example.com.key"),
            files("certs/internal.pem", "certs/internal.key"),
        ],
        acme: true,
        min_version: TlsVersion::Tls13,
        max_version: TlsVersion::Tls13,
        cipher_suites: Some(vec![
            "TLS13_CHACHA20_POLY1305_SHA256".into(),
            "TLS13_AES_256_GCM_SHA384".into(),
        ]),
        hsts: Some(Hsts {
            max_age: secs(365 * 86400),
            include_subdomains: true,
            preload: true,
        }),
    };
    assert_eq!(https.tls.as_ref(), Some(&tls));
    assert_eq!(
        tls.hsts.unwrap().header_value(),
        "max-age=31536000; includeSubDomains; preload"
    );
    let redirect = &config.listeners[3];
    assert_eq!((&redirect.tls, redirect.redirect_https), (&None, Some(443)));
    assert_eq!(
        config.acme,
        Some(Acme {
            directory: "https://acme-staging-v02.api.letsencrypt.org/directory".into(),
            contact: vec![
                "mailto:ops@example.com".into(),
                "mailto:security@example.com".into()
            ],
            names: vec!["example.com".into(), "www.example.com".into()],
            ca_bundle: Some("/etc/baton/acme-ca.pem".into()),
            renew_before: secs(20 * 86400),
        })
    );
    assert_eq!(
        config.cluster,
        Some(Cluster {
            endpoints: vec![
                "https://10.0.0.1:2379".into(),
                "https://10.0.0.2:2379".into(),
                "https://etcd-3.internal:2379".into(),
            ],
            prefix: "/prod/baton".into(),
            node: Some("node-a".into()),
            advertise: "10.0.1.5".into(),
            lease_ttl: secs(15),
            credentials: Some(Credentials {
                username: "baton".into(),
                password: Password::File("/etc/baton/etcd-password".into()),
            }),
            tls: Some(ClusterTls {
                ca: "/etc/baton/etcd-ca.pem".into(),
                client: Some(ClientCert {
                    cert: "/etc/baton/etcd-node-a.pem".into(),
                    key: "/etc/baton/etcd-node-a.key".into(),
                }),
            }),
        })
    );
    assert_eq!(
        config.admin,
        Some(Admin {
            listen: "127.0.0.1:9901".parse().unwrap(),
            token: Password::Env("BATON_ADMIN_TOKEN".into()),
        })
    );
    let everywhere = &config.pools["web-everywhere"];
    assert_eq!(everywhere.discover.as_deref(), Some("web"));
    assert!(everywhere.members.is_empty());
    let app = &config.pools["app"];
    let member = |authority: &str, host: &str, port, ip: Option<&str>, weight| Member {
        address: UpstreamAddr {
            authority: authority.into(),
            host: host.into(),
            port,
            ip: ip.map(|ip| ip.parse().unwrap()),
        },
        weight,
    };
    let expected = Pool {
        name: "app".into(),
        members: vec![
            member(
                "127.0.0.1:9001",
                "127.0.0.1",
                9001,
                Some("127.0.0.1:9001"),
                3,
            ),
            member("[::1]:9002", "::1", 9002, Some("[::1]:9002"), 0),
            member("app-3.internal:9003", "app-3.internal", 9003, None, 1),
        ],
        discover: None,
        forward: ForwardSettings {
            balance: Balance::LeastRequests,
            max_connections_per_member: 64,
            queue_length: 100,
            queue_timeout: secs(5),
            connect_timeout: secs(1),
            header_timeout: secs(20),
            idle_timeout: secs(4),
            total_timeout: Some(secs(300)),
            body_timeout: secs(90),
            retry_non_idempotent: true,
            retry_server_errors: true,
            upstream_host: UpstreamHost::Literal("app.internal".into()),
            tls: Some(UpstreamTls {
                ca_bundle: Some("/etc/ssl/internal-ca.pem".into()),
                server_name: Some("app.internal".into()),
            }),
        },
        health: Some(HealthCheck {
            path: "/healthz?full=1".into(),
            interval: secs(3),
            timeout: Duration::from_millis(500),
            start_interval: Duration::from_millis(300),
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            expect_status: StatusRange {
                first: 200,
                last: 299,
            },
        }),
        passive: Some(PassiveHealth {
            consecutive_failures: 3,
            ejection_time: secs(5),
            max_ejection_time: secs(60),
        }),
    };
    assert_eq!(app, &expected);
    assert_eq!(
        config.pools.keys().collect::<Vec<_>>(),
        ["app", "static", "web-everywhere"]
    );
    let api = &config.routes[0];
    assert_eq!(
        api,
        &Route {
            name: Some("api".into()),
            listeners: vec!["http".into()],
            host: Some(HostMatch::Exact("api.example.com".into())),
            path: Some(PathMatch::Prefix("/api/".into())),
            methods: vec![Method::GET, Method::HEAD, Method::POST],
            headers: vec![HeaderMatch {
                name: HeaderName::from_static("x-canary"),
                value: HeaderValue::from_static("1"),
            }],
            upstream: Upstream::Pool("app".into()),
        }
    );
    assert_eq!(
        config.routes[1].host,
        Some(HostMatch::Wildcard(".example.com".into()))
    );
    assert_eq!(
        config.routes[1].path,
        Some(PathMatch::Pattern("/users/{id}/files/{*rest}".into()))
    );
    assert_eq!(
        config.routes[1].listeners,
        ["http", "local", "https", "redirect"],
        "default: all listeners"
    );
    assert_eq!(
        config.routes[2].path,
        Some(PathMatch::Regex("^/v[0-9]+/".into()))
    );
    assert_eq!(config.routes[2].name, None);
    assert_eq!(config.routes[3].upstream, Upstream::Service("web".into()));
    assert_eq!(config.routes[4].upstream, Upstream::Service("api".into()));
}

fn template(text: &str) -> Template {
    text.parse().unwrap()
}

#[test]
fn kitchen_sink_services() {
    let config = ok(KITCHEN_SINK);
    assert_eq!(config.services.keys().collect::<Vec<_>>(), ["api", "web"]);
    let web = Service {
        name: "web".into(),
        runner: Runner::Supervised(Supervised {
            command: [
                "target/release/hello",
                "--listen",
                "127.0.0.1:{port}",
                "--app-version",
                "{version}",
                "--motd={{hi}}",
            ]
            .map(template)
            .to_vec(),
            env: vec![
                ("RUST_LOG".into(), template("info")),
                ("APP_PORT".into(), template("{port}")),
            ],
            cwd: Some(template("releases/{version}")),
            version: "v1".parse().unwrap(),
            instances: 3,
            socket: SocketMode::Port,
            restart: Restart::OnFailure,
        }),
        forward: ForwardSettings {
            balance: Balance::LeastRequests,
            max_connections_per_member: 128,
            queue_length: 0,
            queue_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_millis(500),
            header_timeout: secs(10),
            idle_timeout: secs(30),
            total_timeout: Some(secs(120)),
            body_timeout: secs(45),
            retry_non_idempotent: true,
            retry_server_errors: true,
            upstream_host: UpstreamHost::Member,
            tls: None,
        },
        health: Some(HealthCheck {
            path: "/healthz".into(),
            interval: secs(1),
            timeout: Duration::from_millis(250),
            start_interval: Duration::from_millis(50),
            healthy_threshold: 1,
            unhealthy_threshold: 5,
            expect_status: StatusRange {
                first: 204,
                last: 204,
            },
        }),
        passive: Some(PassiveHealth {
            consecutive_failures: 2,
            ejection_time: secs(2),
            max_ejection_time: secs(30),
        }),
        ready_timeout: secs(20),
        drain_timeout: secs(15),
        deploy_timeout: secs(300),
        strategy: Strategy::BlueGreen,
        rolling: Rolling {
            max_surge: 2,
            max_unavailable: 1,
        },
        blue_green: BlueGreen {
            smoke: vec!["/healthz".into(), "/api/ping?deep=1".into()],
            rollback_window: secs(120),
        },
        canary: Canary {
            steps: vec![5, 25, 100],
            pause: secs(60),
            max_error_rate: 0.005,
            max_p99_ratio: 1.5,
            p99_floor: Duration::from_millis(5),
            min_requests: 200,
        },
    };
    assert_eq!(config.services["web"], web);
    let Runner::Supervised(supervised) = &web.runner else {
        unreachable!()
    };
    let v2: Version = "v2".parse().unwrap();
    let argv: Vec<String> = supervised
        .command
        .iter()
        .map(|t| t.render(41234, &v2))
        .collect();
    assert_eq!(
        argv,
        [
            "target/release/hello",
            "--listen",
            "127.0.0.1:41234",
            "--app-version",
            "v2",
            "--motd={hi}"
        ]
    );

    let api = &config.services["api"];
    let Runner::External(external) = &api.runner else {
        panic!("api is external: {api:#?}")
    };
    let targets: Vec<&str> = external
        .targets
        .iter()
        .map(|t| t.authority.as_str())
        .collect();
    assert_eq!(targets, ["127.0.0.1:9201", "api-2.internal:9202"]);
    assert_eq!(external.targets[1].ip, None);
    assert_eq!(api.strategy, Strategy::Canary);
    assert_eq!(
        api.rolling,
        Rolling {
            max_surge: 0,
            max_unavailable: 1
        }
    );
    assert_eq!(
        (api.ready_timeout, api.drain_timeout, api.deploy_timeout),
        (secs(60), secs(0), secs(1800))
    );
    assert_eq!(
        api.forward.upstream_host,
        UpstreamHost::Literal("api.internal".into())
    );
    assert_eq!(api.health.as_ref().unwrap().path, "/ready");
    assert_eq!(
        api.forward.tls,
        Some(UpstreamTls {
            ca_bundle: None,
            server_name: Some("10.0.0.7".into()),
        })
    );
    assert_eq!(api.passive, None);
    assert_eq!(
        (
            api.canary.steps.as_slice(),
            api.canary.max_error_rate,
            api.canary.max_p99_ratio
        ),
        (&[1, 10, 50, 100][..], 0.0, 3.0),
        "integers are numbers too"
    );
}

#[test]
fn a_service_pool_is_named_after_it_and_forwards_like_it() {
    let config = ok(KITCHEN_SINK);
    let web = &config.services["web"];
    let member = Member {
        address: "127.0.0.1:41234"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
        weight: 1,
    };
    let pool = web.pool(vec![member.clone()]);
    assert_eq!(pool.name, "service:web");
    assert_eq!(web.pool_name(), "service:web");
    assert_eq!(Upstream::Service("web".into()).pool_name(), "service:web");
    assert_eq!(Upstream::Pool("app".into()).pool_name(), "app");
    assert_eq!(pool.members, [member]);
    assert_eq!(pool.forward, web.forward);
    assert_eq!((&pool.health, &pool.passive), (&web.health, &web.passive));
}

#[test]
fn absent_keys_take_the_documented_defaults() {
    let config = ok(&format!(
        "{MINIMAL}[access_log]\n[pool.p]\nmembers = [{{ address = \"h:1\" }}]\n[pool.p.health]\npath = \"/\"\n[pool.p.passive]\n"
    ));
    assert_eq!(
        config.proxy,
        ProxySettings {
            workers: Workers::PerCore,
            drain_timeout: secs(30),
            idle_grace: secs(1),
            trusted_proxies: vec![],
            request_id_header: HeaderName::from_static("x-request-id"),
        }
    );
    let log = AccessLog {
        target: AccessLogTarget::Stdout,
        format: AccessLogFormat::Combined,
    };
    assert_eq!(config.access_log, Some(log));
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "listener-1");
    assert_eq!(listener.max_connections, 10000);
    assert_eq!(listener.header_read_timeout, secs(10));
    assert_eq!(listener.max_header_bytes, 64 * 1024);
    assert_eq!(listener.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(listener.body_read_timeout, secs(60));
    assert_eq!(listener.body_buffer_bytes, 16 * 1024);
    assert_eq!(listener.write_timeout, secs(60));
    assert_eq!(listener.keepalive_timeout, secs(60));
    assert_eq!((&listener.tls, listener.redirect_https), (&None, None));
    assert_eq!(
        (config.acme, config.cluster, config.admin),
        (None, None, None)
    );
    let pool = &config.pools["p"];
    assert_eq!(pool.forward.balance, Balance::WeightedRoundRobin);
    assert_eq!(pool.members[0].weight, 1);
    assert_eq!(pool.forward.max_connections_per_member, 256);
    assert_eq!(
        (pool.forward.queue_length, pool.forward.queue_timeout),
        (10_000, secs(30))
    );
    assert_eq!(
        (
            pool.forward.connect_timeout,
            pool.forward.header_timeout,
            pool.forward.idle_timeout
        ),
        (secs(2), secs(30), secs(60))
    );
    assert_eq!(pool.forward.total_timeout, None);
    assert_eq!(pool.forward.body_timeout, secs(60));
    assert!(!pool.forward.retry_non_idempotent);
    assert!(!pool.forward.retry_server_errors);
    assert_eq!(pool.forward.upstream_host, UpstreamHost::Preserve);
    assert_eq!(pool.forward.tls, None);
    let health = pool.health.as_ref().unwrap();
    assert_eq!((health.interval, health.timeout), (secs(2), secs(1)));
    assert_eq!(health.start_interval, Duration::from_millis(200));
    assert_eq!(
        (health.healthy_threshold, health.unhealthy_threshold),
        (2, 3)
    );
    assert_eq!(
        health.expect_status,
        StatusRange {
            first: 200,
            last: 399
        }
    );
    let passive = pool.passive.as_ref().unwrap();
    assert_eq!(
        (
            passive.consecutive_failures,
            passive.ejection_time,
            passive.max_ejection_time
        ),
        (5, secs(10), secs(300))
    );
    assert!(config.routes.is_empty());
    let bare = ok(MINIMAL);
    assert_eq!(
        (bare.access_log, bare.pools.len(), bare.services.len()),
        (None, 0, 0)
    );
}

#[test]
fn absent_service_keys_take_the_documented_defaults() {
    let config = ok(&format!(
        "{MINIMAL}[service.s]\ncommand = [\"app\"]\nversion = \"1\"\n[service.e]\ntargets = [\"h:1\"]\n"
    ));
    let s = &config.services["s"];
    assert_eq!(
        s.runner,
        Runner::Supervised(Supervised {
            command: vec![template("app")],
            env: vec![],
            cwd: None,
            version: "1".parse().unwrap(),
            instances: 1,
            socket: SocketMode::Inherit,
            restart: Restart::Always,
        })
    );
    let pool_defaults = ok(&format!(
        "{MINIMAL}[pool.p]\nmembers = [{{ address = \"h:1\" }}]\n"
    ))
    .pools["p"]
        .forward
        .clone();
    assert_eq!(s.forward, pool_defaults, "the same defaults as a pool");
    assert_eq!((&s.health, &s.passive), (&None, &None));
    assert_eq!(
        (s.ready_timeout, s.drain_timeout, s.deploy_timeout),
        (secs(30), secs(30), secs(600))
    );
    assert_eq!(s.strategy, Strategy::Rolling);
    assert_eq!(
        s.rolling,
        Rolling {
            max_surge: 1,
            max_unavailable: 0
        }
    );
    assert_eq!(
        s.blue_green,
        BlueGreen {
            smoke: vec![],
            rollback_window: secs(30)
        }
    );
    assert_eq!(
        s.canary,
        Canary {
            steps: vec![10, 50, 100],
            pause: secs(30),
            max_error_rate: 0.01,
            max_p99_ratio: 2.0,
            p99_floor: Duration::from_millis(5),
            min_requests: 50,
        }
    );
    let e = &config.services["e"];
    assert!(matches!(&e.runner, Runner::External(x) if x.targets.len() == 1));
    assert_eq!(
        (e.strategy, e.rolling, &e.canary),
        (s.strategy, s.rolling, &s.canary)
    );
}

/// Records the field list a derived `Deserialize` asks for, then stops.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: for<'de> Deserialize<'de>>() -> BTreeSet<&'static str> {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.iter().copied().collect()
}

#[test]
fn schema_lists_exactly_the_fields_of_the_serde_structs() {
    let pairs: [(&Section, BTreeSet<&str>); 19] = [
        (&schema::ROOT, fields_of::<RawConfig>()),
        (&schema::PROXY, fields_of::<RawProxy>()),
        (&schema::ACCESS_LOG, fields_of::<RawAccessLog>()),
        (&schema::LISTENER, fields_of::<RawListener>()),
        (&schema::LISTENER_TLS, fields_of::<RawTls>()),
        (&schema::CERTIFICATE, fields_of::<RawCertificate>()),
        (&schema::HSTS, fields_of::<RawHsts>()),
        (&schema::ACME, fields_of::<RawAcme>()),
        (&schema::UPSTREAM_TLS, fields_of::<RawUpstreamTls>()),
        (&schema::POOL, fields_of::<RawPool>()),
        (&schema::MEMBER, fields_of::<RawMember>()),
        (&schema::HEALTH, fields_of::<RawHealth>()),
        (&schema::PASSIVE, fields_of::<RawPassive>()),
        (&schema::SERVICE, fields_of::<RawService>()),
        (&schema::BLUE_GREEN, fields_of::<RawBlueGreen>()),
        (&schema::CANARY, fields_of::<RawCanary>()),
        (&schema::ROUTE, fields_of::<RawRoute>()),
        (&schema::CLUSTER, fields_of::<RawCluster>()),
        (&schema::ADMIN, fields_of::<RawAdmin>()),
    ];
    for section in SECTIONS {
        assert!(
            pairs.iter().any(|(s, _)| std::ptr::eq(*s, section)),
            "no serde struct paired with {}",
            section.place
        );
    }
    for (section, serde_fields) in pairs {
        let schema_keys: BTreeSet<&str> = section.keys.iter().map(|k| k.name).collect();
        assert!(!serde_fields.is_empty());
        assert_eq!(
            schema_keys, serde_fields,
            "src/schema/ and src/raw.rs disagree on the keys {}: add the key to both (and to testdata/kitchen-sink.toml)",
            section.place
        );
    }
}

#[test]
fn kitchen_sink_uses_every_key_of_the_schema() {
    let mut met = Vec::new();
    let mut diag = Diagnostics::new(KITCHEN_SINK, "kitchen-sink.toml");
    assert!(crate::parse_raw(KITCHEN_SINK, &mut diag, Some(&mut met)).is_some());
    assert!(diag.is_empty());
    let seen: BTreeSet<(&str, &str)> = met
        .iter()
        .map(|m| (m.section.heading, m.key.name))
        .collect();
    let all: BTreeSet<(&str, &str)> = SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(|k| (s.heading, k.name)))
        .collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "testdata/kitchen-sink.toml does not use these keys: {missing:?}"
    );
    // The other direction holds because `check` rejects unknown keys, which
    // `kitchen_sink_parses_into_the_expected_config` would report.
}
