//! `baton systemd-unit`: the units it prints are accepted by systemd's own
//! checker, `systemd-analyze verify` (Debian package `systemd`; it needs no
//! running systemd), without a single warning; a listener the config does
//! not have is a usage error.

use std::path::Path;

use tokio::process::Command;

use crate::support::{Proc, TempDir, baton, run_baton};

/// The listeners are never bound: only unit files are written and checked.
const CONFIG: &str = r#"[[listener]]
name = "http"
address = "127.0.0.1:8080"

[[listener]]
name = "local"
address = "unix:/run/baton/http.sock"

[pool.app]
members = [{ address = "127.0.0.1:9" }]

[[route]]
pool = "app"
"#;

/// Runs `systemd-analyze verify` on unit files: its exit code and output.
async fn verify(units: &[&Path]) -> (i32, String) {
    let tool = "systemd-analyze";
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(tool).exists());
    assert!(
        found,
        "{tool} not found: install Debian's `systemd` package (scripts/test does)"
    );
    let mut cmd = Command::new(tool);
    // No man pages to look up for Documentation= (there is none), and no
    // generators: neither needs a running systemd.
    cmd.args(["verify", "--man=no", "--generators=no"])
        .args(units)
        .env("SYSTEMD_LOG_COLOR", "0");
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait_exit().await;
    p.wait_output_closed().await;
    (status.code().unwrap_or(-1), p.lines().join("\n"))
}

/// Prints a unit with `baton systemd-unit ARGS` into `dir/file`.
async fn unit(dir: &Path, file: &str, args: &[&str]) -> std::path::PathBuf {
    let mut all = vec!["systemd-unit"];
    all.extend_from_slice(args);
    let (code, out) = run_baton(&all).await;
    assert_eq!(code, 0, "{out}");
    let text: String = out
        .lines()
        .map(|l| {
            l.strip_prefix("[out] ")
                .unwrap_or_else(|| panic!("stderr: {l}"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_units_pass_systemd_analyze_verify() {
    let dir = TempDir::new("systemd-unit");
    let config = dir.path().join("baton.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (config, state) = (
        config.to_str().unwrap().to_owned(),
        dir.path().join("state").to_str().unwrap().to_owned(),
    );
    let exe = baton();
    let exe = exe.to_str().unwrap();
    let common = ["--config", &config, "--exec", exe, "--name", "edge"];

    let plain = unit(
        dir.path(),
        "edge.service",
        &[&common[..], &["--state", &state]].concat(),
    )
    .await;
    let text = std::fs::read_to_string(&plain).unwrap();
    assert!(text.contains(&format!("ExecStart={exe} serve --config {config} --control /run/baton/control.sock --state {state}\n")), "{text}");
    for line in ["Type=notify", "KillMode=mixed", "Restart=on-failure"] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let (code, out) = verify(&[&plain]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{text}");

    // Socket activation: a .socket unit per listener, and a service that
    // takes them.
    let service_dir = dir.path().join("activated");
    std::fs::create_dir(&service_dir).unwrap();
    let service = unit(
        &service_dir,
        "edge.service",
        &[&common[..], &["--socket-activated"]].concat(),
    )
    .await;
    let http = unit(
        &service_dir,
        "edge-http.socket",
        &[&common[..], &["--socket", "http"]].concat(),
    )
    .await;
    let local = unit(
        &service_dir,
        "edge-local.socket",
        &[&common[..], &["--socket", "local"]].concat(),
    )
    .await;
    let text = std::fs::read_to_string(&http).unwrap();
    for line in [
        "ListenStream=127.0.0.1:8080",
        "FileDescriptorName=http",
        "Service=edge.service",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    let (code, out) = verify(&[&service, &http, &local]).await;
    assert_eq!((code, out.as_str()), (0, ""));

    // The checker does fail on a unit it would not run as written.
    let bad = service_dir.join("edge-bad.socket");
    std::fs::write(&bad, text.replace("Backlog=", "Backlogg=")).unwrap();
    let (_, out) = verify(&[&bad]).await;
    assert!(out.contains("Backlogg"), "{out}");

    let (code, out) = run_baton(&["systemd-unit", "--config", &config, "--socket", "nope"]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("no [[listener]] named \"nope\" (there are: http, local)"),
        "{out}"
    );
    // systemd cannot bind port 0 for a socket unit (it says so itself).
    let any = dir.path().join("any.toml");
    std::fs::write(&any, CONFIG.replace("127.0.0.1:8080", "127.0.0.1:0")).unwrap();
    let any = any.to_str().unwrap();
    for extra in [&["--socket", "http"][..], &["--socket-activated"]] {
        let (code, out) =
            run_baton(&[&["systemd-unit", "--config", any][..], extra].concat()).await;
        assert_eq!(code, 64, "{out}");
        assert!(out.contains("port 0"), "{out}");
    }
}
