//! The control API and its OpenAPI document (`docs/openapi.json`) cannot
//! drift apart: the routes of `control.rs` are exactly the document's
//! operations; every operation, sent to a real `baton serve` over its admin
//! listener, answers a status the document lists with a body of the
//! documented schema; and a property-based fuzz generates requests from
//! the document's schemas — valid ones, then mutated ones (wrong types,
//! missing or unknown fields, extreme numbers, odd strings, bodies that are
//! not JSON) — and finds no 5xx, no undocumented answer and no crash.
//!
//! The fuzz is seeded (`FUZZ_SEED`, or the default) so that a failure
//! replays; its size is bounded so that it runs in seconds.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::support::{self, TempDir, dechunk, exchange_first_event, wait_version};

const TOKEN: &str = "openapi-fuzz-token-3b7d90c1";
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
const CONTROL_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/control.rs");
/// The one operation the fuzz leaves out: it replaces the process.
const UPGRADE: &str = "/v1/upgrade";
/// Generated requests per operation.
const CASES: usize = 30;

fn doc() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DOC).unwrap()).unwrap()
}

/// (METHOD, path) of every operation of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// (METHOD, path) of every `.route("PATH", get(..).post(..))` of the
/// control API's source.
fn routed() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(CONTROL_RS).unwrap();
    let mut out = BTreeSet::new();
    for piece in source.split(".route(\"").skip(1) {
        let (path, rest) = piece.split_once('"').unwrap();
        let call = &rest[..rest.find("\n").unwrap_or(rest.len())];
        for method in ["get", "post", "put", "patch", "delete"] {
            let direct = format!(" {method}(");
            let chained = format!(".{method}(");
            if call.contains(&direct) || call.contains(&chained) {
                out.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let doc = doc();
    let routes = routed();
    assert!(routes.len() >= 7, "{routes:?}");
    assert_eq!(
        routes,
        documented(&doc),
        "crates/baton/src/control.rs and docs/openapi.json differ"
    );
    // Every `$ref` resolves.
    fn refs(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    assert!(resolve(doc, v).get("$ref").is_none(), "{r}");
                    let target = pointer(doc, r);
                    assert!(!target.is_null(), "unresolved {r}");
                }
                m.values().for_each(|x| refs(x, doc));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, doc)),
            _ => {}
        }
    }
    refs(&doc, &doc);
}

fn pointer<'a>(doc: &'a Value, r: &str) -> &'a Value {
    doc.pointer(r.trim_start_matches('#'))
        .unwrap_or(&Value::Null)
}

/// `schema` with its `$ref`s followed.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(Value::String(r)) = schema.get("$ref") {
        schema = pointer(doc, r);
    }
    schema
}

/// Checks `value` against the subset of JSON Schema the document uses.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, value, at)?;
        }
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|s| validate(doc, s, value, at).is_ok())
            .count();
        return if matching == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {matching} of oneOf match {value}"))
        };
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some(other) => return Err(format!("{at}: unknown type {other}")),
    };
    if !ok {
        return Err(format!("{at}: {value} is not {}", schema["type"]));
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            return Err(format!("{at}: {n} below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            return Err(format!("{at}: {n} above the maximum"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: missing {name} in {value}"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, v) in object {
                if let Some(s) = props.get(name) {
                    validate(doc, s, v, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "web",
    "nope",
    "",
    "v2",
    "v3.1",
    "../../etc/passwd",
    "ünïcødé",
    "a b",
    "127.0.0.1:9",
    "[::1]:1",
    "host:99999",
    "canary",
    "\u{0}",
    "%00",
];

fn any_string(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "x".repeat(rng.below(5000)),
        1 => (0..rng.below(20))
            .map(|_| char::from_u32(rng.below(0x2FFF) as u32 + 1).unwrap_or('?'))
            .collect(),
        _ => rng.pick(STRINGS).to_string(),
    }
}

fn any_integer(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(u64::MAX),
        1 => json!(0),
        2 => json!(i64::MIN),
        3 => json!(1e300),
        _ => json!(rng.next() % 100_000),
    }
}

/// A value of `schema` (valid, but for numbers and strings at their
/// extremes).
fn generate(doc: &Value, schema: &Value, rng: &mut Rng, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        return generate(doc, rng.pick(options), rng, depth + 1);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return rng.pick(allowed).clone();
    }
    match schema["type"].as_str() {
        Some("object") => {
            let mut out = Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, s) in schema["properties"].as_object().into_iter().flatten() {
                if required.contains(&name.as_str()) || rng.chance(2) {
                    out.insert(name.clone(), generate(doc, s, rng, depth + 1));
                }
            }
            Value::Object(out)
        }
        Some("array") if depth < 6 => Value::Array(
            (0..rng.below(4))
                .map(|_| generate(doc, &schema["items"], rng, depth + 1))
                .collect(),
        ),
        Some("array") => json!([]),
        Some("string") => json!(any_string(rng)),
        Some("integer") => {
            let min = schema["minimum"].as_u64().unwrap_or(0);
            match rng.below(3) {
                0 => json!(min),
                1 => json!(u64::MAX),
                _ => json!(min + rng.next() % 100_000),
            }
        }
        Some("number") => json!(rng.next() as f64 / 1e6),
        Some("boolean") => json!(rng.chance(2)),
        _ => Value::Null,
    }
}

/// `value` broken in one way, or replaced by something else entirely.
fn mutate(value: Value, rng: &mut Rng) -> String {
    let wrong = |rng: &mut Rng| match rng.below(7) {
        0 => Value::Null,
        1 => json!(true),
        2 => any_integer(rng),
        3 => json!([any_string(rng)]),
        4 => json!({"nested": {"deeper": [1, 2, 3]}}),
        5 => json!(-1),
        _ => json!(any_string(rng)),
    };
    match (rng.below(8), value) {
        (0..=2, Value::Object(mut m)) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(3) {
                0 => {
                    m.remove(&key);
                }
                _ => {
                    m.insert(key, wrong(rng));
                }
            }
            Value::Object(m).to_string()
        }
        (3, Value::Object(mut m)) => {
            m.insert(any_string(rng), wrong(rng));
            Value::Object(m).to_string()
        }
        (4, _) => wrong(rng).to_string(),
        (5, _) => "[".repeat(rng.below(200) + 1),
        (6, v) => {
            let text = v.to_string();
            let mut end = rng.below(text.len().max(1));
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        }
        (_, _) => (0..rng.below(64))
            .map(|_| char::from(rng.below(256) as u8))
            .collect(),
    }
}

fn config(dir: &TempDir, token: &std::path::Path) -> PathBuf {
    let path = dir.path().join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[listener]]
address = "127.0.0.1:0"

[service.web]
command = ["{}", "--listen", "127.0.0.1:{{port}}", "--app-version", "{{version}}"]
version = "v1"
ready_timeout = "2s"
deploy_timeout = "2s"
[service.web.health]
path = "/healthz"
interval = "50ms"
timeout = "40ms"
healthy_threshold = 1
[service.web.canary]
steps = [100]
min_requests = 1

[[route]]
service = "web"

[admin]
listen = "127.0.0.1:0"
token = "file:{}"
"#,
            support::hello().display(),
            token.display()
        ),
    )
    .unwrap();
    path
}

/// One request to the admin listener: (status, content type, body).
async fn send(admin: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = tokio::time::timeout(
        support::EVENT_TIMEOUT,
        exchange_first_event(admin, request.as_bytes()),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path} {body:?}: no answer"));
    let text = match r.header("transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => dechunk(&r.body),
        _ => r.body.clone(),
    };
    let content_type = r
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    (r.status, content_type, text)
}

/// The answer conforms to the document: a listed status, a listed content
/// type, a body of its schema.
fn conforms(
    doc: &Value,
    method: &str,
    path: &str,
    answer: &(u16, String, String),
) -> Result<(), String> {
    let (status, content_type, body) = answer;
    let operation = &doc["paths"][path][method.to_lowercase()];
    let response = resolve(doc, &operation["responses"][status.to_string()]);
    if response.is_null() {
        return Err(format!("status {status} is not documented: {body}"));
    }
    let Some(content) = response.get("content") else {
        return Ok(());
    };
    let Some(media) = content.get(content_type.as_str()) else {
        return Err(format!(
            "{status} with undocumented content type {content_type:?}: {body}"
        ));
    };
    let schema = &media["schema"];
    match content_type.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
            validate(doc, schema, &value, "body")
        }
        "application/x-ndjson" => {
            let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
            if lines.is_empty() {
                return Err(format!("{status}: an empty stream"));
            }
            for line in &lines {
                let value: Value =
                    serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
                validate(doc, schema, &value, "line")?;
            }
            let last: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
            if last["event"] != "result" {
                return Err(format!("the stream does not end with its result: {body}"));
            }
            Ok(())
        }
        "text/event-stream" => {
            // The first event: a snapshot, whose data is one JSON line.
            let data = body
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .ok_or_else(|| format!("{status}: no event data: {body}"))?;
            if !body.starts_with("event: snapshot\n") {
                return Err(format!("not a snapshot event: {body}"));
            }
            let value: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
            validate(doc, schema, &value, "data")
        }
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_documented_and_survives_a_fuzz_from_the_document() {
    let doc = doc();
    let dir = TempDir::new("openapi");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let path = config(&dir, &token);
    let (mut baton, addr) = support::baton_serve(&path).await;
    let admin = support::admin_addr(&mut baton).await;
    wait_version(&addr, "v1").await;

    // Each operation with a request that should work, in an order where
    // it does: every one is routed (no 404 or 405) and answers as
    // documented.
    let source = std::fs::read_to_string(&path).unwrap();
    let valid: [(&str, &str, Option<Value>, u16); 12] = [
        ("GET", "/v1/status", None, 200),
        ("GET", "/v1/events", None, 200),
        ("GET", "/v1/certificates", None, 200),
        // Not in cluster mode: says so (the cluster tests get its 200).
        ("GET", "/v1/cluster", None, 404),
        ("GET", "/metrics", None, 200),
        (
            "POST",
            "/v1/deploy",
            Some(json!({"service": "web", "version": "v2"})),
            200,
        ),
        ("POST", "/v1/rollback", Some(json!({"service": "web"})), 200),
        (
            "POST",
            "/v1/pause",
            Some(json!({"service": "web", "max_wait_ms": 1000})),
            200,
        ),
        ("POST", "/v1/resume", Some(json!({"service": "web"})), 200),
        ("POST", "/v1/reload", None, 200),
        ("GET", "/v1/config", None, 200),
        // The file it runs: applied, nothing changes.
        ("POST", "/v1/apply", Some(json!({ "source": source })), 200),
    ];
    let mut covered: BTreeSet<(String, String)> = valid
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    // A valid upgrade would replace the process under test (the upgrade
    // tests do that): it gets a request its extractor refuses, and the
    // fuzz leaves it out.
    covered.insert(("POST".into(), UPGRADE.into()));
    assert_eq!(covered, documented(&doc));
    for (method, path, body, expected) in &valid {
        let body = body.as_ref().map(Value::to_string);
        let answer = send(&admin, method, path, body.as_deref()).await;
        assert_eq!(answer.0, *expected, "{method} {path}: {answer:?}");
        if let Err(e) = conforms(&doc, method, path, &answer) {
            panic!("{method} {path}: {e}");
        }
    }

    let body = r#"{"timeout_ms": "soon"}"#;
    let answer = send(&admin, "POST", UPGRADE, Some(body)).await;
    assert_eq!(answer.0, 422, "{answer:?}");
    if let Err(e) = conforms(&doc, "POST", UPGRADE, &answer) {
        panic!("POST {UPGRADE}: {e}");
    }

    // The fuzz: every operation that takes a body, CASES requests each,
    // half generated from the schema, half mutated.
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15_u64);
    let mut rng = Rng(seed);
    let mut statuses = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == UPGRADE {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let method = method.to_uppercase();
            for case in 0..CASES {
                let body = if schema.is_null() {
                    (case % 2 == 1).then(|| mutate(json!({}), &mut rng))
                } else {
                    let value = generate(&doc, schema, &mut rng, 0);
                    Some(if case % 2 == 0 {
                        value.to_string()
                    } else {
                        mutate(value, &mut rng)
                    })
                };
                let answer = send(&admin, &method, path, body.as_deref()).await;
                statuses.insert(answer.0);
                assert!(
                    answer.0 < 500,
                    "{method} {path} {body:?} (seed {seed:#x}): {answer:?}\n{}",
                    baton.dump()
                );
                if let Err(e) = conforms(&doc, &method, path, &answer) {
                    panic!("{method} {path} {body:?} (seed {seed:#x}): {e}");
                }
            }
        }
    }
    // The fuzz reached both the handlers and the extractor's refusals.
    for status in [200, 400, 404, 422] {
        assert!(statuses.contains(&status), "never {status}: {statuses:?}");
    }
    // Still serving, and nothing panicked.
    let answer = send(&admin, "GET", "/v1/status", None).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let log = baton.lines().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}
