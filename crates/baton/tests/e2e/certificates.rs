//! The certificates a `baton serve` serves from files are shown by
//! `baton status` (listener, source, expiry, names, file; `--json` too) and by
//! `GET /v1/certificates`, and their expiry is in the metrics.

use rcgen::date_time_ymd;

use crate::support::tls::{Ca, cert_entry};
use crate::support::{self, TempDir, request, run_baton};

const TOKEN: &str = "certificates-token-0a1b2c3d";
/// 2031-05-17T00:00:00Z.
const NOT_AFTER: u64 = 1_936_742_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_each_certificate_and_its_expiry() {
    let dir = TempDir::new("certificates");
    let ca = Ca::new("baton e2e CA");
    let leaf = ca.leaf_with(&["site.test"], 1, |p| {
        p.not_after = date_time_ymd(2031, 5, 17);
    });
    let (cert, key) = leaf.write(dir.path(), "site");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let (_hello, upstream) = support::start_hello(&["--app-version", "v1"]).await;
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
name = "https"
address = "127.0.0.1:0"
[listener.tls]
certificates = [{}]

[pool.app]
members = [{{ address = "{upstream}" }}]
[[route]]
pool = "app"

[admin]
listen = "127.0.0.1:0"
token = "file:{}"
"#,
            cert_entry(&(cert.clone(), key)),
            token.display()
        ),
    )
    .unwrap();
    let (mut baton, _addr) = support::baton_serve(&path).await;
    let admin = support::admin_addr(&mut baton).await;
    let control = format!("http://{admin}");

    let (code, out) = run_baton(&[
        "status",
        "--control",
        &control,
        "--token-file",
        token.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let row = out
        .lines()
        .find(|l| l.contains("2031-05-17T00:00:00Z"))
        .unwrap_or_else(|| panic!("no certificate row:\n{out}"));
    for part in ["https", "file", "site.test", cert.to_str().unwrap()] {
        assert!(row.contains(part), "{part} not in {row:?}\n{out}");
    }
    assert!(out.contains("LISTENER") && out.contains("EXPIRES"), "{out}");
    assert!(!out.contains("ACME"), "{out}");
    // Not in cluster mode: no cluster section.
    assert!(!out.contains("CLUSTER"), "{out}");
    // `--json`: the services and the certificates.
    let (code, out) = run_baton(&[
        "status",
        "--json",
        "--control",
        &control,
        "--token-file",
        token.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let both: serde_json::Value = serde_json::from_str(out.trim_start_matches("[out] ")).unwrap();
    assert!(both["services"].is_array(), "{both}");
    let only = &both["certificates"]["certificates"][0];
    assert_eq!(only["not_after_unix"], NOT_AFTER, "{both}");
    assert_eq!(only["source"], "file", "{both}");
    assert!(both["cluster"].is_null(), "{both}");

    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let r = request(&admin, "GET", "admin", "/v1/cluster", &bearer).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("runs without [cluster]"), "{}", r.body);
    let r = request(&admin, "GET", "admin", "/v1/certificates", &bearer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let report: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let only = &report["certificates"][0];
    assert_eq!(only["not_after_unix"], NOT_AFTER, "{report}");
    assert_eq!(only["names"][0], "site.test", "{report}");
    assert!(report.get("acme").is_none(), "{report}");

    let r = request(&admin, "GET", "admin", "/metrics", &bearer).await;
    assert_eq!(r.status, 200);
    let series = format!(
        r#"baton_certificate_expiry_timestamp_seconds{{listener="https",source="file",certificate="{}"}} {NOT_AFTER}"#,
        cert.display()
    );
    assert!(r.body.lines().any(|l| l == series), "{series}\n{}", r.body);
    crate::metrics::promtool_check(&r.body).await;
}
