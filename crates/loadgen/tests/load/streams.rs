//! The long-lived kinds (WebSocket, server-sent events, HTTP/2): announced ends cost nothing, everything else that
//! ends a stream early is counted, by its kind.

use loadgen::{FailureKind, LoadConfig, Report};

use super::{config, only_kind, run_to_end};
use crate::support::streams::{H2Mode, SseEnd, StreamServer, WsEnd};

fn websocket(server: &StreamServer, requests: u64) -> LoadConfig {
    LoadConfig {
        websocket_workers: 2,
        max_requests: Some(requests),
        ..config(server.addr)
    }
}

fn sse(server: &StreamServer, requests: u64) -> LoadConfig {
    LoadConfig {
        sse_workers: 2,
        max_requests: Some(requests),
        ..config(server.addr)
    }
}

fn h2(server: &StreamServer, requests: u64) -> LoadConfig {
    LoadConfig {
        h2_workers: 2,
        max_requests: Some(requests),
        ..config(server.addr)
    }
}

fn announced(report: &Report, kind: &str) -> u64 {
    report.workers[kind].announced_ends
}

#[tokio::test]
async fn websocket_echoes_and_going_away_closes_are_not_failures() {
    let server = StreamServer::websocket(5, WsEnd::Close(1001)).await;
    let report = run_to_end(websocket(&server, 60)).await;
    report.assert_no_failures();
    assert_eq!(report.ok, 60);
    assert_eq!(report.workers["websocket"].ok, 60);
    // Every sixth message met a close and was sent again on a new socket.
    assert!(announced(&report, "websocket") >= 8, "{:?}", report.workers);
    assert_eq!(report.instances.get("(none)"), Some(&60));
    assert!(report.latency.steady.count == 60, "{:?}", report.latency);
}

#[tokio::test]
async fn websocket_closed_with_another_code_is_ws_close_code() {
    let server = StreamServer::websocket(2, WsEnd::Close(1011)).await;
    let report = run_to_end(websocket(&server, 30)).await;
    only_kind(&report, FailureKind::WsClose(1011));
    assert!(report.ok > 0);
}

#[tokio::test]
async fn websocket_cut_without_a_close_frame_is_a_reset() {
    let server = StreamServer::websocket(2, WsEnd::Cut).await;
    let report = run_to_end(websocket(&server, 30)).await;
    only_kind(&report, FailureKind::Reset);
}

#[tokio::test]
async fn websocket_to_nothing_is_refused() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let report = run_to_end(LoadConfig {
        websocket_workers: 1,
        max_requests: Some(3),
        ..config(addr)
    })
    .await;
    only_kind(&report, FailureKind::Refused);
}

#[tokio::test]
async fn server_sent_events_that_end_cleanly_or_say_shutdown_are_not_failures() {
    for end in [SseEnd::Clean, SseEnd::Shutdown] {
        let server = StreamServer::events(4, end).await;
        let report = run_to_end(sse(&server, 40)).await;
        report.assert_no_failures();
        assert_eq!(report.workers["sse"].ok, 40, "{end:?}");
        assert!(
            announced(&report, "sse") >= 8,
            "{end:?}: {:?}",
            report.workers
        );
        // An event's wait is the server's interval, not a response time.
        assert_eq!(report.latency.steady.count, 0);
        assert_eq!(report.instances.get("events"), Some(&40));
    }
}

#[tokio::test]
async fn an_event_stream_cut_inside_an_event_is_truncated() {
    let server = StreamServer::events(3, SseEnd::MidEvent).await;
    let report = run_to_end(sse(&server, 30)).await;
    only_kind(&report, FailureKind::Truncated);
}

#[tokio::test]
async fn a_skipped_tick_is_a_missing_event() {
    let server = StreamServer::events(3, SseEnd::Skip).await;
    let report = run_to_end(sse(&server, 30)).await;
    only_kind(&report, FailureKind::MissingEvent);
}

#[tokio::test]
async fn h2_requests_succeed_across_graceful_goaways() {
    let server = StreamServer::h2(H2Mode::GoAwayAfter(5)).await;
    let report = run_to_end(h2(&server, 80)).await;
    report.assert_no_failures();
    assert_eq!(report.workers["h2"].ok, 80);
    assert!(announced(&report, "h2") >= 10, "{:?}", report.workers);
    assert_eq!(report.instances.get("h2"), Some(&80));
}

#[tokio::test]
async fn a_reset_h2_stream_is_a_stream_reset() {
    let server = StreamServer::h2(H2Mode::Reset).await;
    let report = run_to_end(h2(&server, 20)).await;
    only_kind(&report, FailureKind::StreamReset);
    assert_eq!(report.failures, 20);
}

#[tokio::test]
async fn an_h2_connection_closed_without_goaway_is_a_reset() {
    let server = StreamServer::h2(H2Mode::CutAfter(3)).await;
    let report = run_to_end(h2(&server, 30)).await;
    only_kind(&report, FailureKind::Reset);
    assert!(report.ok > 0);
}
