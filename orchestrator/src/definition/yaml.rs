//! Reading marked YAML nodes field by field, recording every problem with
//! its line and column instead of stopping at the first.

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use super::diagnostic::{Code, Diagnostics, Pos, did_you_mean, one_of};

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Located<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Located { value, pos }
    }
}

/// Parses a whole file into a node tree, refusing duplicate keys, anchors
/// and tags: an operator's file should mean what it plainly says. `kind`
/// names the file in messages (`workflow file`, `calendar file`).
pub fn parse(source: &str, kind: &str, d: &mut Diagnostics) -> Option<Node> {
    // The YAML parser recurses once per level: a file of a hundred
    // thousand `[` would overflow the stack and abort the process.
    if let Some(pos) = too_deep(source) {
        d.error(
            Code::YamlSyntax,
            "",
            pos,
            format!("the {kind} nests lists and mappings more than {MAX_DEPTH} levels deep"),
        );
        return None;
    }
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, source, options) {
        Ok(node) => Some(node),
        Err(err) => {
            use marked_yaml::LoadError as E;
            let (pos, message) = match &err {
                E::TopLevelMustBeMapping(m) => (
                    marker_pos(m),
                    format!("a {kind} must be a mapping of fields, one `name: value` per line"),
                ),
                E::DuplicateKey(inner) => (
                    scalar_pos(&inner.key),
                    format!(
                        "field `{}` is given twice (first on line {})",
                        inner.key.as_str(),
                        scalar_pos(&inner.prev_key).line
                    ),
                ),
                E::UnexpectedAnchor(m) | E::UnexpectedTag(m) => (
                    marker_pos(m),
                    format!("YAML anchors, aliases and tags are not allowed in a {kind}"),
                ),
                E::ScanError(m, scan) => (marker_pos(m), format!("YAML syntax: {}", scan.info())),
                other => (Pos { line: 1, column: 1 }, format!("YAML syntax: {other}")),
            };
            d.error(Code::YamlSyntax, "", pos, message);
            None
        }
    }
}

/// Far deeper than any workflow or calendar needs, far shallower than the
/// parser's stack allows.
pub const MAX_DEPTH: usize = 64;

/// Where `source` first nests deeper than [`MAX_DEPTH`], if it does. An
/// over-estimate, never an under-estimate, of the depth the parser will
/// reach: each line counts the indentation levels open above it, its own
/// leading `- ` and `? ` indicators, and the flow brackets open at each
/// point (brackets inside quoted scalars and comments do not count).
fn too_deep(source: &str) -> Option<Pos> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // YAML ends a line at `\r\n`, `\r` or `\n`; `str::lines` misses the
    // lone `\r`, and a file could hide its nesting behind it.
    let lines = source.split("\r\n").flat_map(|l| l.split(['\r', '\n']));
    for (n, line) in lines.enumerate() {
        let at = |column: usize| {
            Some(Pos {
                line: n + 1,
                column: column + 1,
            })
        };
        let body = line.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.chars().count() - body.chars().count();
        while indents.last().is_some_and(|&top| top >= indent) {
            indents.pop();
        }
        indents.push(indent);
        let mut rest = body;
        let mut indicators = 0;
        while let Some(after) = ["- ", "? ", "-\t"]
            .iter()
            .find_map(|i| rest.strip_prefix(i))
        {
            indicators += 1;
            rest = after.trim_start_matches([' ', '\t']);
        }
        if indents.len() + indicators + flow > MAX_DEPTH {
            return at(indent);
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        let mut chars = body.chars().enumerate().peekable();
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => {
                    // `''` inside single quotes is an escaped quote.
                    if q == '\'' && chars.peek().is_some_and(|&(_, next)| next == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                (Some(_), _) => {}
                (None, '#') if previous.is_whitespace() => break,
                (None, '"' | '\'') if " \t[{,:".contains(previous) => quote = Some(c),
                (None, '[' | '{') => {
                    flow += 1;
                    if indents.len() + indicators + flow > MAX_DEPTH {
                        return at(indent + i);
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    None
}

fn marker_pos(m: &marked_yaml::Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.column(),
    }
}

fn scalar_pos(s: &MarkedScalarNode) -> Pos {
    s.span().start().map(marker_pos).unwrap_or_default()
}

/// Where a node starts. A block mapping's own marker points past its first
/// key, so the first key stands for the mapping.
pub fn pos(node: &Node) -> Pos {
    if let Node::Mapping(map) = node
        && let Some((key, _)) = map.iter().next()
    {
        return scalar_pos(key);
    }
    node.span().start().map(marker_pos).unwrap_or_default()
}

fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

fn kind_name(node: &Node) -> &'static str {
    match node {
        Node::Scalar(s) if is_null(s) => "nothing",
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// Joins a JSON-pointer-like path and a key.
pub fn child(path: &str, key: &str) -> String {
    format!("{path}/{key}")
}

/// A mapping whose keys are fixed field names of the language.
#[derive(Debug)]
pub struct Fields<'n> {
    map: &'n MarkedMappingNode,
    pos: Pos,
    path: String,
    what: String,
    known: &'static [&'static str],
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping with the given known fields; reports an
    /// error and returns `None` when it is not a mapping.
    pub fn open(
        node: &'n Node,
        path: &str,
        what: &str,
        known: &'static [&'static str],
        d: &mut Diagnostics,
    ) -> Option<Self> {
        match node {
            Node::Mapping(map) => Some(Fields {
                map,
                pos: pos(node),
                path: path.to_owned(),
                what: what.to_owned(),
                known,
            }),
            other => {
                d.error(
                    Code::InvalidValue,
                    path,
                    pos(other),
                    format!(
                        "{what} must be a mapping of fields, found {}",
                        kind_name(other)
                    ),
                );
                None
            }
        }
    }

    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The path of one field of this mapping.
    pub fn field_path(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// A field that may be absent; an explicit null counts as absent.
    pub fn optional(&self, key: &'static str) -> Option<&'n Node> {
        debug_assert!(self.known.contains(&key), "{key} is not a known field");
        match self.map.get_node(key) {
            Some(Node::Scalar(s)) if is_null(s) => None,
            other => other,
        }
    }

    /// A field that must be present.
    pub fn required(&self, key: &'static str, d: &mut Diagnostics) -> Option<&'n Node> {
        let node = self.optional(key);
        if node.is_none() {
            d.error(
                Code::MissingField,
                &self.field_path(key),
                self.pos,
                format!("{} is missing required field `{key}`", self.what),
            );
        }
        node
    }

    /// Reports every key that is not a known field, with a suggestion for
    /// likely typos.
    pub fn check_unknown(&self, d: &mut Diagnostics) {
        for key in self.map.keys() {
            let name = key.as_str();
            if self.known.contains(&name) {
                continue;
            }
            let hint = match did_you_mean(name, self.known.iter().copied()) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => format!("; expected {}", one_of(self.known.iter().copied())),
            };
            d.error(
                Code::UnknownField,
                &self.field_path(name),
                scalar_pos(key),
                format!("unknown field `{name}` in {}{hint}", self.what),
            );
        }
    }
}

/// The entries of a mapping whose keys are names chosen by the author
/// (input fields, events, documents …), in file order.
pub fn entries<'n>(
    node: &'n Node,
    path: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Vec<(Located<String>, &'n Node)> {
    match node {
        Node::Mapping(map) => map
            .iter()
            .map(|(k, v)| (Located::new(k.as_str().to_owned(), scalar_pos(k)), v))
            .collect(),
        other => {
            d.error(
                Code::InvalidValue,
                path,
                pos(other),
                format!("{what} must be a mapping, found {}", kind_name(other)),
            );
            Vec::new()
        }
    }
}

/// The items of a list.
pub fn items<'n>(node: &'n Node, path: &str, what: &str, d: &mut Diagnostics) -> Vec<&'n Node> {
    match node {
        Node::Sequence(seq) => seq.iter().collect(),
        other => {
            d.error(
                Code::InvalidValue,
                path,
                pos(other),
                format!("{what} must be a list, found {}", kind_name(other)),
            );
            Vec::new()
        }
    }
}

/// A single text value.
pub fn text(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Located<String>> {
    match node {
        Node::Scalar(s) if !is_null(s) => Some(Located::new(s.as_str().to_owned(), scalar_pos(s))),
        other => {
            d.error(
                Code::InvalidValue,
                path,
                pos(other),
                format!("expected a single value, found {}", kind_name(other)),
            );
            None
        }
    }
}

/// A name: lower-case letters, digits and `_`, starting with a letter, so
/// it can be referred to in conditions and templates.
pub fn name(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Located<String>> {
    let value = text(node, path, d)?;
    if check_name(&value.value) {
        Some(value)
    } else {
        d.error(
            Code::InvalidValue,
            path,
            value.pos,
            format!(
                "`{}` is not a valid name: use lower-case letters, digits and `_`, starting with a letter",
                value.value
            ),
        );
        None
    }
}

/// Whether `s` is a valid name (see [`name`]).
pub fn check_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A whole number within `min..=max`.
pub fn integer(
    node: &Node,
    path: &str,
    min: i64,
    max: i64,
    d: &mut Diagnostics,
) -> Option<Located<i64>> {
    let raw = text(node, path, d)?;
    match raw.value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Some(Located::new(n, raw.pos)),
        Ok(n) => {
            d.error(
                Code::InvalidValue,
                path,
                raw.pos,
                format!("{n} is out of range: expected a whole number from {min} to {max}"),
            );
            None
        }
        Err(_) => {
            d.error(
                Code::InvalidValue,
                path,
                raw.pos,
                format!("`{}` is not a whole number", raw.value),
            );
            None
        }
    }
}

/// A positive number, possibly fractional.
pub fn positive_number(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Located<f64>> {
    let raw = text(node, path, d)?;
    match raw.value.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Some(Located::new(n, raw.pos)),
        _ => {
            d.error(
                Code::InvalidValue,
                path,
                raw.pos,
                format!("`{}` is not a positive number", raw.value),
            );
            None
        }
    }
}

/// `true` or `false`.
pub fn boolean(node: &Node, path: &str, d: &mut Diagnostics) -> Option<Located<bool>> {
    let raw = text(node, path, d)?;
    match raw.value.as_str() {
        "true" => Some(Located::new(true, raw.pos)),
        "false" => Some(Located::new(false, raw.pos)),
        other => {
            d.error(
                Code::InvalidValue,
                path,
                raw.pos,
                format!("`{other}` is not `true` or `false`"),
            );
            None
        }
    }
}

/// A list of names, also accepted as a single name.
pub fn names(node: &Node, path: &str, what: &str, d: &mut Diagnostics) -> Vec<Located<String>> {
    match node {
        Node::Sequence(_) => items(node, path, what, d)
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| name(item, &child(path, &i.to_string()), d))
            .collect(),
        _ => name(node, path, d).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Node {
        let mut d = Diagnostics::default();
        let node = parse(src, "test file", &mut d);
        assert!(!d.has_errors(), "{:?}", d.into_sorted());
        node.unwrap_or_else(|| Node::from("unreachable"))
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_one() {
        let mut d = Diagnostics::default();
        assert!(parse("a: 1\nb: 2\na: 3\n", "test file", &mut d).is_none());
        let diags = d.into_sorted();
        assert_eq!(diags[0].code, Code::YamlSyntax);
        assert_eq!(diags[0].pos, Pos { line: 3, column: 1 });
        assert!(
            diags[0].message.contains("first on line 1"),
            "{}",
            diags[0].message
        );
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_named_by_its_kind() {
        let mut d = Diagnostics::default();
        assert!(parse("- a\n", "calendar file", &mut d).is_none());
        assert!(
            d.into_sorted()[0]
                .message
                .starts_with("a calendar file must be a mapping")
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let mut d = Diagnostics::default();
        assert!(parse("a: [1,\n", "test file", &mut d).is_none());
        let diags = d.into_sorted();
        assert_eq!(diags[0].pos.line, 2);
    }

    #[test]
    fn unknown_fields_suggest_the_closest_known_field() {
        let node = parse_ok("timeout: 2m\ntimout: 3m\nxyzzy: 1\n");
        let mut d = Diagnostics::default();
        let fields = Fields::open(&node, "/steps/a", "step `a`", &["timeout", "retry"], &mut d);
        if let Some(f) = &fields {
            f.check_unknown(&mut d);
        }
        let diags = d.into_sorted();
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].pos, Pos { line: 2, column: 1 });
        assert!(diags[0].message.contains("did you mean `timeout`"));
        assert_eq!(diags[0].path, "/steps/a/timout");
        assert!(diags[1].message.contains("expected `timeout` or `retry`"));
    }

    #[test]
    fn null_counts_as_missing() {
        let node = parse_ok("timeout: ~\nretry:\n");
        let mut d = Diagnostics::default();
        let fields = Fields::open(&node, "", "step", &["timeout", "retry"], &mut d);
        let fields = fields.as_ref();
        assert!(fields.and_then(|f| f.optional("timeout")).is_none());
        assert!(fields.and_then(|f| f.required("retry", &mut d)).is_none());
        assert_eq!(d.into_sorted()[0].code, Code::MissingField);
    }

    #[test]
    fn names_are_lower_snake_case() {
        assert!(check_name("verify_identity2"));
        assert!(!check_name("Verify"));
        assert!(!check_name("2fast"));
        assert!(!check_name("a-b"));
        assert!(!check_name(""));
    }
}
