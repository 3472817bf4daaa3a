//! Message templates: text with `{{ reference }}` placeholders, checked when
//! the file is loaded. Only references are allowed inside the braces; there
//! is no logic in a template.

use super::expr::{Reference, Scope};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Value(Reference),
}

/// A parsed message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at `{}` has no closing `}}}}`",
                    excerpt(&rest[open..])
                )
            })?;
            let inner = after[..close].trim();
            if inner.is_empty() {
                return Err("empty placeholder `{{}}`".to_owned());
            }
            pieces.push(Piece::Value(Reference::parse(inner)?));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!(
                "`}}}}` at `{}` has no opening `{{{{`",
                excerpt(&rest[rest.find("}}").unwrap_or(0)..])
            ));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template { pieces })
    }

    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value(r) => Some(r),
            Piece::Text(_) => None,
        })
    }

    /// Checks every placeholder against the workflow; returns every problem.
    pub fn check(&self, scope: &dyn Scope) -> Vec<String> {
        self.references()
            .filter_map(|r| scope.type_of(r).err())
            .collect()
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_placeholders() {
        let t = Template::parse("Case {{ case.id }}: missing {{steps.check.missing}}.")
            .map(|t| t.pieces);
        assert_eq!(
            t,
            Ok(vec![
                Piece::Text("Case ".into()),
                Piece::Value(Reference::CaseId),
                Piece::Text(": missing ".into()),
                Piece::Value(Reference::Output {
                    step: "check".into(),
                    field: "missing".into()
                }),
                Piece::Text(".".into()),
            ])
        );
    }

    #[test]
    fn rejects_broken_placeholders() {
        for bad in ["{{ case.id", "{{}}", "{{ input }}", "a }} b", "{{ x.y }}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
