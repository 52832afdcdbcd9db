//! The query language of the directory: a parsed filter over user and group attributes (the
//! SCIM filter grammar's tree, RFC 7644 §3.4.2.2). `crate::scim::filter` parses text into it and
//! evaluates it against a resource; `crate::store` translates it into SQL. Neither layer owns the
//! tree, so the store does not depend on the SCIM endpoint.

use serde_json::{Number, Value};

/// An attribute path: `[schemaURN ":"] name ["." subAttr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix as written (without the trailing ':'), if any.
    pub schema: Option<String>,
    /// Attribute name as written.
    pub name: String,
    /// Sub-attribute name as written, if any.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A bare attribute path with no schema and no sub-attribute.
    pub fn simple(name: &str) -> Self {
        AttrPath {
            schema: None,
            name: name.to_string(),
            sub_attr: None,
        }
    }

    /// True when the attribute name equals `name` (case-insensitively), ignoring
    /// the schema and whatever sub-attribute is present.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// True when this is `name.sub` (case-insensitively), ignoring the schema.
    pub fn is_sub(&self, name: &str, sub: &str) -> bool {
        self.is(name)
            && self
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(sub))
    }

    /// `name` or `name.subAttr`, without the schema.
    pub fn dotted(&self) -> String {
        match &self.sub_attr {
            Some(sub) => format!("{}.{}", self.name, sub),
            None => self.name.clone(),
        }
    }
}

/// Comparison operators of RFC 7644 §3.4.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The operator a filter word names (`eq`, `sw`, …), case-insensitively.
    pub fn from_word(word: &str) -> Option<CompareOp> {
        let op = match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        };
        Some(op)
    }
}

/// The literal on the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    String(String),
    Bool(bool),
    Number(Number),
    Null,
}

impl CompValue {
    /// The literal as a JSON value.
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::String(s) => Value::String(s.clone()),
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Null => Value::Null,
        }
    }
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[subfilter]`: some element of multi-valued `attr` matches `filter`; attribute paths inside `filter` are relative to the element (e.g. `type`, `value`).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

impl Filter {
    /// The operands of a chain of one operator, flattened left to right: `a or b or c` (however
    /// it is grouped) gives `[a, b, c]`; `a or b and c` gives `[a, b and c]`. Any other filter
    /// is its own single operand. Iterative, so a long `or` chain costs no stack depth: only
    /// real nesting (parentheses, brackets, `not`, mixed operators) does.
    pub fn operands(&self) -> Vec<&Filter> {
        let same = |f: &Filter| {
            matches!(
                (self, f),
                (Filter::And(..), Filter::And(..)) | (Filter::Or(..), Filter::Or(..))
            )
        };
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(f) = stack.pop() {
            match f {
                Filter::And(a, b) | Filter::Or(a, b) if same(f) => {
                    stack.push(b);
                    stack.push(a);
                }
                other => out.push(other),
            }
        }
        out
    }
}
