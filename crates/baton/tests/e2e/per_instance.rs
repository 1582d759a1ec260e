//! The supervisor in proxy mode, through its library API: each instance
//! gets a port of its own and a command rendered for it, is ready when
//! probes of its address pass, and a stop hook runs before SIGTERM — the
//! pieces the deploy engine drives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervisor::{
    Backoff, Bounds, CommandSource, CommandSpec, Event, Group, GroupConfig, InstanceInfo, Probe,
    Readiness, Sockets,
};
use tokio::sync::broadcast;

use crate::support::{self, get};

fn hello_command(version: &'static str) -> CommandSource {
    CommandSource::PerInstance(Arc::new(move |info: &InstanceInfo| {
        let port = info.addr.expect("per-instance address").port();
        CommandSpec::new([
            support::hello().display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--app-version".into(),
            version.into(),
        ])
    }))
}

fn http_probe() -> Probe {
    Probe {
        check: Arc::new(|addr| {
            Box::pin(async move {
                // Never panics: a refused or broken probe is just a failure.
                let attempt = async {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await
                        .ok()?;
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).await.ok()?;
                    Some(buf.starts_with(b"HTTP/1.1 200"))
                };
                let r = tokio::time::timeout(Duration::from_secs(1), attempt).await;
                matches!(r, Ok(Some(true)))
            })
        }),
        interval: Duration::from_millis(50),
        successes: 2,
    }
}

async fn next_ready(
    events: &mut broadcast::Receiver<Event>,
    generation: u64,
) -> std::net::SocketAddr {
    loop {
        let e = tokio::time::timeout(support::EVENT_TIMEOUT, events.recv())
            .await
            .expect("no event")
            .expect("event stream");
        if let Event::Ready {
            generation: g,
            addr,
            ..
        } = e
            && g == generation
        {
            return addr.expect("per-instance address");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_get_their_own_ports_probes_and_stop_hooks() {
    let stopped: Arc<Mutex<Vec<u64>>> = Arc::default();
    let hook_log = stopped.clone();
    let group = Group::start(GroupConfig {
        command: hello_command("v1"),
        sockets: Sockets::PerInstance {
            ip: "127.0.0.1".parse().unwrap(),
            pass_socket: true,
            name: "http".into(),
        },
        bounds: Bounds {
            instances: 2,
            max_surge: 1,
            max_unavailable: 0,
        },
        readiness: Readiness::Probe(http_probe()),
        ready_timeout: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(10),
        backoff: Backoff::default(),
        restart: supervisor::Restart::Always,
        after_ready: None,
        before_stop: Some(Arc::new(move |info: InstanceInfo| {
            let log = hook_log.clone();
            Box::pin(async move { log.lock().unwrap().push(info.instance) })
        })),
    })
    .unwrap();
    let mut events = group.subscribe();
    let a = next_ready(&mut events, 1).await;
    let b = next_ready(&mut events, 1).await;
    assert_ne!(a, b, "each instance has its own port");
    for addr in [a, b] {
        let r = get(&addr.to_string(), "/").await;
        assert_eq!(r.instance_version(), "v1");
    }

    // A new generation with a new command: v2 replaces v1.
    let reload = {
        let group = group.clone();
        tokio::spawn(async move { group.reload_with(Some(hello_command("v2"))).await })
    };
    let c = next_ready(&mut events, 2).await;
    assert_eq!(get(&c.to_string(), "/").await.instance_version(), "v2");
    assert_eq!(reload.await.unwrap().unwrap(), Ok(2));
    // Both old instances went through the stop hook before being stopped.
    let mut hooked = stopped.lock().unwrap().clone();
    hooked.sort();
    assert_eq!(hooked, [1, 2]);

    let summary = group.shutdown().await.unwrap();
    assert!(summary.clean(), "{summary:?}");
}
