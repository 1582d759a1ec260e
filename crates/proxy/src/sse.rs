//! Server-sent event streams (`text/event-stream`) ended cleanly when the
//! proxy drains, or when their member leaves the config: a client that sees the response end between two events
//! knows the stream was closed on purpose and opens a new one (to the next
//! process), while one cut inside an event sees a broken stream. So once
//! the drain starts, an event stream's body is passed on up to the end of
//! the last complete event it has received, and then ended.
//!
//! [`Events`] finds where events end — a blank line, with lines ended by
//! LF, CRLF or CR, a CRLF possibly split between two chunks — by looking at
//! each byte once; it holds no bytes and never allocates. A comment block
//! (`: keep-alive`) counts as an event: a stream is never ended inside one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http::header::CONTENT_TYPE;

use crate::tunnel::GoAway;

/// Whether a response's body is an event stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Where an event stream stands: between events, or inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Events {
    /// No byte of the current line yet.
    line_start: bool,
    /// The current event has a line already (its end is a blank line).
    in_event: bool,
    /// The last byte was a CR: an LF now only completes that line end.
    after_cr: bool,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            line_start: true,
            in_event: false,
            after_cr: false,
        }
    }
}

impl Events {
    /// Whether the bytes seen so far end between two events.
    pub(crate) fn between(&self) -> bool {
        self.line_start && !self.in_event
    }

    /// Takes the next bytes of the stream; returns the length of the
    /// longest prefix of `data` that ends between two events, if any
    /// prefix does (0 when already between events before `data`).
    pub(crate) fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let mut last = self.between().then_some(0);
        for (i, &b) in data.iter().enumerate() {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                // Completes the CR's line end: nothing changes.
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line_start {
                        self.in_event = false;
                    }
                    self.line_start = true;
                }
                _ => {
                    self.line_start = false;
                    self.in_event = true;
                }
            }
            if self.between() {
                last = Some(i + 1);
            }
        }
        last
    }
}

/// An event stream's end at the drain: [`EventEnd::poll_away`] says when
/// the drain has started, [`Events`] where the body may end.
pub(crate) struct EventEnd {
    pub events: Events,
    away: bool,
    signal: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl EventEnd {
    /// Ends the stream on `go_away`.
    pub(crate) fn new(mut go_away: GoAway) -> EventEnd {
        EventEnd {
            events: Events::default(),
            away: false,
            signal: Box::pin(async move { go_away.wait().await }),
        }
    }

    /// Whether the drain has started; registers for a wake-up otherwise.
    pub(crate) fn poll_away(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.away && self.signal.as_mut().poll(cx) == Poll::Ready(()) {
            self.away = true;
        }
        self.away
    }

    /// Whether the drain has started (as last polled).
    pub(crate) fn away(&self) -> bool {
        self.away
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets after which `stream` is between events, by a plain reading
    /// of the format: lines split on CRLF, LF or CR, an event ended by an
    /// empty line.
    fn reference(stream: &[u8]) -> Vec<usize> {
        let mut ends = vec![0];
        let mut line_len = 0;
        let mut in_event = false;
        let mut i = 0;
        while i < stream.len() {
            let end = match stream[i] {
                b'\r' if stream.get(i + 1) == Some(&b'\n') => Some(2),
                b'\r' | b'\n' => Some(1),
                _ => None,
            };
            match end {
                Some(n) => {
                    if line_len == 0 {
                        in_event = false;
                    }
                    line_len = 0;
                    i += n;
                    if !in_event {
                        ends.push(i);
                        // A CR whose LF has not arrived is already an end.
                        if n == 2 {
                            ends.push(i - 1);
                        }
                    }
                }
                None => {
                    line_len += 1;
                    in_event = true;
                    i += 1;
                }
            }
        }
        ends.sort_unstable();
        ends
    }

    #[test]
    fn event_ends_match_a_plain_reading_in_any_chunking() {
        let mut rng = fastrand::Rng::with_seed(3);
        let pieces: [&[u8]; 8] = [
            b"data: tick",
            b"event: x",
            b": comment",
            b"\n",
            b"\r\n",
            b"\r",
            b"id: 7",
            b"data",
        ];
        for _ in 0..2000 {
            let stream: Vec<u8> = (0..rng.usize(0..20))
                .flat_map(|_| pieces[rng.usize(..pieces.len())].iter().copied())
                .collect();
            let ends = reference(&stream);
            let mut events = Events::default();
            let mut at = 0;
            while at < stream.len() {
                let n = rng.usize(1..=stream.len() - at);
                let last = events.feed(&stream[at..at + n]);
                let want = ends.iter().rev().find(|&&e| e >= at && e <= at + n);
                assert_eq!(
                    last.map(|l| at + l),
                    want.copied(),
                    "{stream:?} at {at}+{n}"
                );
                at += n;
                assert_eq!(events.between(), ends.contains(&at), "{stream:?} at {at}");
            }
        }
    }

    #[test]
    fn an_event_ends_at_its_blank_line() {
        let mut events = Events::default();
        assert_eq!(events.feed(b"data: 1\n\ndata: 2\n"), Some(9));
        assert!(!events.between());
        assert_eq!(events.feed(b"\n"), Some(1));
        assert_eq!(events.feed(b"data: 3\r\n\r"), Some(10));
        // The LF of that CRLF only completes it.
        assert_eq!(events.feed(b"\n"), Some(1));
        assert_eq!(events.feed(b"data: 4"), Some(0));
        assert_eq!(events.feed(b"\n"), None);
    }

    #[test]
    fn the_content_type_says_whether_it_is_an_event_stream() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        h.insert(CONTENT_TYPE, "text/event-stream".parse().unwrap());
        assert!(is_event_stream(&h));
        h.insert(
            CONTENT_TYPE,
            "Text/Event-Stream; charset=utf-8".parse().unwrap(),
        );
        assert!(is_event_stream(&h));
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_event_stream(&h));
    }
}
