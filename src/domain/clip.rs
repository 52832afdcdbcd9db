//! Bounds on what the provisioning log keeps of a value: every text (userName, error message,
//! each string inside a modified attribute's old and new value) is cut at
//! [`LOG_VALUE_MAX_BYTES`] on a character boundary with a marker saying how long it was, arrays
//! keep their first [`LOG_ARRAY_MAX_ITEMS`] elements, and NUL characters (which PostgreSQL text
//! cannot hold) become U+FFFD. A rejected 1 MB userName thus writes about 1 KiB, not 2 MB.

use serde_json::Value;

use super::model::{AttributeChange, LogEntry};

/// Most bytes of one text value the provisioning log keeps.
pub const LOG_VALUE_MAX_BYTES: usize = 1024;
/// Most elements of one array value the provisioning log keeps.
pub const LOG_ARRAY_MAX_ITEMS: usize = 20;

/// `text` cut to at most [`LOG_VALUE_MAX_BYTES`] (plus the marker), NULs replaced.
pub fn clip_text(text: &str) -> String {
    let mut end = text.len().min(LOG_VALUE_MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = text
        .get(..end)
        .unwrap_or_default()
        .replace('\0', "\u{FFFD}");
    if end == text.len() {
        head
    } else {
        format!("{head}… [truncated: {} bytes in all]", text.len())
    }
}

/// `value` with every string clipped and every array shortened.
pub fn clip_value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(clip_text(s)),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(LOG_ARRAY_MAX_ITEMS)
                .map(clip_value)
                .collect();
            if items.len() > LOG_ARRAY_MAX_ITEMS {
                out.push(Value::String(format!(
                    "… [{} more elements]",
                    items.len() - LOG_ARRAY_MAX_ITEMS
                )));
            }
            Value::Array(out)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clip_text(k), clip_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl LogEntry {
    /// This entry with every value bounded as the module describes, as it is stored.
    pub fn clipped(&self) -> LogEntry {
        let text = |v: &Option<String>| v.as_deref().map(clip_text);
        LogEntry {
            user_name: text(&self.user_name),
            source_object_id: text(&self.source_object_id),
            error_code: text(&self.error_code),
            error_message: text(&self.error_message),
            cycle_id: text(&self.cycle_id),
            modified: self
                .modified
                .iter()
                .map(|c| AttributeChange {
                    attribute: clip_text(&c.attribute),
                    old: c.old.as_ref().map(clip_value),
                    new: c.new.as_ref().map(clip_value),
                })
                .collect(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn long_texts_are_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(clip_text("short"), "short");
        let long = "é".repeat(1000); // 2,000 bytes
        let cut = clip_text(&long);
        assert!(cut.starts_with(&"é".repeat(512)));
        assert!(cut.ends_with("… [truncated: 2000 bytes in all]"), "{cut}");
        assert!(cut.len() < LOG_VALUE_MAX_BYTES + 64);
        assert_eq!(clip_text("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn values_are_bounded_deeply() {
        let big = json!({"emails": (0..100).map(|i| json!({"value": format!("{i}{}", "x".repeat(5000))})).collect::<Vec<_>>()});
        let clipped = clip_value(&big);
        let emails = clipped["emails"].as_array().unwrap();
        assert_eq!(emails.len(), LOG_ARRAY_MAX_ITEMS + 1);
        assert_eq!(emails[LOG_ARRAY_MAX_ITEMS], json!("… [80 more elements]"));
        assert!(clipped.to_string().len() < 25 * (LOG_VALUE_MAX_BYTES + 64));
    }
}
