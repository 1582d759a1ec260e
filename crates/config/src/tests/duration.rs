//! Every duration key is bounded by the same maximum (`MAX_DURATION`): a
//! value at the maximum is accepted, one nanosecond more is refused at the
//! value's line and column. The keys come from the schema, through the
//! kitchen-sink file (which uses every key, in every section that has it),
//! so a new duration key is covered without touching this file.

use std::ops::Range;
use std::time::Duration;

use super::kitchen::KITCHEN_SINK;
use super::{error, ok};
use crate::check::SeenKey;
use crate::error::Diagnostics;
use crate::schema::{CLUSTER, HEALTH, Type};
use crate::validate::{MAX_DURATION, MAX_DURATION_TEXT};

/// Every duration value in the kitchen-sink file, with its section and key.
fn duration_values() -> Vec<SeenKey> {
    let mut met = Vec::new();
    let mut diag = Diagnostics::new(KITCHEN_SINK, "kitchen-sink.toml");
    assert!(crate::parse_raw(KITCHEN_SINK, &mut diag, Some(&mut met)).is_some());
    assert!(diag.is_empty());
    met.retain(|m| matches!(m.key.ty, Type::Duration));
    met
}

/// A duration as a string humantime parses back exactly.
fn written(d: Duration) -> String {
    format!("\"{}s {}ns\"", d.as_secs(), d.subsec_nanos())
}

/// The kitchen-sink file with each `(span, text)` replacing what was there.
fn replaced(mut changes: Vec<(Range<usize>, String)>) -> String {
    changes.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut source = KITCHEN_SINK.to_owned();
    for (span, text) in changes {
        source.replace_range(span, &text);
    }
    source
}

/// `LINE:COLUMN` of a byte offset, as the errors give it.
fn position(offset: usize) -> String {
    let before = &KITCHEN_SINK[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{column}")
}

#[test]
fn the_maximum_is_100_years() {
    assert_eq!(
        MAX_DURATION,
        humantime::parse_duration("100y").unwrap(),
        "{MAX_DURATION_TEXT}"
    );
}

#[test]
fn every_duration_key_accepts_the_maximum() {
    let values = duration_values();
    // Far more than the handful of sections: the walk found them.
    assert!(values.len() >= 20, "{} duration values", values.len());
    // All at once, so that keys compared with each other stay in order: a
    // health check's `timeout` must be shorter than its `interval`, so it
    // is at the largest value below the maximum.
    let changes = values
        .iter()
        .map(|m| {
            let max = if std::ptr::eq(m.section, &HEALTH) && m.key.name == "timeout" {
                MAX_DURATION - Duration::from_nanos(1)
            } else if std::ptr::eq(m.section, &CLUSTER) && m.key.name == "lease_ttl" {
                // A lease has its own, narrower range (2 s to 1 h).
                Duration::from_secs(3600)
            } else {
                MAX_DURATION
            };
            (m.value.clone(), written(max))
        })
        .collect();
    ok(&replaced(changes));
}

#[test]
fn every_duration_key_refuses_more_than_the_maximum_at_its_position() {
    let over = written(MAX_DURATION + Duration::from_nanos(1));
    for m in duration_values() {
        let source = replaced(vec![(m.value.clone(), over.clone())]);
        assert_eq!(
            error(&source),
            format!(
                "{}: `{}` must be at most {MAX_DURATION_TEXT}, not {}",
                position(m.value.start),
                m.key.name,
                over
            ),
            "in {}",
            m.section.heading
        );
    }
}

#[test]
fn the_largest_duration_humantime_reads_is_refused() {
    let source = format!(
        "{}[proxy]\ndrain_timeout = \"18446744073709551615s\"\n",
        super::MINIMAL
    );
    assert_eq!(
        error(&source),
        format!(
            "4:17: `drain_timeout` must be at most {MAX_DURATION_TEXT}, not \"18446744073709551615s\""
        )
    );
}
