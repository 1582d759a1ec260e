//! Path patterns (`/users/{id}/files/{*rest}`): parsing, matching one
//! pattern against one path, and extracting parameter values. The index of
//! many patterns lives in `trie`; this module knows one pattern at a time.

use crate::error::PatternError;
use crate::params::Values;

/// One `/`-separated piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Must equal the path segment.
    Literal(Box<str>),
    /// `{name}`: any non-empty segment.
    Param,
    /// `{*name}`: the rest of the path, possibly empty; always last.
    CatchAll,
}

/// How specific a segment is, most specific first (the derived order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SegmentKind {
    Literal,
    Param,
    CatchAll,
}

/// A parsed pattern: its segments after the leading `/`, and the names of
/// its parameters in order.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub(crate) segments: Box<[Segment]>,
    pub(crate) names: Box<[Box<str>]>,
}

impl Pattern {
    /// Parses `/a/{b}/{*c}`.
    pub(crate) fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let rest = pattern
            .strip_prefix('/')
            .ok_or(PatternError::NoLeadingSlash)?;
        let count = rest.split('/').count();
        let mut segments = Vec::with_capacity(count);
        let mut names: Vec<Box<str>> = Vec::new();
        for (i, seg) in rest.split('/').enumerate() {
            let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                if seg.contains(['{', '}']) {
                    return Err(PatternError::PartialSegment(seg.to_owned()));
                }
                segments.push(Segment::Literal(seg.into()));
                continue;
            };
            let (catch_all, name) = match inner.strip_prefix('*') {
                Some(name) => (true, name),
                None => (false, inner),
            };
            if name.is_empty() {
                return Err(PatternError::EmptyName);
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(PatternError::BadName(name.to_owned()));
            }
            if names.iter().any(|n| **n == *name) {
                return Err(PatternError::DuplicateName(name.to_owned()));
            }
            if catch_all && i + 1 != count {
                return Err(PatternError::CatchAllNotLast(name.to_owned()));
            }
            names.push(name.into());
            segments.push(if catch_all {
                Segment::CatchAll
            } else {
                Segment::Param
            });
        }
        Ok(Pattern {
            segments: segments.into(),
            names: names.into(),
        })
    }

    /// A pattern without parameters: it matches exactly one path.
    pub(crate) fn is_exact(&self) -> bool {
        self.names.is_empty()
    }

    /// Number of literal segments (precedence).
    pub(crate) fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The kinds of the segments, left to right (precedence).
    pub(crate) fn shape(&self) -> Box<[SegmentKind]> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => SegmentKind::Literal,
                Segment::Param => SegmentKind::Param,
                Segment::CatchAll => SegmentKind::CatchAll,
            })
            .collect()
    }

    /// Matches `path`, pushing the parameter values onto `values`. On
    /// `false`, `values` may hold a partial match.
    pub(crate) fn captures<'p>(&self, path: &'p str, values: &mut Values<'p>) -> bool {
        let Some(mut rest) = path.strip_prefix('/').map(Some) else {
            return false;
        };
        for segment in &self.segments {
            if let Segment::CatchAll = segment {
                values.push(rest.unwrap_or(&path[path.len()..]));
                return true;
            }
            let Some(remaining) = rest else { return false };
            let (head, tail) = split_segment(remaining);
            match segment {
                Segment::Literal(literal) if **literal != *head => return false,
                Segment::Param if head.is_empty() => return false,
                Segment::Param => values.push(head),
                _ => {}
            }
            rest = tail;
        }
        rest.is_none()
    }

    /// The parameter values for a path this pattern is known to match: only
    /// splits the path, without comparing literals again.
    pub(crate) fn extract<'p>(&self, path: &'p str, values: &mut Values<'p>) {
        let mut rest = path.get(1..);
        for segment in &self.segments {
            if let Segment::CatchAll = segment {
                values.push(rest.unwrap_or(&path[path.len()..]));
                return;
            }
            let Some(remaining) = rest else { return };
            let (head, tail) = split_segment(remaining);
            if let Segment::Param = segment {
                values.push(head);
            }
            rest = tail;
        }
    }
}

/// Splits `a/b/c` into `a` and `Some("b/c")`; `a` into `a` and `None`.
pub(crate) fn split_segment(rest: &str) -> (&str, Option<&str>) {
    // A plain byte loop: segments are short, and `str::find` has more set-up.
    match rest.bytes().position(|b| b == b'/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
        let mut values = Values::new();
        Pattern::parse(pattern)
            .unwrap()
            .captures(path, &mut values)
            .then(|| values.to_vec())
    }

    #[test]
    fn literal_segments_match_exactly() {
        assert_eq!(caps("/a/b", "/a/b"), Some(vec![]));
        assert_eq!(caps("/a/b", "/a/b/"), None);
        assert_eq!(caps("/a/b", "/a"), None);
        assert_eq!(caps("/a/b", "/A/b"), None);
        assert_eq!(caps("/", "/"), Some(vec![]));
        assert_eq!(caps("/", ""), None);
        assert_eq!(caps("/a//b", "/a//b"), Some(vec![]));
    }

    #[test]
    fn a_param_is_one_non_empty_segment() {
        assert_eq!(caps("/users/{id}", "/users/42"), Some(vec!["42"]));
        assert_eq!(caps("/users/{id}", "/users/"), None);
        assert_eq!(caps("/users/{id}", "/users/4/2"), None);
        assert_eq!(caps("/users/{id}", "/users/%2F"), Some(vec!["%2F"]));
        assert_eq!(caps("/{a}/x/{b}", "/1/x/2"), Some(vec!["1", "2"]));
        assert_eq!(caps("/{a}/x/{b}", "/1/y/2"), None);
    }

    #[test]
    fn a_catch_all_takes_the_possibly_empty_rest() {
        assert_eq!(caps("/files/{*rest}", "/files/a/b"), Some(vec!["a/b"]));
        assert_eq!(caps("/files/{*rest}", "/files/"), Some(vec![""]));
        assert_eq!(caps("/files/{*rest}", "/files"), Some(vec![""]));
        assert_eq!(caps("/files/{*rest}", "/filesx"), None);
        assert_eq!(caps("/{*all}", "/"), Some(vec![""]));
        assert_eq!(caps("/{d}/{*rest}", "/x//y"), Some(vec!["x", "/y"]));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let err = |p| Pattern::parse(p).unwrap_err();
        assert_eq!(err("users"), PatternError::NoLeadingSlash);
        assert_eq!(err("/{}"), PatternError::EmptyName);
        assert_eq!(err("/{*}"), PatternError::EmptyName);
        assert_eq!(err("/{a b}"), PatternError::BadName("a b".into()));
        assert_eq!(err("/{a}/{a}"), PatternError::DuplicateName("a".into()));
        assert_eq!(err("/{*a}/b"), PatternError::CatchAllNotLast("a".into()));
        assert_eq!(
            err("/file.{ext}"),
            PatternError::PartialSegment("file.{ext}".into())
        );
        assert_eq!(err("/a}"), PatternError::PartialSegment("a}".into()));
    }

    #[test]
    fn shape_and_literals_describe_specificity() {
        let p = Pattern::parse("/a/{b}/c/{*d}").unwrap();
        assert_eq!(p.literal_count(), 2);
        use SegmentKind::*;
        assert_eq!(&*p.shape(), &[Literal, Param, Literal, CatchAll]);
        assert_eq!(&*p.names, &["b".into(), "d".into()] as &[Box<str>]);
        assert!(Pattern::parse("/a/b").unwrap().is_exact());
    }
}
