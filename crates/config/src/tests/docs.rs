//! `docs/config.md` cannot drift: its reference part is generated from the
//! schema table (and the kitchen-sink example), and this test fails with a
//! diff when the file differs. `UPDATE_DOCS=1 cargo test -p config` rewrites
//! it.

use std::fmt::Write;

use super::kitchen::KITCHEN_SINK;
use crate::schema::{IfMissing, SECTIONS, Type};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
const BEGIN: &str = "<!-- BEGIN GENERATED REFERENCE: edit crates/config/src/schema/, then run `UPDATE_DOCS=1 cargo test -p config` -->\n";
const END: &str = "<!-- END GENERATED REFERENCE -->\n";

fn type_name(ty: Type) -> &'static str {
    match ty {
        Type::String => "string",
        Type::Integer => "integer",
        Type::Bool => "boolean",
        Type::Number => "number",
        Type::PortOrBool => "port or boolean",
        Type::Duration => "duration",
        Type::Size => "size",
        Type::Status => "status range",
        Type::Strings => "array of strings",
        Type::Integers => "array of integers",
        Type::StringMap => "table of strings",
        Type::Table(_) => "table",
        Type::Tables(_) => "array of tables",
        Type::NamedTables(_) => "tables by name",
    }
}

fn default_text(name: &str, ty: Type, if_missing: IfMissing) -> String {
    match (if_missing, ty) {
        (IfMissing::Required, _) => "**required**".into(),
        (IfMissing::Either(other), _) => format!("**exactly one of `{name}` and `{other}`**"),
        (
            IfMissing::Default(v),
            Type::Integer | Type::Bool | Type::Number | Type::Strings | Type::Integers,
        ) => format!("`{v}`"),
        (IfMissing::Default(v), _) => format!("`\"{v}\"`"),
        (IfMissing::Unset(what), _) => format!("*{what}*"),
    }
}

/// The generated part of `docs/config.md`, markers included.
fn reference() -> String {
    let mut out = String::from(BEGIN);
    out.push_str("\n## Reference\n");
    for section in SECTIONS {
        let _ = write!(out, "\n### {}\n\n{}\n\n", section.heading, section.doc);
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for key in section.keys {
            let ty = type_name(key.ty);
            let default = default_text(key.name, key.ty, key.if_missing);
            let _ = writeln!(out, "| `{}` | {ty} | {default} | {} |", key.name, key.doc);
        }
    }
    out.push_str("\n## Complete example\n\nEvery key, each with a value other than its default ");
    out.push_str(
        "(`crates/config/testdata/kitchen-sink.toml`, which the tests parse):\n\n```toml\n",
    );
    out.push_str(KITCHEN_SINK);
    out.push_str("```\n\n");
    out.push_str(END);
    out
}

#[test]
fn docs_config_md_matches_the_schema() {
    let docs = std::fs::read_to_string(DOCS).unwrap_or_default();
    let (before, current, after) = match (docs.find(BEGIN), docs.find(END)) {
        (Some(b), Some(e)) if b < e => {
            (&docs[..b], &docs[b..e + END.len()], &docs[e + END.len()..])
        }
        _ => (docs.as_str(), "", ""),
    };
    let expected = reference();
    if current == expected {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(DOCS, format!("{before}{expected}{after}"))
            .expect("could not write docs/config.md");
        return;
    }
    panic!(
        "docs/config.md is out of date with crates/config/src/schema/ \
         (run `UPDATE_DOCS=1 cargo test -p config` to regenerate it).\n\
         Differences (- in docs/config.md, + generated):\n{}",
        diff(current, &expected)
    );
}

/// A line diff (longest common subsequence), changed lines only.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn diff_shows_changed_lines_only() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\nd\n"), "+ x\n- b\n+ d\n");
}

#[test]
fn every_key_appears_in_the_reference() {
    let text = reference();
    for section in SECTIONS {
        for key in section.keys {
            assert!(
                text.contains(&format!("| `{}` |", key.name)),
                "{}",
                key.name
            );
        }
    }
}
