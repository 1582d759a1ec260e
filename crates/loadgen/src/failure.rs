//! What counts as a failed request and how a transport error is classified.
//!
//! Owns the mapping from "what went wrong, at which step" to a [`FailureKind`]. It must stay conservative in one
//! direction only: an error is never dropped or reclassified as success; when the cause is unclear it is `other`,
//! with the full error chain in the description.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Why one request failed. Its [`key`](FailureKind::key) is the name used in [`crate::Report::failures_by_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The TCP connection was refused: nothing was listening (`refused`).
    Refused,
    /// The connection was reset or closed before the response was complete, including a keep-alive connection
    /// the server closed without announcing `Connection: close` (`reset`).
    Reset,
    /// The request was not completely answered within the request timeout (`timeout`).
    Timeout,
    /// The response status was outside `200..=299` (`status_NNN`, e.g. `status_503`).
    Status(u16),
    /// The response body ended early or broke mid-stream (`truncated`).
    Truncated,
    /// The response body was complete but not what the request asked for (`body_mismatch`).
    BodyMismatch,
    /// A WebSocket was closed by the server with a code other than 1001 (going away), e.g. `ws_close_1011`; a
    /// close frame without a code is `ws_close_1005`.
    WsClose(u16),
    /// An event stream skipped an event: a `tick N` event did not follow `tick N-1` (`missing_event`).
    MissingEvent,
    /// The server reset an HTTP/2 stream (`RST_STREAM`) before its response was complete (`stream_reset`).
    StreamReset,
    /// Anything else; the failure sample carries the full error chain (`other`).
    Other,
}

impl FailureKind {
    /// The stable name of this kind, as it appears in reports and JSON.
    pub fn key(self) -> String {
        match self {
            FailureKind::Refused => "refused".into(),
            FailureKind::Reset => "reset".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Status(code) => format!("status_{code}"),
            FailureKind::Truncated => "truncated".into(),
            FailureKind::BodyMismatch => "body_mismatch".into(),
            FailureKind::WsClose(code) => format!("ws_close_{code}"),
            FailureKind::MissingEvent => "missing_event".into(),
            FailureKind::StreamReset => "stream_reset".into(),
            FailureKind::Other => "other".into(),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One failed request: its kind and a one-line description of what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// The step of one exchange at which an error surfaced; it decides both classification and wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Opening the TCP connection.
    Connect,
    /// The HTTP/1 handshake on a fresh connection.
    Handshake,
    /// Waiting for a *reused* keep-alive connection to accept the next request.
    Reuse,
    /// Writing the request and waiting for the response head.
    Response,
    /// Reading the response body.
    Body,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Connect => "could not connect",
            Stage::Handshake => "could not start HTTP/1 on a new connection",
            Stage::Reuse => {
                "server closed the keep-alive connection without `Connection: close` \
                 before the next request (keep-alive close race)"
            }
            Stage::Response => "no complete response head",
            Stage::Body => "response body broke off",
        }
    }
}

/// Classifies an error that surfaced at `stage`, walking its whole `source()` chain.
pub(crate) fn classify(stage: Stage, error: &(dyn StdError + 'static)) -> Failure {
    let kind = classify_kind(stage, error);
    Failure::new(kind, format!("{}: {}", stage.describe(), chain(error)))
}

pub(crate) fn classify_kind(stage: Stage, error: &(dyn StdError + 'static)) -> FailureKind {
    // Anything that breaks the body after a 2xx head means the client got less than the server promised.
    if stage == Stage::Body {
        return FailureKind::Truncated;
    }
    // A reused connection that is already closed is the close race itself, whatever hyper calls it.
    if stage == Stage::Reuse {
        return FailureKind::Reset;
    }
    for cause in sources(error) {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return FailureKind::Refused,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return FailureKind::Reset,
                io::ErrorKind::TimedOut => return FailureKind::Timeout,
                _ => {}
            }
        }
    }
    for cause in sources(error) {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            // "connection closed before message completed", or the dispatcher went away (closed/canceled) while
            // the request was queued: the server hung up on a request it had been sent.
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return FailureKind::Reset;
            }
            if hyper.is_timeout() {
                return FailureKind::Timeout;
            }
        }
    }
    FailureKind::Other
}

/// The error and all its sources, outermost first.
fn sources<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The error chain on one line: `outer: inner: root`, skipping a source whose text its parent already repeats.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut line = String::new();
    for cause in sources(error) {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn io_kind(kind: io::ErrorKind) -> Wrapper {
        Wrapper(io::Error::new(kind, "boom"))
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(FailureKind::Status(503).key(), "status_503");
        assert_eq!(FailureKind::BodyMismatch.key(), "body_mismatch");
        assert_eq!(FailureKind::Refused.to_string(), "refused");
        assert_eq!(FailureKind::WsClose(1011).key(), "ws_close_1011");
        assert_eq!(FailureKind::MissingEvent.key(), "missing_event");
        assert_eq!(FailureKind::StreamReset.key(), "stream_reset");
    }

    #[test]
    fn walks_the_source_chain_to_the_io_error() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, FailureKind::Refused),
            (io::ErrorKind::ConnectionReset, FailureKind::Reset),
            (io::ErrorKind::BrokenPipe, FailureKind::Reset),
            (io::ErrorKind::UnexpectedEof, FailureKind::Reset),
            (io::ErrorKind::TimedOut, FailureKind::Timeout),
            (io::ErrorKind::AddrNotAvailable, FailureKind::Other),
        ];
        for (kind, expected) in cases {
            let failure = classify(Stage::Response, &io_kind(kind));
            assert_eq!(failure.kind, expected, "{kind:?}");
            assert!(
                failure.detail.contains("wrapped: boom"),
                "{}",
                failure.detail
            );
        }
    }

    #[test]
    fn any_body_error_is_truncation_and_any_reuse_error_is_the_close_race() {
        let reset = io_kind(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(Stage::Body, &reset).kind, FailureKind::Truncated);
        let other = io_kind(io::ErrorKind::Other);
        let race = classify(Stage::Reuse, &other);
        assert_eq!(race.kind, FailureKind::Reset);
        assert!(
            race.detail.contains("without `Connection: close`"),
            "{}",
            race.detail
        );
    }

    #[test]
    fn chain_is_one_line() {
        let err = Wrapper(io::Error::other("two\nlines"));
        assert_eq!(chain(&err), "wrapped: two lines");
    }
}
