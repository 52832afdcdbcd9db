//! Names and titles that end up in emails: guest names, host names (a user's given and family
//! name, or display name) and appointment titles. They may hold any printable text, but no
//! control character (C0 such as CR and LF, DEL, or C1): in a mail header a CR LF starts a new
//! header. Every entrance refuses them ([`check_display_text`]), and rendering strips them again
//! ([`strip_controls`]) for rows written before the check existed.

/// A name or title holds a control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must not contain control characters (such as line breaks); found {found}")]
pub struct ControlCharError {
    pub field: String,
    /// The first one, escaped (`\r`, `\u{7}`).
    pub found: String,
}

/// Whether `c` is a control character: C0 (U+0000–U+001F, tab and line breaks included), DEL,
/// or C1 (U+0080–U+009F); also the Unicode line and paragraph separators.
pub fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Refuses `value` (named `field` in the error) when it holds a control character.
pub fn check_display_text(field: &str, value: &str) -> Result<(), ControlCharError> {
    match value.chars().find(|c| is_control(*c)) {
        Some(c) => Err(ControlCharError {
            field: field.to_owned(),
            found: c.escape_default().to_string(),
        }),
        None => Ok(()),
    }
}

/// `value` with each run of control characters replaced by one space, trimmed.
pub fn strip_controls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut in_run = false;
    for c in value.chars() {
        if is_control(c) {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_stripped() {
        let evil = "Evil\r\nBcc: x@evil.example";
        let e = check_display_text("guest name", evil).unwrap_err();
        assert_eq!(e.found, "\\r");
        assert!(
            e.to_string()
                .starts_with("guest name must not contain control characters")
        );
        assert_eq!(strip_controls(evil), "Evil Bcc: x@evil.example");
        for c in ['\0', '\t', '\u{7f}', '\u{85}', '\u{9f}', '\u{2028}'] {
            let s = format!("a{c}b");
            assert!(check_display_text("title", &s).is_err(), "{c:?}");
            assert_eq!(strip_controls(&s), "a b");
        }
        for ok in ["José Müller", "株式会社", "O'Brien <b>", "a – b 😀"] {
            assert_eq!(check_display_text("title", ok), Ok(()));
            assert_eq!(strip_controls(ok), ok);
        }
    }
}
