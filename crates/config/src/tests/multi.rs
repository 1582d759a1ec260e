//! A file with many mistakes reports all of them, in file order, whichever
//! stage finds them.

use super::errors;
use crate::parse;

const FIVE_MISTAKES: &str = r#"[proxy]
drain_timeout = "30 sekunden"

[[listener]]
name = "http"
adress = "127.0.0.1:8080"

[pool.app]
members = []

[[route]]
path_regex = "(unclosed"
pool = "ap"
"#;

#[test]
fn five_mistakes_five_errors_in_file_order_from_every_stage() {
    let all = errors(FIVE_MISTAKES);
    assert_eq!(all.len(), 5, "{all:#?}");
    // The middle of the duration message is humantime's own wording.
    assert!(
        all[0].starts_with(
            "2:17: invalid duration \"30 sekunden\" for `drain_timeout`: unknown time unit"
        ),
        "{all:#?}"
    );
    assert!(
        all[0].ends_with("(examples: \"500ms\", \"2s\", \"5m\")"),
        "{all:#?}"
    );
    assert_eq!(
        all[1..],
        [
            "6:1: unknown key `adress` in [[listener]] (did you mean `address`?); expected one of: name, address, \
             max_connections, header_read_timeout, max_header_bytes, max_body_bytes, body_read_timeout, body_buffer_bytes, write_timeout, keepalive_timeout, redirect_https, tls",
            "9:11: pool \"app\" has no members",
            "12:14: invalid `path_regex` \"(unclosed\": unclosed group",
            "13:8: unknown pool \"ap\"; defined pools: app",
        ]
    );
}

#[test]
fn display_lists_every_error_then_the_count() {
    let rendered = parse(FIVE_MISTAKES, "conf/baton.toml")
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 6, "{rendered}");
    assert!(
        lines[0].starts_with("conf/baton.toml:2:17: error: invalid duration"),
        "{rendered}"
    );
    assert_eq!(
        lines[4],
        "conf/baton.toml:13:8: error: unknown pool \"ap\"; defined pools: app"
    );
    assert_eq!(lines[5], "5 errors");
}
