//! The control API on TCP (`[admin]`): the same routes as the Unix socket,
//! each request let through only with the bearer token — but the
//! dashboard's page and assets, which hold no data.
//!
//! The token is read once at start ([`Token::read`]) and kept only as its
//! SHA-256 digest; a presented token is hashed and compared with it in
//! constant time, so neither its bytes nor its length shape the time of a
//! refusal. Neither the right token nor a wrong one is ever logged: a
//! refusal logs the method and the path (never the query) and the peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use handoff::http::{ConnInfo, Server, Stop};
use handoff::{ListenAddr, Listener, Listeners, NamedListener};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// The shortest token accepted: 16 bytes (128 bits when random).
const MIN_TOKEN_BYTES: usize = 16;
/// The longest: bounded like any value a file can hold.
const MAX_TOKEN_BYTES: usize = 4096;

/// The admin token, as its SHA-256 digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Reads the token from where `[admin] token` says; the error names
    /// the variable or the file, never the value.
    pub fn read(source: &config::Password) -> anyhow::Result<Token> {
        let (text, whence) = match source {
            config::Password::Env(name) => match std::env::var(name) {
                Ok(v) => (v, format!("the environment variable {name}")),
                Err(_) => bail!(
                    "[admin] token: the environment variable {name} is not set (or not UTF-8)"
                ),
            },
            config::Password::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("[admin] token: could not read {}", path.display()))?;
                (text, format!("the file {}", path.display()))
            }
        };
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        let printable = text.bytes().all(|b| b.is_ascii_graphic());
        if !printable || !(MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&text.len()) {
            bail!(
                "[admin] token: {whence} must hold {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes of printable ASCII without spaces (like the output of `openssl rand -hex 32`)"
            );
        }
        Ok(Token::new(text.as_bytes()))
    }

    fn new(token: &[u8]) -> Token {
        Token {
            digest: digest(token),
        }
    }

    /// Whether `presented` is the token, in time that depends on neither.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        digest(presented).ct_eq(&self.digest).into()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The token a request presents: `Authorization: Bearer TOKEN`.
fn presented(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// The client's address, for the log of a refusal.
#[derive(Debug, Clone, Copy)]
struct Peer(Option<SocketAddr>);

/// Lets a request through only with the token; else 401.
async fn authorize(State(token): State<Arc<Token>>, request: Request, next: Next) -> Response {
    // The dashboard's page and assets hold no data; the page asks for
    // the token and sends it with every call to the API.
    if crate::dashboard::is_public(request.method(), request.uri().path())
        || presented(&request).is_some_and(|p| token.accepts(p))
    {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.0)
        .map(|p| p.to_string());
    tracing::warn!(
        method = %request.method(),
        path = request.uri().path(),
        peer = peer.as_deref().unwrap_or("?"),
        "admin request refused: no token or a wrong one"
    );
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "ok": false,
            "errors": ["a bearer token is required (Authorization: Bearer TOKEN)"],
            "exit": 1,
        })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"baton\""),
    );
    response
}

/// Binds `[admin] listen`, prints `admin API at http://ADDR` and serves
/// `app` behind the token until `stop`.
pub fn start(
    listen: SocketAddr,
    token: Token,
    app: Router,
    stop: watch::Receiver<Stop>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // In an upgrade's new process, the old one's listener.
    let listener = crate::upgrade::own_listener("admin", || {
        Listener::bind(&ListenAddr::Tcp(listen))
            .with_context(|| format!("could not open the admin listener {listen}"))
    })?;
    let addr = listener
        .local_addr()
        .context("could not read the admin listener's address")?;
    println!("admin API at http://{addr}");
    tracing::info!(%addr, "admin API listening (bearer token required)");
    let server = Server::new(Listeners::from_listeners(vec![NamedListener {
        name: "admin".into(),
        listener,
    }]))
    .notify(false)
    .drain_timeout(Duration::from_secs(1))
    .with_stop(stop);
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(token),
        authorize,
    ));
    Ok(tokio::spawn(async move {
        let served = server
            .serve_with(move |conn: &ConnInfo| app.clone().layer(axum::Extension(Peer(conn.peer))))
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin listener failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_is_accepted() {
        let token = Token::new(b"0123456789abcdef");
        assert!(token.accepts(b"0123456789abcdef"));
        for wrong in [
            &b""[..],
            b"0123456789abcde",
            b"0123456789abcdeF",
            b"0123456789abcdef0",
        ] {
            assert!(!token.accepts(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn a_token_is_read_from_a_file_without_its_newline_and_checked() {
        let dir = std::env::temp_dir().join(format!("baton-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        let token = Token::read(&config::Password::File(path.clone())).unwrap();
        assert!(token.accepts(b"0123456789abcdef"));
        for bad in ["short\n", "has a space in it ok\n", ""] {
            std::fs::write(&path, bad).unwrap();
            let e = Token::read(&config::Password::File(path.clone())).unwrap_err();
            let text = format!("{e:#}");
            assert!(text.contains("printable ASCII"), "{text}");
            if !bad.trim().is_empty() {
                assert!(!text.contains(bad.trim()), "{text}");
            }
        }
        let e = Token::read(&config::Password::Env("BATON_TEST_UNSET_TOKEN".into())).unwrap_err();
        assert!(format!("{e:#}").contains("BATON_TEST_UNSET_TOKEN is not set"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let request = |value: &str| {
            axum::http::Request::builder()
                .header(header::AUTHORIZATION, value)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(presented(&request("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(presented(&request("bearer abc")), Some(&b"abc"[..]));
        assert_eq!(presented(&request("Basic abc")), None);
        assert_eq!(presented(&request("Bearer")), None);
    }
}
