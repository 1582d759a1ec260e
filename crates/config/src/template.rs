//! Command templates: the strings of a supervised service's `command`,
//! `env` values and `cwd`, in which `{port}` and `{version}` are replaced
//! when an instance starts. Owns their syntax (`{{` and `}}` stand for
//! literal braces; any other `{…}` is an error) and their rendering. Pure:
//! it never looks at the file system or the environment.

use std::fmt;
use std::str::FromStr;

use crate::version::Version;

/// A validated template: only `{port}`, `{version}`, `{{` and `}}` between
/// literal text, and no NUL character (a command line cannot carry one).
///
/// ```
/// let t: config::Template = "--listen=127.0.0.1:{port} --tag={{{version}}}".parse().unwrap();
/// let v: config::Version = "v2".parse().unwrap();
/// assert_eq!(t.render(8080, &v), "--listen=127.0.0.1:8080 --tag={v2}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    /// As written in the file.
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Port,
    Version,
}

/// Why a string is not a valid [`Template`]. Positions count characters
/// from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name other than `port` or `version`.
    #[error(
        "unknown placeholder {{{name}}}: only {{port}} and {{version}} are replaced (write {{{{ and }}}} for literal braces)"
    )]
    UnknownPlaceholder {
        /// The text between the braces.
        name: String,
    },
    /// A `{` without its `}`.
    #[error(
        "unbalanced braces: the \"{{\" at character {at} is never closed (write {{{{ for a literal brace)"
    )]
    Unclosed {
        /// Position of the `{`.
        at: usize,
    },
    /// A `}` without a `{` before it.
    #[error(
        "unbalanced braces: the \"}}\" at character {at} closes nothing (write }}}} for a literal brace)"
    )]
    Unopened {
        /// Position of the `}`.
        at: usize,
    },
    /// A NUL character, which no argument, variable or path can hold.
    #[error("a NUL character at character {at} cannot be passed to a program")]
    Nul {
        /// Position of the NUL.
        at: usize,
    },
}

impl Template {
    /// The text with `{port}` and `{version}` replaced and `{{`, `}}`
    /// unescaped.
    pub fn render(&self, port: u16, version: &Version) -> String {
        let mut out = String::with_capacity(self.source.len() + 8);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Port => out.push_str(&port.to_string()),
                Part::Version => out.push_str(version.as_str()),
            }
        }
        out
    }

    /// The template as written in the file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `{port}` appears.
    pub fn uses_port(&self) -> bool {
        self.parts.contains(&Part::Port)
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().enumerate().peekable();
        while let Some((index, c)) = chars.next() {
            let at = index + 1;
            match c {
                '\0' => return Err(TemplateError::Nul { at }),
                '{' | '}' if chars.next_if(|&(_, next)| next == c).is_some() => text.push(c),
                '}' => return Err(TemplateError::Unopened { at }),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(TemplateError::Unclosed { at }),
                            Some((_, c)) => name.push(c),
                        }
                    }
                    let placeholder = match name.as_str() {
                        "port" => Part::Port,
                        "version" => Part::Version,
                        _ => return Err(TemplateError::UnknownPlaceholder { name }),
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(placeholder);
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }
}

impl fmt::Display for Template {
    /// The template as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::{Template, TemplateError};
    use crate::version::Version;

    fn render(template: &str, port: u16, version: &str) -> String {
        let t: Template = template.parse().unwrap();
        assert_eq!(t.as_str(), template);
        t.render(port, &version.parse::<Version>().unwrap())
    }

    #[test]
    fn placeholders_are_replaced_everywhere_and_repeatedly() {
        assert_eq!(render("", 1, "v1"), "");
        assert_eq!(render("plain", 1, "v1"), "plain");
        assert_eq!(render("{port}", 8080, "v1"), "8080");
        assert_eq!(render("{version}", 1, "2.0.1-rc_1"), "2.0.1-rc_1");
        assert_eq!(
            render("127.0.0.1:{port}/{version}/{port}", 65535, "v2"),
            "127.0.0.1:65535/v2/65535"
        );
        assert_eq!(render("{port}{version}", 0, "b"), "0b");
        assert_eq!(render("é{port}ü", 7, "v"), "é7ü", "non-ASCII text is kept");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(render("{{}}", 1, "v"), "{}");
        assert_eq!(
            render("{{port}}", 1, "v"),
            "{port}",
            "escaped, not replaced"
        );
        assert_eq!(render("{{{port}}}", 9, "v"), "{9}");
        assert_eq!(
            render(r#"{{"port": {port}}}"#, 9, "v"),
            r#"{"port": 9}"#,
            "JSON in an argument"
        );
    }

    #[test]
    fn uses_port() {
        let t: Template = "--port={port}".parse().unwrap();
        assert!(t.uses_port());
        let t: Template = "--port={{port}} {version}".parse().unwrap();
        assert!(!t.uses_port());
    }

    #[test]
    fn errors_name_the_problem_and_its_position() {
        for (bad, error) in [
            (
                "{foo}",
                TemplateError::UnknownPlaceholder { name: "foo".into() },
            ),
            (
                "a{PORT}",
                TemplateError::UnknownPlaceholder {
                    name: "PORT".into(),
                },
            ),
            ("{}", TemplateError::UnknownPlaceholder { name: "".into() }),
            (
                "{ port }",
                TemplateError::UnknownPlaceholder {
                    name: " port ".into(),
                },
            ),
            ("ab{port", TemplateError::Unclosed { at: 3 }),
            ("{", TemplateError::Unclosed { at: 1 }),
            ("x{a{port}}", TemplateError::Unclosed { at: 2 }),
            ("é}", TemplateError::Unopened { at: 2 }),
            ("{port}}", TemplateError::Unopened { at: 7 }),
            ("a\0b", TemplateError::Nul { at: 2 }),
        ] {
            assert_eq!(bad.parse::<Template>(), Err(error), "{bad:?}");
        }
        assert_eq!(
            TemplateError::UnknownPlaceholder { name: "foo".into() }.to_string(),
            "unknown placeholder {foo}: only {port} and {version} are replaced (write {{ and }} for literal braces)"
        );
        assert_eq!(
            TemplateError::Unclosed { at: 3 }.to_string(),
            "unbalanced braces: the \"{\" at character 3 is never closed (write {{ for a literal brace)"
        );
        assert_eq!(
            TemplateError::Unopened { at: 2 }.to_string(),
            "unbalanced braces: the \"}\" at character 2 closes nothing (write }} for a literal brace)"
        );
        assert_eq!(
            TemplateError::Nul { at: 2 }.to_string(),
            "a NUL character at character 2 cannot be passed to a program"
        );
    }
}
