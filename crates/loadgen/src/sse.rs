//! Server-sent event streams: one stream at a time per worker, each `tick N` event one request.
//!
//! Owns the event parser (a pure function of the bytes, unit-tested) and the rules of a stream's end. A stream is
//! a failure when it breaks (reset, a body error), ends in the middle of an event (truncated), skips a tick
//! (`missing_event`), or is not an event stream at all. It is an announced end — the worker opens a new stream and
//! nothing is counted — when the server ends the response cleanly between two events, or sends `event: shutdown`
//! (what `hello` does when it drains). Only `tick N` data lines are counted; their numbering starts at 1 on every
//! stream, so a gap is found within a stream, not across two.

use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_TYPE};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::conn::{self, Connection, first_line, instance_of};
use crate::failure::{Failure, FailureKind, Stage, classify};
use crate::plan::Plan;
use crate::worker::Attempt;

/// The longest line the parser holds while waiting for its end.
const MAX_LINE: usize = 64 * 1024;

/// One open event stream.
pub(crate) struct Stream {
    /// Keeps the connection's driver alive while the body is read.
    _conn: Connection,
    body: Incoming,
    parser: Parser,
    /// The last tick number of this stream (0 before the first).
    last: u64,
    instance: Option<String>,
}

/// Waits for the next `tick` event, opening a stream first if there is none; reopens one after an announced end.
pub(crate) async fn next_tick(
    slot: &mut Option<Stream>,
    attempt: &mut Attempt<'_>,
    plan: &Plan,
) -> Result<(), Failure> {
    loop {
        let stream = match slot {
            Some(stream) => stream,
            None => slot.insert(open(attempt, plan).await?),
        };
        *attempt.responded = Some(stream.instance.clone());
        let result = match stream.next_event().await {
            Ok(Some(event)) => match event.name.as_deref() {
                Some("shutdown") => None,
                None | Some("message") => Some(check_tick(&mut stream.last, &event.data)),
                // Other events are not the ones counted.
                Some(_) => continue,
            },
            Ok(None) => None,
            Err(failure) => Some(Err(failure)),
        };
        match result {
            Some(Ok(())) => return Ok(()),
            Some(Err(failure)) => {
                *slot = None;
                return Err(failure);
            }
            None => {
                *slot = None;
                attempt.announced_end("event stream")?;
            }
        }
    }
}

async fn open(attempt: &mut Attempt<'_>, plan: &Plan) -> Result<Stream, Failure> {
    let mut conn = conn::connect(attempt.target).await?;
    conn.sender
        .ready()
        .await
        .map_err(|e| classify(Stage::Handshake, &e))?;
    let mut request = plan.request(attempt.host, false);
    request
        .headers_mut()
        .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let response = conn
        .sender
        .send_request(request)
        .await
        .map_err(|e| classify(Stage::Response, &e))?;
    let instance = instance_of(response.headers());
    *attempt.responded = Some(instance.clone());
    let status = response.status();
    let is_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() || !is_stream {
        let body = response.into_body().collect().await.map(|c| c.to_bytes());
        let text = body.as_deref().map(first_line).unwrap_or_default();
        return Err(if status.is_success() {
            Failure::new(
                FailureKind::BodyMismatch,
                format!("not an event stream: {text:?}"),
            )
        } else {
            Failure::new(
                FailureKind::Status(status.as_u16()),
                format!("status {status}: {text:?}"),
            )
        });
    }
    Ok(Stream {
        _conn: conn,
        body: response.into_body(),
        parser: Parser::default(),
        last: 0,
        instance,
    })
}

impl Stream {
    /// The next complete event; `None` when the stream ended cleanly between two events.
    async fn next_event(&mut self) -> Result<Option<Event>, Failure> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None if self.parser.mid_event() => {
                    return Err(Failure::new(
                        FailureKind::Truncated,
                        "the event stream ended in the middle of an event",
                    ));
                }
                None => return Ok(None),
                Some(Err(e)) => return Err(classify(Stage::Body, &e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data);
                    }
                }
            }
        }
    }
}

/// `tick N …` must follow `tick N-1` (`last`).
fn check_tick(last: &mut u64, data: &str) -> Result<(), Failure> {
    {
        let n = data
            .strip_prefix("tick ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Failure::new(
                    FailureKind::BodyMismatch,
                    format!("not a tick event: {:?}", first_line(data.as_bytes())),
                )
            })?;
        let expected = *last + 1;
        if n != expected {
            return Err(Failure::new(
                FailureKind::MissingEvent,
                format!("expected tick {expected}, got tick {n}"),
            ));
        }
        *last = n;
        Ok(())
    }
}

/// One event: its `event:` name, if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: Option<String>,
    pub(crate) data: String,
}

/// The event-stream format, fed bytes as they arrive. Lines end with LF or CRLF; a blank line ends an event;
/// lines starting with `:` are comments; fields other than `event` and `data` are ignored.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    event: Event,
    /// A field of the current event has been read.
    fields: bool,
}

impl Parser {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes so far hold one.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, Failure> {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if std::mem::take(&mut self.fields) {
                    return Ok(Some(std::mem::take(&mut self.event)));
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.fields = true;
            match field {
                "event" => self.event.name = Some(value.to_owned()),
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                _ => {}
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err(Failure::new(
                FailureKind::BodyMismatch,
                format!("an event-stream line longer than {MAX_LINE} B"),
            ));
        }
        Ok(None)
    }

    /// Whether the bytes so far end inside an event: a stream that ends here was cut.
    pub(crate) fn mid_event(&self) -> bool {
        self.fields || !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn tick(n: u64) -> Bytes {
        Bytes::from(format!("data: tick {n} v1\n\n"))
    }

    #[test]
    fn ticks_must_follow_each_other() {
        let mut last = 0;
        assert_eq!(check_tick(&mut last, "tick 1 v1"), Ok(()));
        assert_eq!(check_tick(&mut last, "tick 2 v2"), Ok(()));
        let gap = check_tick(&mut last, "tick 4 v2").unwrap_err();
        assert_eq!(gap.kind, FailureKind::MissingEvent);
        assert!(
            gap.detail.contains("expected tick 3, got tick 4"),
            "{}",
            gap.detail
        );
        let odd = check_tick(&mut last, "hello").unwrap_err();
        assert_eq!(odd.kind, FailureKind::BodyMismatch);
    }

    fn events(parser: &mut Parser) -> Vec<Event> {
        std::iter::from_fn(|| parser.next_event().unwrap()).collect()
    }

    #[test]
    fn events_are_split_at_blank_lines_whatever_the_chunks() {
        let text = b": comment\n\ndata: tick 1 v1\n\nevent: shutdown\r\ndata: shutdown v1\r\n\r\ndata: a\ndata: b\nid: 7\n\n";
        let mut whole = Parser::default();
        whole.push(text);
        let expected = vec![
            Event {
                name: None,
                data: "tick 1 v1".into(),
            },
            Event {
                name: Some("shutdown".into()),
                data: "shutdown v1".into(),
            },
            Event {
                name: None,
                data: "a\nb".into(),
            },
        ];
        assert_eq!(events(&mut whole), expected);
        assert!(!whole.mid_event());
        // Byte by byte: the same events.
        let mut bytes = Parser::default();
        let mut got = Vec::new();
        for b in text {
            bytes.push(&[*b]);
            got.extend(events(&mut bytes));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_stream_cut_inside_an_event_is_mid_event() {
        let mut parser = Parser::default();
        parser.push(&tick(1));
        parser.push(b"data: tick 2");
        assert_eq!(events(&mut parser).len(), 1);
        assert!(parser.mid_event());
        let mut fields = Parser::default();
        fields.push(b"data: tick 2\n");
        assert!(events(&mut fields).is_empty());
        assert!(fields.mid_event(), "a field without its blank line");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        parser.push(&vec![b'x'; MAX_LINE + 1]);
        let failure = parser.next_event().unwrap_err();
        assert_eq!(failure.kind, FailureKind::BodyMismatch);
    }
}
