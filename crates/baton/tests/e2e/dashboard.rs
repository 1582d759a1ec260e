//! The dashboard in a real browser: Debian's headless Chromium, driven
//! through the DevTools protocol by `dashboard.mjs` (node, no packages),
//! loads the page from the admin listener, is asked for the token and
//! given it, shows the service and its instances; then, while a canary
//! deploy runs under load, the page — never reloaded — shows each traffic
//! step and the sets' shares change, and the deploy end. A screenshot is
//! taken at the canary's 50 % step (`BATON_DASHBOARD_SCREENSHOT` names
//! where to keep it; docs/dashboard.png is one).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use loadgen::{Load, LoadConfig};
use tokio::process::Command;

use crate::support::{self, Proc, TempDir, signal, wait_version};

const TOKEN: &str = "dashboard-browser-token-7a4e19c3";
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/dashboard.mjs");

/// Kills the browser if the test ends before its driver stopped it.
struct Browser(u32);

impl Drop for Browser {
    fn drop(&mut self) {
        signal(self.0, 9);
    }
}

/// What the page showed, from the driver's `observed` line.
#[derive(Debug, serde::Deserialize)]
struct Observed {
    /// `STATE|SHARE|JUDGED STEPS|SETS` of the deploy's card, each time it
    /// changed.
    seen: Vec<String>,
    /// A value set in the page before the deploy: a reload loses it.
    marker: String,
    /// Navigations of the page after it showed the services.
    navigations: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_canary_deploy_under_load_in_a_browser() {
    let _heavy = support::heavy().await;
    let chromium = testkit::system_tool("chromium", "chromium");
    let dir = TempDir::new("dashboard");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let path = support::canary_with_admin(&dir, &token_file, "2s");
    let (mut baton, addr) = support::baton_serve(&path).await;
    let admin = support::admin_addr(&mut baton).await;
    wait_version(&addr, "v1").await;
    let load = Load::start(LoadConfig {
        keepalive_workers: 2,
        fresh_workers: 1,
        post_workers: 1,
        max_duration: Duration::from_secs(120),
        ..LoadConfig::new(addr.parse::<SocketAddr>().unwrap())
    });
    assert!(load.wait_for_requests(100).await);

    let screenshot = std::env::var_os("BATON_DASHBOARD_SCREENSHOT")
        .map_or_else(|| dir.path().join("dashboard.png"), PathBuf::from);
    let mut cmd = Command::new("node");
    cmd.arg(DRIVER)
        .arg(&chromium)
        .arg(format!("http://{admin}/dashboard"))
        .arg(&token_file)
        .arg(&screenshot);
    // A browser starting on a busy machine takes its time.
    let mut driver = Proc::spawn(&mut cmd).with_timeout(Duration::from_secs(90));
    let line = driver.wait_for("chromium pid ").await;
    let _browser = Browser(line.rsplit(' ').next().unwrap().trim().parse().unwrap());
    driver.wait_for("login shown").await;
    driver.wait_for("services shown").await;

    let control = format!("http://{admin}");
    let deploy = [
        "deploy",
        "web",
        "--version",
        "v2",
        "--control",
        &control,
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let (code, out) = support::run_baton(&deploy).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("step 50% passed"), "{out}");
    let line = driver.wait_for("observed ").await;
    let status = driver.wait_exit().await;
    assert!(status.success(), "{}", driver.dump());
    let observed: Observed =
        serde_json::from_str(line.split_once("observed ").unwrap().1.trim()).unwrap();

    // Each measured step (they last the canary's pause, two seconds), in
    // order, while the deploy ran, with the sets' shares; then its end;
    // all in the one page load. The last step is followed at once by the
    // end: a snapshot may show both.
    let position = |prefix: &str| {
        observed
            .seen
            .iter()
            .position(|s| s.starts_with(prefix))
            .unwrap_or_else(|| panic!("the page never showed {prefix:?}: {observed:#?}"))
    };
    let steps = [
        position("running|20|"),
        position("running|50|20|"),
        position("deployed|100|20,50|"),
    ];
    assert!(steps.is_sorted(), "{steps:?}: {observed:#?}");
    for sets in ["v1=80 v2=20", "v1=50 v2=50"] {
        assert!(
            observed.seen.iter().any(|s| s.ends_with(sets)),
            "the page never showed the sets at {sets}: {observed:#?}"
        );
    }
    assert!(
        observed.seen.last().unwrap().ends_with("|v2=100"),
        "{observed:#?}"
    );
    assert_eq!(observed.marker, "no reload");
    assert_eq!(observed.navigations, 0, "{observed:#?}");

    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "a screenshot of {} bytes", png.len());
    let report = load.stop().await;
    assert_eq!(report.failures, 0, "{report:?}");
    // The token was typed into the page, never logged by baton.
    let log = baton.lines().join("\n");
    assert!(!log.contains(TOKEN), "{log}");
}
