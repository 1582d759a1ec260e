//! The shape check: walks the parsed TOML tree against `schema` and reports
//! every unknown key, every value of the wrong TOML type, every missing
//! required key and every pair of alternatives given both or neither — all
//! of them, not just the first. Offending entries are
//! removed from the tree, so the serde pass that follows cannot fail on them
//! and later stages never see them. It never judges a value's meaning
//! (a duration that does not parse is `validate`'s business).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeInteger, DeTable, DeValue};

use crate::error::Diagnostics;
use crate::schema::{IfMissing, Key, Section, Type};

/// Checks `table` (the whole document) against `schema::ROOT`.
pub(crate) fn check_document(
    table: &mut Spanned<DeTable<'_>>,
    diag: &mut Diagnostics<'_>,
    seen: Option<&mut Vec<SeenKey>>,
) {
    let mut checker = Checker { diag, seen };
    // The root table's span is empty; missing keys point at the first byte.
    let span = table.span();
    checker.table(&crate::schema::ROOT, None, table.get_mut(), span);
}

/// A key the check met, for the tests that walk the kitchen-sink file
/// with the schema: which section and key it is, and where its value is.
#[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
pub(crate) struct SeenKey {
    pub(crate) section: &'static Section,
    pub(crate) key: &'static Key,
    pub(crate) value: Range<usize>,
}

struct Checker<'d, 's, 'k> {
    diag: &'d mut Diagnostics<'s>,
    /// Every key met, for the tests.
    seen: Option<&'k mut Vec<SeenKey>>,
}

impl Checker<'_, '_, '_> {
    /// Checks one table of `section`; `owner` is the named table it is or is
    /// in (`pool.app`, `service.web`), for the messages.
    fn table(
        &mut self,
        section: &'static Section,
        owner: Option<&str>,
        table: &mut DeTable<'_>,
        span: Range<usize>,
    ) {
        let place = || section.place_for(owner);
        let mut remove = Vec::new();
        // Keys that an unknown key is probably a typo of: their absence is
        // not reported again as a missing required key.
        let mut suggested = Vec::new();
        // The table's known keys by their position in the schema: one pass
        // over the table, no lookup by name.
        let mut given: Vec<(usize, &mut Spanned<DeValue<'_>>)> = Vec::with_capacity(table.len());
        for (key, value) in table.iter_mut() {
            let name = key.get_ref();
            if let Some(index) = section.keys.iter().position(|k| k.name == name) {
                given.push((index, value));
                continue;
            }
            let expected: Vec<&str> = section.keys.iter().map(|k| k.name).collect();
            let guess = closest(name, &expected);
            let hint = guess
                .map(|g| format!(" (did you mean `{g}`?)"))
                .unwrap_or_default();
            let message = format!(
                "unknown key `{name}` {}{hint}; expected one of: {}",
                place(),
                expected.join(", ")
            );
            self.diag.error(key.span(), message);
            if let Some(guess) = guess {
                self.diag.typo_of(span.start, guess);
                suggested.push(guess);
            }
            remove.push(name.to_string());
        }
        given.sort_unstable_by_key(|(index, _)| *index);
        let present = |name: &str| {
            given
                .iter()
                .find(|(index, _)| section.keys[*index].name == name)
                .map(|(_, value)| value.span())
        };
        self.alternatives(section, &present, &span, &suggested, &place);
        // In schema order, as the errors at one place are listed.
        let mut given = given.into_iter().peekable();
        for (index, key) in section.keys.iter().enumerate() {
            let Some((_, value)) = given.next_if(|(i, _)| *i == index) else {
                if matches!(key.if_missing, IfMissing::Required) && !suggested.contains(&key.name) {
                    let message = if std::ptr::eq(section, &crate::schema::ROOT) {
                        format!("no [[{}]] defined; at least one is required", key.name)
                    } else {
                        format!("missing required key `{}` {}", key.name, place())
                    };
                    self.diag.error(span.clone(), message);
                }
                continue;
            };
            let value_span = value.span();
            if let Some(seen) = self.seen.as_deref_mut() {
                seen.push(SeenKey {
                    section,
                    key,
                    value: value_span.clone(),
                });
            }
            if let DeValue::Integer(n) = value.get_ref() {
                // TOML integers are 64-bit; the parser keeps larger ones as text.
                if !fits_i64(n) {
                    let message =
                        format!("`{}` {}: {} is out of range", key.name, place(), n.as_str());
                    self.diag.error(value_span, message);
                    remove.push(key.name.to_owned());
                    continue;
                }
            }
            if let Err((bad_span, found)) = self.value(key, owner, value) {
                let what = if bad_span == value_span {
                    format!("not {found}")
                } else {
                    format!("but one element is {found}")
                };
                self.diag.error(
                    bad_span,
                    format!(
                        "`{}` {} must be {}, {what}",
                        key.name,
                        place(),
                        key.ty.describe()
                    ),
                );
                remove.push(key.name.to_owned());
            }
        }
        for key in remove {
            table.remove(key.as_str());
        }
    }

    /// Pairs of keys of which exactly one must be given
    /// ([`IfMissing::Either`]): neither is reported at the table, both at
    /// the later value. Nothing is removed; `validate` skips such a table.
    fn alternatives(
        &mut self,
        section: &'static Section,
        present: &dyn Fn(&str) -> Option<Range<usize>>,
        span: &Range<usize>,
        suggested: &[&str],
        place: &dyn Fn() -> String,
    ) {
        for (index, key) in section.keys.iter().enumerate() {
            let IfMissing::Either(other) = key.if_missing else {
                continue;
            };
            // Each pair once, from the key the schema lists first.
            let other_index = section.keys.iter().position(|k| k.name == other);
            if other_index.is_none_or(|o| o < index) {
                continue;
            }
            match (present(key.name), present(other)) {
                (None, None) if !suggested.contains(&key.name) && !suggested.contains(&other) => {
                    let name = key.name;
                    let message = format!(
                        "missing `{name}` or `{other}` {}: give exactly one of them",
                        place()
                    );
                    self.diag.error(span.clone(), message);
                }
                (Some(a), Some(b)) => {
                    let (first, later, later_span) = match a.start < b.start {
                        true => (key.name, other, b),
                        false => (other, key.name, a),
                    };
                    let message = format!(
                        "`{later}` conflicts with `{first}` {}: give exactly one of them",
                        place()
                    );
                    self.diag.error(later_span, message);
                }
                _ => {}
            }
        }
    }

    /// Checks one value; on a shape error returns the span of the offending
    /// value (the value itself or one of its elements) and its type.
    fn value(
        &mut self,
        key: &Key,
        owner: Option<&str>,
        value: &mut Spanned<DeValue<'_>>,
    ) -> Result<(), (Range<usize>, String)> {
        let span = value.span();
        let mismatch = |v: &DeValue<'_>| Err((span.clone(), article(v.type_str())));
        match (key.ty, value.get_mut()) {
            (Type::String | Type::Duration, DeValue::String(_))
            | (Type::Integer, DeValue::Integer(_))
            | (Type::Number, DeValue::Integer(_) | DeValue::Float(_))
            | (Type::Bool, DeValue::Boolean(_))
            | (Type::PortOrBool, DeValue::Integer(_) | DeValue::Boolean(_))
            | (Type::Size | Type::Status, DeValue::String(_) | DeValue::Integer(_)) => Ok(()),
            (Type::Strings, DeValue::Array(items)) => all(items.iter_mut(), |item| {
                matches!(item.get_ref(), DeValue::String(_))
            }),
            (Type::Integers, DeValue::Array(items)) => {
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Integer(n) if fits_i64(n) => {}
                        DeValue::Integer(_) => {
                            return Err((item.span(), "an integer out of range".into()));
                        }
                        other => return Err((item.span(), article(other.type_str()))),
                    }
                }
                Ok(())
            }
            (Type::StringMap, DeValue::Table(map)) => all(map.iter_mut().map(|(_, v)| v), |v| {
                matches!(v.get_ref(), DeValue::String(_))
            }),
            (Type::Table(section), DeValue::Table(table)) => {
                self.table(section, owner, table, span);
                Ok(())
            }
            (Type::Tables(section), DeValue::Array(items)) => {
                all(items.iter_mut(), |item| item.get_ref().is_table())?;
                for item in items.iter_mut() {
                    let span = item.span();
                    if let DeValue::Table(table) = item.get_mut() {
                        self.table(section, owner, table, span);
                    }
                }
                Ok(())
            }
            (Type::NamedTables(section), DeValue::Table(tables)) => {
                for (name, item) in tables.iter_mut() {
                    let span = item.span();
                    let owner = format!("{}.{}", key.name, name.get_ref());
                    match item.get_mut() {
                        DeValue::Table(table) => {
                            self.table(section, Some(&owner), table, span);
                        }
                        other => {
                            // Replaced by an empty table rather than removed,
                            // so that routes naming the pool do not also
                            // report it as unknown.
                            let message = format!(
                                "`{}` must be a table, not {}",
                                section.place_for(Some(&owner)).trim_start_matches("in "),
                                article(other.type_str())
                            );
                            self.diag.error(span, message);
                            *item.get_mut() = DeValue::Table(DeTable::new());
                        }
                    }
                }
                Ok(())
            }
            (_, other) => mismatch(other),
        }
    }
}

/// Whether a TOML integer fits an `i64` (the parser keeps larger ones as
/// text).
fn fits_i64(n: &DeInteger<'_>) -> bool {
    i64::from_str_radix(n.as_str(), n.radix()).is_ok()
}

/// `Ok` if every item passes `ok`, else the span and type of the first that
/// does not.
fn all<'a, 'i: 'a>(
    items: impl Iterator<Item = &'a mut Spanned<DeValue<'i>>>,
    ok: impl Fn(&Spanned<DeValue<'i>>) -> bool,
) -> Result<(), (Range<usize>, String)> {
    for item in items {
        if !ok(item) {
            return Err((item.span(), article(item.get_ref().type_str())));
        }
    }
    Ok(())
}

fn article(type_str: &str) -> String {
    match type_str {
        "integer" | "array" => format!("an {type_str}"),
        other => format!("a {other}"),
    }
}

/// The expected key closest to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, expected: &[&'a str]) -> Option<&'a str> {
    let best = expected.iter().min_by_key(|e| edit_distance(name, e))?;
    let limit = (best.len() / 3).max(2);
    (edit_distance(name, best) <= limit).then_some(*best)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance};

    #[test]
    fn typos_are_recognised() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let keys = ["name", "address", "max_connections"];
        assert_eq!(closest("adress", &keys), Some("address"));
        assert_eq!(closest("max_conections", &keys), Some("max_connections"));
        assert_eq!(closest("nmae", &keys), Some("name"));
        assert_eq!(closest("port", &keys), None);
    }
}
