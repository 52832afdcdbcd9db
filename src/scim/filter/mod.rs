//! SCIM 2.0 filter and attribute-path grammar (RFC 7644 §3.4.2.2, and the
//! PATCH `path` grammar of RFC 7644 §3.5.2), plus evaluation of a parsed
//! filter against a JSON resource.
//!
//! This module owns parsing (`parse_filter`, `parse_patch_path`); `eval.rs` owns
//! matching (`matches`). It knows nothing about resource schemas: callers tell it
//! which attributes compare case-exactly through a callback. `and`/`or` chains are
//! parsed in loops and walked flat ([`Filter::operands`]), so only real nesting
//! (parentheses, brackets, `not`) counts against [`MAX_DEPTH`].

use serde_json::Number;

/// Longest filter or path accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 4096;
/// Deepest nesting of parentheses, brackets and `not` accepted. Chains of `and`/`or` are not
/// nesting: a long chain is limited by [`MAX_INPUT_LEN`] only.
pub const MAX_DEPTH: usize = 32;

pub use crate::domain::query::{AttrPath, CompValue, CompareOp, Filter};

/// A PATCH operation path: `attrPath ["[" valFilter "]"] ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; for `name.givenName` its `sub_attr` is `givenName`.
    pub attr: AttrPath,
    /// The value selection filter between brackets, if any.
    pub value_filter: Option<Filter>,
    /// The sub-attribute after the closing bracket (`emails[...].value`).
    pub sub_attr: Option<String>,
}

/// A syntax error in a filter or path; `position` counts characters from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
}

/// Parses a SCIM filter expression (the `filter` query parameter).
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.parse_or()?;
    parser.expect_end("'and', 'or' or the end of the filter")?;
    Ok(filter)
}

/// Parses a PATCH operation `path`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut parser = Parser::new(input)?;
    let (tok, pos) = parser.next()?;
    let attr = match tok {
        Tok::Word(word) => parse_attr_path(&word, parser.char_pos(pos))?,
        other => {
            return Err(parser.error_at(
                pos,
                format!("expected an attribute path, found {}", other.describe()),
            ));
        }
    };
    let mut value_filter = None;
    let mut sub_attr = None;
    if parser.peek()?.0 == Tok::LBracket {
        let (_, bpos) = parser.next()?;
        if attr.sub_attr.is_some() {
            return Err(parser.error_at(
                bpos,
                "a value filter '[...]' must follow an attribute without a sub-attribute".into(),
            ));
        }
        value_filter = Some(parser.parse_bracket_body()?);
        if parser.peek()?.0 == Tok::Dot {
            parser.next()?;
            sub_attr = Some(parser.parse_sub_attr_name()?);
        }
    }
    parser.expect_end("'[' or the end of the path")?;
    Ok(PatchPath {
        attr,
        value_filter,
        sub_attr,
    })
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Word(String),
    Str(String),
    Num(Number),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Dot => "'.'".into(),
            Tok::Word(w) => format!("'{}'", truncate(w)),
            Tok::Str(s) => format!("string \"{}\"", truncate(s)),
            Tok::Num(n) => format!("number {n}"),
            Tok::End => "end of input".into(),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '$'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':' | '.')
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    peeked: Option<(Tok, usize)>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, FilterError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(FilterError {
                message: format!(
                    "input is {} bytes long; at most {MAX_INPUT_LEN} are accepted",
                    input.len()
                ),
                position: 0,
            });
        }
        Ok(Parser {
            input,
            pos: 0,
            peeked: None,
            depth: 0,
        })
    }

    /// Converts a byte offset into a character offset.
    fn char_pos(&self, byte: usize) -> usize {
        self.input.get(..byte).map_or(byte, |s| s.chars().count())
    }

    fn error_at(&self, byte: usize, message: String) -> FilterError {
        FilterError {
            message,
            position: self.char_pos(byte),
        }
    }

    fn peek(&mut self) -> Result<&(Tok, usize), FilterError> {
        if self.peeked.is_none() {
            let tok = self.lex()?;
            self.peeked = Some(tok);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(self.error_at(self.pos, "internal lexer error".into())),
        }
    }

    fn next(&mut self) -> Result<(Tok, usize), FilterError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn lex(&mut self) -> Result<(Tok, usize), FilterError> {
        let rest = self.input.get(self.pos..).unwrap_or("");
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok((Tok::End, start));
        };
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '.' => Some(Tok::Dot),
            _ => None,
        };
        if let Some(tok) = simple {
            self.pos += 1;
            return Ok((tok, start));
        }
        if c == '"' {
            return self.lex_string(trimmed, start);
        }
        if c == '-' || c.is_ascii_digit() {
            let len = trimmed
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '+' | '-')))
                .unwrap_or(trimmed.len());
            let text = &trimmed[..len];
            self.pos += len;
            return match serde_json::from_str::<Number>(text) {
                Ok(n) => Ok((Tok::Num(n), start)),
                Err(_) => Err(self.error_at(start, format!("invalid number '{}'", truncate(text)))),
            };
        }
        if is_word_start(c) {
            let len = trimmed
                .find(|ch: char| !is_word_char(ch))
                .unwrap_or(trimmed.len());
            let word = &trimmed[..len];
            self.pos += len;
            return Ok((Tok::Word(word.to_string()), start));
        }
        Err(self.error_at(start, format!("unexpected character '{c}'")))
    }

    fn lex_string(&mut self, text: &str, start: usize) -> Result<(Tok, usize), FilterError> {
        let bytes = text.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    let literal = &text[..=i];
                    self.pos += i + 1;
                    return match serde_json::from_str::<String>(literal) {
                        Ok(s) if s.contains('\0') => Err(self.error_at(
                            start,
                            "a string value must not contain a NUL character (U+0000)".into(),
                        )),
                        Ok(s) => Ok((Tok::Str(s), start)),
                        Err(e) => Err(self.error_at(start, format!("invalid string literal: {e}"))),
                    };
                }
                _ => i += 1,
            }
        }
        Err(self.error_at(
            start,
            "unterminated string literal; expected a closing '\"'".into(),
        ))
    }

    fn expect_end(&mut self, expected: &str) -> Result<(), FilterError> {
        let (tok, pos) = self.next()?;
        if tok == Tok::End {
            Ok(())
        } else {
            Err(self.error_at(
                pos,
                format!("expected {expected}, found {}", tok.describe()),
            ))
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                pos,
                format!("filter is nested too deeply (at most {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn peek_keyword(&mut self, keyword: &str) -> Result<bool, FilterError> {
        Ok(matches!(&self.peek()?.0, Tok::Word(w) if w.eq_ignore_ascii_case(keyword)))
    }

    fn parse_or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_and()?;
        while self.peek_keyword("or")? {
            self.next()?;
            let right = self.parse_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.parse_not()?;
        while self.peek_keyword("and")? {
            self.next()?;
            let right = self.parse_not()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> Result<Filter, FilterError> {
        if self.peek_keyword("not")? {
            let (_, pos) = self.next()?;
            // `not` is only the operator when a filter follows; otherwise it is
            // an attribute called "not" (e.g. `not pr`).
            let is_operator = match &self.peek()?.0 {
                Tok::LParen => true,
                Tok::Word(w) => CompareOp::from_word(w).is_none() && !w.eq_ignore_ascii_case("pr"),
                _ => false,
            };
            if is_operator {
                self.enter(pos)?;
                let inner = self.parse_not()?;
                self.leave();
                return Ok(Filter::Not(Box::new(inner)));
            }
            self.rewind(pos);
        }
        self.parse_atom()
    }

    /// Forgets the lookahead and continues lexing from byte offset `pos`.
    fn rewind(&mut self, pos: usize) {
        self.peeked = None;
        self.pos = pos;
    }

    fn parse_atom(&mut self) -> Result<Filter, FilterError> {
        let (tok, pos) = self.next()?;
        match tok {
            Tok::LParen => {
                self.enter(pos)?;
                let inner = self.parse_or()?;
                let (close, cpos) = self.next()?;
                if close != Tok::RParen {
                    return Err(self.error_at(
                        cpos,
                        format!(
                            "expected ')' to close the '(' at character {}, found {}",
                            self.char_pos(pos),
                            close.describe()
                        ),
                    ));
                }
                self.leave();
                Ok(inner)
            }
            Tok::Word(word) => {
                let path = parse_attr_path(&word, self.char_pos(pos))?;
                self.parse_after_path(path)
            }
            other => Err(self.error_at(
                pos,
                format!(
                    "expected an attribute path, '(' or 'not', found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn parse_after_path(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        let (tok, pos) = self.next()?;
        match tok {
            Tok::LBracket => {
                if path.sub_attr.is_some() {
                    return Err(self.error_at(pos, "a value filter '[...]' must follow an attribute without a sub-attribute".into()));
                }
                let inner = self.parse_bracket_body()?;
                let filter = if self.peek()?.0 == Tok::Dot {
                    self.next()?;
                    let sub = self.parse_sub_attr_name()?;
                    let tail = self.parse_after_path(AttrPath::simple(&sub))?;
                    Filter::And(Box::new(inner), Box::new(tail))
                } else {
                    inner
                };
                Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(filter),
                })
            }
            Tok::Word(word) => {
                if word.eq_ignore_ascii_case("pr") {
                    return Ok(Filter::Present(path));
                }
                let Some(op) = CompareOp::from_word(&word) else {
                    return Err(self.error_at(pos, format!("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) or '[' after '{}', found '{}'", truncate(&path.dotted()), truncate(&word))));
                };
                let value = self.parse_value()?;
                Ok(Filter::Compare { path, op, value })
            }
            other => Err(self.error_at(pos, format!("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) or '[' after '{}', found {}", truncate(&path.dotted()), other.describe()))),
        }
    }

    /// Parses `valFilter "]"` after an opening bracket has been consumed.
    fn parse_bracket_body(&mut self) -> Result<Filter, FilterError> {
        let open = self.pos.saturating_sub(1);
        self.enter(open)?;
        let inner = self.parse_or()?;
        let (close, cpos) = self.next()?;
        if close != Tok::RBracket {
            return Err(self.error_at(
                cpos,
                format!(
                    "expected ']' to close the value filter, found {}",
                    close.describe()
                ),
            ));
        }
        self.leave();
        Ok(inner)
    }

    fn parse_sub_attr_name(&mut self) -> Result<String, FilterError> {
        let (tok, pos) = self.next()?;
        match tok {
            Tok::Word(w) if valid_attr_name(&w) => Ok(w),
            Tok::Word(w) => Err(self.error_at(
                pos,
                format!("invalid sub-attribute name '{}'", truncate(&w)),
            )),
            other => Err(self.error_at(
                pos,
                format!(
                    "expected a sub-attribute name after '.', found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn parse_value(&mut self) -> Result<CompValue, FilterError> {
        let (tok, pos) = self.next()?;
        match tok {
            Tok::Str(s) => Ok(CompValue::String(s)),
            Tok::Num(n) => Ok(CompValue::Number(n)),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Ok(CompValue::Bool(true)),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Ok(CompValue::Bool(false)),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => Ok(CompValue::Null),
            Tok::Word(w) => Err(self.error_at(pos, format!("expected a comparison value (a quoted string, number, true, false or null), found '{}'; string values must be quoted, e.g. \"{}\"", truncate(&w), truncate(&w)))),
            other => Err(self.error_at(pos, format!("expected a comparison value (a quoted string, number, true, false or null), found {}", other.describe()))),
        }
    }
}

/// ATTRNAME = ALPHA *(nameChar), with `$` also accepted first (for `$ref`).
fn valid_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if is_word_start(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$'))
}

fn parse_attr_path(word: &str, position: usize) -> Result<AttrPath, FilterError> {
    let err = |message: String| FilterError { message, position };
    let (schema, rest) = match word.rfind(':') {
        Some(idx) => {
            let schema = &word[..idx];
            if schema.is_empty() || schema.ends_with(':') {
                return Err(err(format!(
                    "invalid schema URN in attribute path '{}'",
                    truncate(word)
                )));
            }
            (Some(schema.to_string()), &word[idx + 1..])
        }
        None => (None, word),
    };
    let mut parts = rest.split('.');
    let name = parts.next().unwrap_or("");
    let sub = parts.next();
    if parts.next().is_some() {
        return Err(err(format!(
            "attribute path '{}' has more than one sub-attribute",
            truncate(word)
        )));
    }
    if !valid_attr_name(name) {
        return Err(err(format!(
            "expected an attribute name in '{}' (a letter followed by letters, digits, '-', '_' or '$')",
            truncate(word)
        )));
    }
    if let Some(sub) = sub
        && !valid_attr_name(sub)
    {
        return Err(err(format!(
            "invalid sub-attribute name in '{}'",
            truncate(word)
        )));
    }
    Ok(AttrPath {
        schema,
        name: name.to_string(),
        sub_attr: sub.map(str::to_string),
    })
}

mod eval;
#[cfg(test)]
mod tests;

pub use eval::matches;
