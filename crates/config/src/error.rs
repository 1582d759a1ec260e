//! Errors with a position: `ConfigError` (one problem at file:line:column),
//! `ConfigErrors` (all of them) and `Diagnostics`, the collector every stage
//! writes into. Owns the byte-offset → line:column mapping; it never decides
//! what is an error, only where it is and how it prints. It also remembers
//! which key an unknown key was reported as a typo of, so that a later stage
//! does not report that key's absence as a second error.

use std::fmt;
use std::ops::Range;

/// One problem in a configuration file, with its position.
///
/// `line` and `column` are 1-based; the column counts characters (not bytes)
/// from the start of the line. Both are 0 when the problem concerns the whole
/// file (it could not be read), and `Display` then omits them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given to [`crate::load`] or [`crate::parse`].
    pub file: String,
    /// 1-based line, or 0 for the whole file.
    pub line: usize,
    /// 1-based column in characters, or 0 for the whole file.
    pub column: usize,
    /// What is wrong, as one line without the `error:` prefix.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file, self.message)
        } else {
            let (file, line, column) = (&self.file, self.line, self.column);
            write!(f, "{file}:{line}:{column}: error: {}", self.message)
        }
    }
}

/// Every problem found in a configuration file, in file order (never empty).
///
/// `Display` prints one error per line, then a count (`3 errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        match self.0.len() {
            1 => write!(f, "1 error"),
            n => write!(f, "{n} errors"),
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// An error about the file as a whole (e.g. it could not be read).
    pub(crate) fn whole_file(file: &str, message: String) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
        }])
    }
}

/// Collects errors as (byte offset, message) while the stages run, and turns
/// them into [`ConfigErrors`] sorted by position at the end.
pub(crate) struct Diagnostics<'s> {
    file: &'s str,
    source: &'s str,
    errors: Vec<(usize, String)>,
    /// (start of a table, key): an unknown key in that table was reported
    /// as a probable typo of this key, so its absence is not reported again.
    typos: Vec<(usize, &'static str)>,
}

impl<'s> Diagnostics<'s> {
    pub(crate) fn new(source: &'s str, file: &'s str) -> Self {
        Diagnostics {
            file,
            source,
            errors: Vec::new(),
            typos: Vec::new(),
        }
    }

    /// Records that an unknown key in the table starting at `table` was
    /// reported as a probable typo of `key`.
    pub(crate) fn typo_of(&mut self, table: usize, key: &'static str) {
        self.typos.push((table, key));
    }

    /// Whether an unknown key in the table starting at `table` was reported
    /// as a probable typo of `key` (then `key`'s absence is no news).
    pub(crate) fn has_typo_of(&self, table: usize, key: &str) -> bool {
        self.typos.iter().any(|(t, k)| *t == table && *k == key)
    }

    /// Records an error at the start of `span`.
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push((span.start, message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The line (1-based) of a byte offset, for messages such as
    /// "first defined at line 3".
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        line_column(self.source, offset).0
    }

    /// `Ok(())` when nothing was recorded; otherwise every error in file order.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        // A stable sort keeps errors at the same position in the order the
        // stages found them.
        self.errors.sort_by_key(|(offset, _)| *offset);
        let errors = self
            .errors
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = line_column(self.source, offset);
                ConfigError {
                    file: self.file.to_owned(),
                    line,
                    column,
                    message,
                }
            })
            .collect();
        Err(ConfigErrors(errors))
    }
}

/// 1-based line and character column of a byte offset (clamped to the source,
/// and moved back to a character boundary if needed).
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_from_one() {
        let src = "ab\né = 1\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 2), (1, 3));
        assert_eq!(line_column(src, 3), (2, 1));
        // "é" is two bytes; the column after it is 2.
        assert_eq!(line_column(src, 5), (2, 2));
        assert_eq!(line_column(src, 4), (2, 1), "inside a character");
        assert_eq!(line_column(src, 99), (3, 1), "past the end");
    }

    #[test]
    fn display_formats() {
        let e = ConfigError {
            file: "baton.toml".into(),
            line: 12,
            column: 5,
            message: "pool \"app\" has no members".into(),
        };
        assert_eq!(
            e.to_string(),
            "baton.toml:12:5: error: pool \"app\" has no members"
        );
        let all = ConfigErrors(vec![e.clone(), e]);
        assert!(all.to_string().ends_with("no members\n2 errors"));
        let one = ConfigErrors::whole_file("x.toml", "could not read x.toml: gone".into());
        assert_eq!(
            one.to_string(),
            "x.toml: error: could not read x.toml: gone\n1 error"
        );
    }
}
