//! The small typed language for conditions (`when:`) and values (`with:`).
//!
//! ```text
//! condition := or
//! or        := and ("or" and)*
//! and       := not ("and" not)*
//! not       := "not" not | compare
//! compare   := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand
//!                       | "in" "[" literal ("," literal)* "]")?
//! operand   := reference | literal | "(" condition ")"
//! reference := input.FIELD | event.EVENT.FIELD | steps.STEP.outcome
//!            | steps.STEP.OUTPUT | deadline.STEP.due | case.id
//! literal   := "text" | 'text' | 123 | true | false
//! ```
//! Every reference and every comparison is type-checked when the file is
//! loaded, so `input.category == "employmnet"` is an error before any case
//! runs, not a branch silently never taken.

use std::fmt;

/// Something a condition or value can read from a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A field of the case input.
    Input(String),
    /// A data field of the latest occurrence of an event.
    Event { event: String, field: String },
    /// The outcome of a step's latest run.
    Outcome(String),
    /// An output value of a task step's latest successful run.
    Output { step: String, field: String },
    /// The due date of a deadline the case has started.
    Due(String),
    /// The case's identifier.
    CaseId,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Input(field) => write!(f, "input.{field}"),
            Reference::Event { event, field } => write!(f, "event.{event}.{field}"),
            Reference::Outcome(step) => write!(f, "steps.{step}.outcome"),
            Reference::Output { step, field } => write!(f, "steps.{step}.{field}"),
            Reference::Due(deadline) => write!(f, "deadline.{deadline}.due"),
            Reference::CaseId => f.write_str("case.id"),
        }
    }
}

impl Reference {
    /// Parses a dotted reference such as `input.category`.
    pub fn parse(path: &str) -> Result<Reference, String> {
        let parts: Vec<&str> = path.split('.').collect();
        let named = |s: &str| !s.is_empty();
        match parts.as_slice() {
            ["input", field] if named(field) => Ok(Reference::Input((*field).to_owned())),
            ["event", event, field] if named(event) && named(field) => Ok(Reference::Event {
                event: (*event).to_owned(),
                field: (*field).to_owned(),
            }),
            ["steps", step, "outcome"] if named(step) => Ok(Reference::Outcome((*step).to_owned())),
            ["steps", step, field] if named(step) && named(field) => Ok(Reference::Output {
                step: (*step).to_owned(),
                field: (*field).to_owned(),
            }),
            ["deadline", deadline, "due"] if named(deadline) => {
                Ok(Reference::Due((*deadline).to_owned()))
            }
            ["case", "id"] => Ok(Reference::CaseId),
            _ => Err(format!(
                "`{path}` is not a reference: use `input.FIELD`, `event.EVENT.FIELD`, \
                 `steps.STEP.outcome`, `steps.STEP.OUTPUT`, `deadline.STEP.due` or `case.id`"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => write!(f, "{s:?}"),
            Literal::Integer(n) => write!(f, "{n}"),
            Literal::Boolean(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    fn symbol(self) -> &'static str {
        match self {
            Compare::Eq => "==",
            Compare::Ne => "!=",
            Compare::Lt => "<",
            Compare::Le => "<=",
            Compare::Gt => ">",
            Compare::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Ref(Reference),
    Lit(Literal),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Compare, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Literal>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Ref(r) => write!(f, "{r}"),
            Expr::Lit(l) => write!(f, "{l}"),
            Expr::Not(e) => write!(f, "not {e}"),
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Cmp(op, a, b) => write!(f, "{a} {} {b}", op.symbol()),
            Expr::In(a, list) => {
                let items: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "{a} in [{}]", items.join(", "))
            }
        }
    }
}

/// The type of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Boolean,
    Integer,
    Date,
    /// Any text: strings, e-mail addresses, phone and ID numbers.
    Text,
    /// Text restricted to a list of words.
    Enum(Vec<String>),
    Documents,
}

impl Type {
    fn describe(&self) -> String {
        match self {
            Type::Boolean => "true/false".to_owned(),
            Type::Integer => "a number".to_owned(),
            Type::Date => "a date".to_owned(),
            Type::Text => "text".to_owned(),
            Type::Enum(values) => format!(
                "one of {}",
                super::diagnostic::one_of(values.iter().map(String::as_str))
            ),
            Type::Documents => "a list of documents".to_owned(),
        }
    }
}

/// Resolves references to their types; implemented by the validator over
/// the workflow being checked.
pub trait Scope {
    fn type_of(&self, reference: &Reference) -> Result<Type, String>;
}

/// Parses a condition or value.
pub fn parse(source: &str) -> Result<Expr, String> {
    let tokens = lex(source)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {t} after `{expr}`")),
    }
}

/// Checks that `expr` is well-typed and returns its type.
pub fn type_check(expr: &Expr, scope: &dyn Scope) -> Result<Type, String> {
    match expr {
        Expr::Ref(r) => scope.type_of(r),
        Expr::Lit(Literal::Text(_)) => Ok(Type::Text),
        Expr::Lit(Literal::Integer(_)) => Ok(Type::Integer),
        Expr::Lit(Literal::Boolean(_)) => Ok(Type::Boolean),
        Expr::Not(e) => expect_boolean(e, scope).map(|()| Type::Boolean),
        Expr::And(a, b) | Expr::Or(a, b) => {
            expect_boolean(a, scope)?;
            expect_boolean(b, scope)?;
            Ok(Type::Boolean)
        }
        Expr::Cmp(op, a, b) => {
            let (ta, tb) = (type_check(a, scope)?, type_check(b, scope)?);
            compare_types(*op, a, &ta, b, &tb)?;
            Ok(Type::Boolean)
        }
        Expr::In(a, list) => {
            let ta = type_check(a, scope)?;
            for item in list {
                let lit = Expr::Lit(item.clone());
                compare_types(Compare::Eq, a, &ta, &lit, &type_check(&lit, scope)?)?;
            }
            Ok(Type::Boolean)
        }
    }
}

/// Checks that `expr` is a well-typed condition.
pub fn check_condition(expr: &Expr, scope: &dyn Scope) -> Result<(), String> {
    expect_boolean(expr, scope)
}

fn expect_boolean(expr: &Expr, scope: &dyn Scope) -> Result<(), String> {
    match type_check(expr, scope)? {
        Type::Boolean => Ok(()),
        other => Err(format!(
            "`{expr}` is {}, not a condition (true/false)",
            other.describe()
        )),
    }
}

fn compare_types(op: Compare, a: &Expr, ta: &Type, b: &Expr, tb: &Type) -> Result<(), String> {
    let ordered = !matches!(op, Compare::Eq | Compare::Ne);
    let mismatch = || {
        format!(
            "cannot compare `{a}` ({}) with `{b}` ({})",
            ta.describe(),
            tb.describe()
        )
    };
    match (ta, tb) {
        (Type::Enum(values), Type::Text) | (Type::Text, Type::Enum(values)) => {
            if ordered {
                return Err(format!(
                    "`{}` cannot be ordered: only numbers and dates can",
                    op.symbol()
                ));
            }
            let literal = match (a, b) {
                (Expr::Lit(Literal::Text(s)), _) | (_, Expr::Lit(Literal::Text(s))) => Some(s),
                _ => None,
            };
            match literal {
                Some(s) if !values.contains(s) => {
                    let hint =
                        super::diagnostic::did_you_mean(s, values.iter().map(String::as_str))
                            .map(|m| format!("; did you mean \"{m}\"?"))
                            .unwrap_or_default();
                    Err(format!(
                        "\"{s}\" is never a value of `{}`: it is {}{hint}",
                        if matches!(a, Expr::Lit(_)) { b } else { a },
                        Type::Enum(values.clone()).describe()
                    ))
                }
                _ => Ok(()),
            }
        }
        (Type::Enum(x), Type::Enum(y)) if !ordered && x.iter().any(|v| y.contains(v)) => Ok(()),
        (Type::Integer, Type::Integer) | (Type::Date, Type::Date) => Ok(()),
        (Type::Date, Type::Text) | (Type::Text, Type::Date) => Ok(()),
        (Type::Boolean, Type::Boolean) | (Type::Text, Type::Text) if !ordered => Ok(()),
        (Type::Boolean | Type::Text | Type::Enum(_), _) if ordered && ta == tb => Err(format!(
            "`{}` cannot be used on {}: only numbers and dates are ordered",
            op.symbol(),
            ta.describe()
        )),
        _ => Err(mismatch()),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Path(String),
    Text(String),
    Integer(i64),
    Op(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Path(p) => write!(f, "`{p}`"),
            Token::Text(s) => write!(f, "{s:?}"),
            Token::Integer(n) => write!(f, "`{n}`"),
            Token::Op(op) => write!(f, "`{op}`"),
        }
    }
}

fn lex(source: &str) -> Result<Vec<Token>, String> {
    const OPS: [&str; 12] = [
        "==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", "=",
    ];
    let mut tokens = Vec::new();
    let mut rest = source.trim_start();
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            if *op == "=" {
                return Err("use `==` to compare, not `=`".to_owned());
            }
            tokens.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else if c == '"' || c == '\'' {
            let end = rest[1..]
                .find(c)
                .ok_or_else(|| format!("text starting at `{rest}` has no closing {c}"))?;
            tokens.push(Token::Text(rest[1..=end].to_owned()));
            rest = &rest[end + 2..];
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let len = 1 + rest[1..]
                .find(|d: char| !d.is_ascii_digit())
                .unwrap_or(rest.len() - 1);
            let n = rest[..len]
                .parse()
                .map_err(|_| format!("`{}` is not a number we can use", &rest[..len]))?;
            tokens.push(Token::Integer(n));
            rest = &rest[len..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '_' || d == '.'))
                .unwrap_or(rest.len());
            tokens.push(Token::Path(rest[..len].to_owned()));
            rest = &rest[len..];
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Path(p)) if p == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        match self.next() {
            Some(Token::Op(o)) if o == op => Ok(()),
            Some(t) => Err(format!("expected `{op}`, found {t}")),
            None => Err(format!("expected `{op}` at the end")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, String> {
        let left = self.operand()?;
        if self.eat_word("in") {
            self.expect_op("[")?;
            let mut list = vec![self.literal()?];
            while matches!(self.peek(), Some(Token::Op(","))) {
                self.at += 1;
                list.push(self.literal()?);
            }
            self.expect_op("]")?;
            return Ok(Expr::In(Box::new(left), list));
        }
        let op = match self.peek() {
            Some(Token::Op("==")) => Compare::Eq,
            Some(Token::Op("!=")) => Compare::Ne,
            Some(Token::Op("<")) => Compare::Lt,
            Some(Token::Op("<=")) => Compare::Le,
            Some(Token::Op(">")) => Compare::Gt,
            Some(Token::Op(">=")) => Compare::Ge,
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(Expr::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.operand()? {
            Expr::Lit(l) => Ok(l),
            other => Err(format!(
                "expected a literal value in the list, found `{other}`"
            )),
        }
    }

    fn operand(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Op("(")) => {
                let inner = self.or()?;
                self.expect_op(")")?;
                Ok(inner)
            }
            Some(Token::Text(s)) => Ok(Expr::Lit(Literal::Text(s))),
            Some(Token::Integer(n)) => Ok(Expr::Lit(Literal::Integer(n))),
            Some(Token::Path(p)) if p == "true" => Ok(Expr::Lit(Literal::Boolean(true))),
            Some(Token::Path(p)) if p == "false" => Ok(Expr::Lit(Literal::Boolean(false))),
            Some(Token::Path(p)) if matches!(p.as_str(), "and" | "or" | "not" | "in") => {
                Err(format!("expected a value, found `{p}`"))
            }
            Some(Token::Path(p)) => Reference::parse(&p).map(Expr::Ref),
            Some(t) => Err(format!("expected a value, found {t}")),
            None => Err("expected a value, found the end".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture;

    impl Scope for Fixture {
        fn type_of(&self, r: &Reference) -> Result<Type, String> {
            match r.to_string().as_str() {
                "input.through_agent" => Ok(Type::Boolean),
                "input.age" => Ok(Type::Integer),
                "input.name" => Ok(Type::Text),
                "input.category" => Ok(Type::Enum(vec!["employment".into(), "study".into()])),
                "steps.check.outcome" => {
                    Ok(Type::Enum(vec!["complete".into(), "incomplete".into()]))
                }
                other => Err(format!("`{other}` is unknown")),
            }
        }
    }

    fn check(src: &str) -> Result<(), String> {
        check_condition(&parse(src)?, &Fixture)
    }

    #[test]
    fn accepts_well_typed_conditions() {
        for ok in [
            "input.through_agent",
            "not input.through_agent and input.age < 16",
            "input.category == \"study\" or (input.age >= 60 and input.through_agent)",
            "input.category in ['employment', 'study']",
            "steps.check.outcome != 'complete'",
            "input.age > -1",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_ill_typed_conditions_with_reasons() {
        let cases = [
            (
                "input.category == \"employmnet\"",
                "did you mean \"employment\"",
            ),
            ("input.age", "not a condition"),
            ("input.age == \"ten\"", "cannot compare"),
            ("input.name < \"b\"", "only numbers and dates"),
            ("input.nmae", "unknown"),
            ("input.age = 3", "use `==`"),
            ("input.age <", "expected a value"),
            ("(input.through_agent", "expected `)`"),
            ("input.through_agent input.age", "unexpected"),
            ("input.category in [input.age]", "literal"),
            ("'open", "no closing"),
            ("foo.bar", "not a reference"),
            ("steps.check.outcome == 'done'", "never a value"),
        ];
        for (src, needle) in cases {
            let err = check(src).expect_err(src);
            assert!(err.contains(needle), "{src}: {err}");
        }
    }

    #[test]
    fn binds_and_tighter_than_or() {
        let e = parse("input.a or input.b and input.c").map(|e| e.to_string());
        assert_eq!(e.as_deref(), Ok("(input.a or (input.b and input.c))"));
    }
}
