//! The access log: one line per request, in the combined format (what nginx
//! and Apache write) or as JSON lines, to stdout or a file. Lines are handed
//! to a writer thread over a bounded channel, so a slow disk never stalls a
//! request; if the channel is full, the line is dropped and counted.
//! Never logs request bodies or credentials (no `Authorization`, no cookies).
//!
//! The status is the one sent, except for a request its client abandoned
//! before the response began (hung up mid-upload, or while waiting for the
//! response): that one is logged as [`CLIENT_CLOSED_REQUEST`] (nginx's
//! 499), with no upstream, whatever reached the client's dead socket.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `peer - - [time] "METHOD uri VERSION" status bytes "referer" "agent"`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// The status logged for a request whose client went away before the
/// response began (never sent on the wire: it is not an HTTP status).
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

/// One finished request.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub peer: Option<SocketAddr>,
    pub method: &'a str,
    pub uri: &'a str,
    pub version: &'a str,
    pub host: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub duration: Duration,
    pub upstream: &'a str,
    pub request_id: &'a str,
}

/// A running access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: Format,
    dropped: AtomicU64,
}

const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// Opens the log: `-` is stdout, anything else a file opened for append.
    pub fn open(path: &str, format: Format) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(io::stdout())
        } else {
            Box::new(OpenOptions::new().create(true).append(true).open(path)?)
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AccessLog {
            tx,
            format,
            dropped: AtomicU64::new(0),
        })
    }

    pub(crate) fn log(&self, entry: &Entry<'_>) {
        let line = match self.format {
            Format::Combined => combined(entry, SystemTime::now()),
            Format::Json => json(entry, SystemTime::now()),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "access log cannot keep up; lines dropped");
            }
        }
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Flush when nothing else is waiting, so lines appear promptly.
        let mut more = true;
        while more {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(line.as_bytes());
                }
                Err(_) => more = false,
            }
        }
        let _ = out.flush();
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Escapes a field for a double-quoted combined-log position.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in dash(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn combined(e: &Entry<'_>, now: SystemTime) -> String {
    let peer = e
        .peer
        .map_or_else(|| "-".to_owned(), |p| p.ip().to_string());
    let bytes = e.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
    format!(
        "{peer} - - [{}] \"{} {} {}\" {} {bytes} \"{}\" \"{}\"\n",
        clf_time(now),
        quoted(e.method),
        quoted(e.uri),
        e.version,
        e.status,
        quoted(e.referer),
        quoted(e.user_agent),
    )
}

fn json(e: &Entry<'_>, now: SystemTime) -> String {
    let mut line = serde_json::json!({
        "time": humantime::format_rfc3339_millis(now).to_string(),
        "peer": e.peer.map(|p| p.ip().to_string()),
        "method": e.method,
        "uri": e.uri,
        "version": e.version,
        "host": e.host,
        "status": e.status,
        "bytes": e.bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
        "upstream": e.upstream,
        "request_id": e.request_id,
    })
    .to_string();
    line.push('\n');
    line
}

/// `25/Nov/2026:16:24:15 +0000`, always in UTC.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            peer: Some("192.0.2.7:5555".parse().unwrap()),
            method: "GET",
            uri: "/a?b=\"c\"",
            version: "HTTP/1.1",
            host: "example.com",
            status: 200,
            bytes: Some(12),
            referer: "",
            user_agent: "curl/8",
            duration: Duration::from_millis(3),
            upstream: "127.0.0.1:9001",
            request_id: "abc",
        }
    }

    #[test]
    fn combined_format_matches_nginx() {
        // 2026-11-25T16:24:15Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_623_855);
        assert_eq!(
            combined(&entry(), t),
            "192.0.2.7 - - [25/Nov/2026:16:24:15 +0000] \"GET /a?b=\\\"c\\\" HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n"
        );
    }

    #[test]
    fn json_lines_parse_back() {
        let line = json(&entry(), UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["uri"], "/a?b=\"c\"");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }
}
