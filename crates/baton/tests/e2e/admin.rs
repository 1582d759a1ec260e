//! The control API on TCP (`[admin]`): without a token or with a wrong one
//! every route answers 401 and neither token reaches baton's log; with the
//! right one the API works, from the CLI too (`--control http://…`). TCP
//! without a token, or with a weak one, is refused before anything listens.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::support::{self, Proc, TempDir, request, run_baton, wait_version};

const TOKEN: &str = "right-token-4f1c9a7e2b6d";
const WRONG: &str = "wrong-token-8d3e5a1f9c0b";

fn config(dir: &TempDir, token_line: &str) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
address = "127.0.0.1:0"

[service.web]
command = ["{}", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
ready_timeout = "5s"
[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 1

[[route]]
service = "web"

[admin]
listen = "127.0.0.1:0"
{token_line}
"#,
            support::hello().display()
        ),
    )
    .unwrap();
    path
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

async fn baton_with_token(args: &[&str], token: &str) -> (i32, String) {
    let mut cmd = Command::new(support::baton());
    cmd.args(args).env("BATON_TOKEN", token);
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait_exit().await;
    p.wait_output_closed().await;
    (status.code().unwrap_or(-1), p.lines().join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_tcp_needs_the_token_and_never_logs_it() {
    let dir = TempDir::new("admin-tcp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, WRONG).unwrap();
    let path = config(&dir, &format!("token = \"file:{}\"", token_file.display()));
    let (mut baton, addr) = support::baton_serve(&path).await;
    let admin = support::admin_addr(&mut baton).await;
    wait_version(&addr, "v1").await;

    for (method, route) in [
        ("GET", "/v1/status"),
        ("GET", "/metrics"),
        ("GET", "/v1/events"),
        ("POST", "/v1/reload"),
        ("POST", "/v1/deploy"),
        ("GET", "/nowhere"),
    ] {
        for extra in [
            String::new(),
            bearer(WRONG),
            "Authorization: Basic eDp5\r\n".into(),
        ] {
            let r = request(&admin, method, "admin", route, &extra).await;
            assert_eq!(r.status, 401, "{method} {route} {extra:?}: {}", r.body);
            assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"baton\""));
        }
    }
    // The dashboard's page holds no data: it loads without the token,
    // under a policy that lets it run only its own script.
    for page in ["/dashboard", "/dashboard/app.js", "/dashboard/style.css"] {
        let r = request(&admin, "GET", "admin", page, "").await;
        assert_eq!(r.status, 200, "{page}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{csp}"
        );
    }
    let r = request(&admin, "GET", "admin", "/v1/status", &bearer(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"name\":\"web\""), "{}", r.body);
    let r = request(&admin, "GET", "admin", "/metrics", &bearer(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("baton_requests_total"), "{}", r.body);

    // The CLI: the token from a file, then from the environment.
    let control = format!("http://{admin}");
    let token_arg = token_file.to_str().unwrap();
    let (code, out) =
        run_baton(&["status", "--control", &control, "--token-file", token_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("web") && out.contains("v1"), "{out}");
    let wrong_arg = wrong_file.to_str().unwrap();
    let (code, out) =
        run_baton(&["status", "--control", &control, "--token-file", wrong_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused the admin token (401)"), "{out}");
    let (code, out) = run_baton(&["status", "--control", &control]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("needs the admin token"), "{out}");
    let deploy = ["deploy", "web", "--version", "v2", "--control", &control];
    let (code, out) = baton_with_token(&deploy, TOKEN).await;
    assert_eq!(code, 0, "{out}\n{}", baton.dump());
    assert!(out.contains("deployed web v2"), "{out}");
    wait_version(&addr, "v2").await;

    // Neither token, nor any part of it, is in baton's output; the
    // refusals are.
    let log = baton.lines().join("\n");
    assert!(log.contains("admin request refused"), "{log}");
    for secret in [TOKEN, WRONG, &TOKEN[6..18], &WRONG[6..18]] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_on_tcp_without_a_good_token_is_refused_before_listening() {
    let dir = TempDir::new("admin-refused");
    // No token at all: a config error.
    let path = config(&dir, "");
    let (code, out) = run_baton(&["check", path.to_str().unwrap()]).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("missing required key `token` in [admin]"),
        "{out}"
    );
    // A token too short to be one: `baton serve` exits 64 and says where
    // it is, never what it is.
    let short = dir.path().join("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    let path = config(&dir, &format!("token = \"file:{}\"", short.display()));
    let (code, out) = serve_exit(&path).await;
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("printable ASCII") && out.contains("short"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    assert!(!out.contains("admin API at"), "{out}");
}

async fn serve_exit(path: &Path) -> (i32, String) {
    run_baton(&["serve", "--config", path.to_str().unwrap()]).await
}
