//! Reading YAML nodes field by field with their line and column, collecting
//! every problem instead of stopping at the first. The calendar-specific
//! reading is in [`super::file`].

use std::path::Path;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use super::Problem;
use crate::definition::diagnostic::{did_you_mean, one_of};

/// A position in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

impl Default for Pos {
    fn default() -> Self {
        Pos { line: 1, column: 1 }
    }
}

/// Collects problems while a file is read.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    pub(super) file: &'a Path,
    pub(super) problems: Vec<Problem>,
}

impl Reader<'_> {
    pub(super) fn report(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Parses the YAML, refusing duplicate keys, anchors and tags: an
    /// operator's file should mean what it plainly says.
    pub(super) fn yaml(&mut self, source: &str) -> Option<Node> {
        use marked_yaml::LoadError as E;
        let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
        let err = match marked_yaml::parse_yaml_with_options(0, source, options) {
            Ok(node) => return Some(node),
            Err(err) => err,
        };
        let (at, message) = match &err {
            E::TopLevelMustBeMapping(m) => (
                marker_pos(m),
                "a calendar file must be a mapping of fields (`name:`, `timezone:`, `years:` …)"
                    .to_owned(),
            ),
            E::DuplicateKey(inner) => (
                scalar_pos(&inner.key),
                format!(
                    "`{}` is given twice (first on line {})",
                    inner.key.as_str(),
                    scalar_pos(&inner.prev_key).line
                ),
            ),
            E::UnexpectedAnchor(m) | E::UnexpectedTag(m) => (
                marker_pos(m),
                "YAML anchors, aliases and tags are not allowed in calendar files".to_owned(),
            ),
            E::ScanError(m, scan) => (marker_pos(m), format!("YAML syntax: {}", scan.info())),
            other => (Pos::default(), format!("YAML syntax: {other}")),
        };
        self.report(at, "", message);
        None
    }

    /// Opens `node` as a mapping of the given fields, reporting unknown ones.
    pub(super) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        what: &str,
        known: &[&str],
    ) -> Option<&'n MarkedMappingNode> {
        let map = self.any_mapping(node, field, what)?;
        for key in map.keys() {
            let name = key.as_str();
            if known.contains(&name) {
                continue;
            }
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected {}", one_of(known.iter().copied())),
            };
            self.report(
                scalar_pos(key),
                &format!("{field}/{name}"),
                format!("unknown field `{name}` in {what}; {hint}"),
            );
        }
        Some(map)
    }

    /// Opens `node` as a mapping whose keys are chosen by the author.
    pub(super) fn any_mapping<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        what: &str,
    ) -> Option<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(map) => Some(map),
            other => {
                self.report(
                    pos(other),
                    field,
                    format!("{what} must be a mapping of fields, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(super) fn required<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        map_pos: Pos,
        key: &str,
        field: &str,
        what: &str,
    ) -> Option<&'n Node> {
        let node = optional(map, key);
        if node.is_none() {
            self.report(
                map_pos,
                &format!("{field}/{key}"),
                format!("{what} is missing required field `{key}`"),
            );
        }
        node
    }

    pub(super) fn text(&mut self, node: &Node, field: &str) -> Option<(String, Pos)> {
        match node {
            Node::Scalar(s) if !is_null(s) => Some((s.as_str().to_owned(), scalar_pos(s))),
            other => {
                self.report(
                    pos(other),
                    field,
                    format!("expected a single value, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(super) fn items<'n>(&mut self, node: &'n Node, field: &str, what: &str) -> Vec<&'n Node> {
        match node {
            Node::Sequence(seq) => seq.iter().collect(),
            other => {
                self.report(
                    pos(other),
                    field,
                    format!("{what} must be a list, found {}", kind(other)),
                );
                Vec::new()
            }
        }
    }
}

/// A field that may be absent; an explicit null counts as absent.
pub(super) fn optional<'n>(map: &'n MarkedMappingNode, key: &str) -> Option<&'n Node> {
    match map.get_node(key) {
        Some(Node::Scalar(s)) if is_null(s) => None,
        other => other,
    }
}

pub(super) fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

pub(super) fn kind(node: &Node) -> &'static str {
    match node {
        Node::Scalar(s) if is_null(s) => "nothing",
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

pub(super) fn marker_pos(m: &marked_yaml::Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.column(),
    }
}

pub(super) fn scalar_pos(s: &MarkedScalarNode) -> Pos {
    s.span().start().map(marker_pos).unwrap_or_default()
}

/// Where a node starts. A block mapping's own marker points past its first
/// key, so the first key stands for the mapping.
pub(super) fn pos(node: &Node) -> Pos {
    if let Node::Mapping(map) = node
        && let Some((key, _)) = map.iter().next()
    {
        return scalar_pos(key);
    }
    node.span().start().map(marker_pos).unwrap_or_default()
}
